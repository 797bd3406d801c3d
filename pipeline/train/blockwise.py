"""Stage 2: block-wise distillation of the NAS-BERT supernet, with hardware-aware progressive shrinking.

Block n learns MSE(student_block(Y[n-1]), Y[n]), Y being the teacher's hidden states at the block
boundaries (Y[0] the embedding output), one uniformly drawn path per step. Blocks are
independent, so each one is trained, checkpointed and written on its own.

Every `sandwich_every`-th step also trains a path drawn from the dearest bin, its gradients added
to the uniform path's (the "sandwich rule" of BigNAS and once-for-all, large side only). Uniform
sampling trains the channels beyond width 256 only when a 384-wide path is drawn, about one step in
ten once the bins are balanced, so wide paths stayed undertrained and looked no better than narrow
ones: on MiniLM's block 1 (quick schedule) the dearest bin ended at 0.060 validation loss, the same
as bins of a third of its latency, and the search never spent a budget above ~4.5 ms. With one
extra wide path every 4 steps it ends at 0.053 and the bins' mean loss falls with their cost
(0.063 in bin 2; two neighbours swap by 0.0007), and training steps take ~50% longer (the
shrinking's scoring, not the steps, dominates quick runs).

    OUT/block_N/checkpoint.pt   everything to resume (weights, optimiser, RNG, bins); gone once done
    OUT/block_N/supernet.pt     the trained SuperBlock's weights
    OUT/block_N/result.json     losses, pool, Kendall tau, timings
    OUT/train_summary.json      every finished block, the settings, the corpus

Under torchrun every rank trains the blocks b with (b - 1) % WORLD_SIZE == RANK and rank 0 writes
the summary, so a 3-block teacher trains on 3 GPUs at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.artifacts import content_key, write_atomic, write_json_atomic
from pipeline.compute import adamw, autocast, train_dtype
from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable, Predictor
from pipeline.options import opt
from pipeline.schedule import warmup_cosine
from pipeline.space import Block, SearchSpace, op_params
from pipeline.train import shrinking
from pipeline.train.standalone import BlockData, mean_loss, tau_selection, train_standalone
from pipeline.train.supernet import SuperBlock

CHECKPOINT_FORMAT = 1
INITS = ("teacher", "random")  # TrainConfig.init
PRUNE = ("off", "activation", "magnitude", "sensitivity")  # TrainConfig.prune: off or an importance measure


@dataclass(frozen=True)
class TrainConfig:
    # NAS-BERT's setting, and the latency tables': blocks learn the states at the length they are timed at.
    seq_len: int = opt(128, "chunk length of the training text")
    # 2k tokens a step at length 128: small enough for a CPU step, large enough for a stable regression.
    batch_size: int = opt(16, "chunks per step")
    lr: float = 1e-3              # AdamW peak; shallow blocks regressing hidden states tolerate BERT-small rates
    weight_decay: float = 0.01    # BERT's
    warmup_steps: int = 50        # linear lr warm-up, then cosine decay to 10% over all steps
    # NAS-BERT's schedule is in epochs: warm-up, then shrinking after each one.
    epochs: int = opt(20, "epochs of the schedule (shrinking starts after the warm-up epochs)")
    # Steps per epoch at most, each a fresh random sample of the chunks: training time does not grow with
    # the corpus, so a large corpus costs tokenising, not training.
    epoch_steps: int = opt(60, "steps per epoch (each a random sample of the chunks)")
    warmup_epochs: int = 4        # NAS-BERT starts shrinking after epoch 4 (its Figure 4)
    bins: int = 10                # B, NAS-BERT's
    samples_per_bin: int = 2000   # E, NAS-BERT's; at MiniLM's size larger than a bin, so every candidate is scored
    keep_per_bin: int = 10        # m, NAS-BERT's: a pool of B * m = 100 per block
    score_batches: int = 2        # validation batches that score a candidate while shrinking
    eval_paths: int = 16          # random paths for val_loss_untrained / val_loss_trained
    tau_paths: int = 12           # pool paths for the Kendall tau: 10 or more for a meaningful rank correlation
    tau_steps: int = 200          # standalone training steps per tau path, from the shared weights
    tau_lr: float = 2e-4          # fine-tuning rate for those steps
    dropout: float = 0.0          # regressing the teacher's states is not classification: the target is
                                  # dense and exact, and the random paths already regularise the shared weights
    # Uniform sampling leaves the widest channels to a small share of the steps (module docstring).
    sandwich_every: int = opt(4, "every K-th step also trains a path of the dearest bin, so the widest channels "
                              "learn (0: never)", metavar="K")
    # Once-for-all shrinks from a trained largest network: the widest mha/ffn path starts as the teacher's
    # own block where the teacher's width is one of the space's (inherit.py), and the search starts there.
    init: str = opt("teacher", "where the shared weights start: teacher (the widest attention/FFN path is the "
                    "teacher's block; convolutions random) or random", choices=INITS)
    # The teacher's own sub-layers, pruned, as candidates beside NAS-BERT's ops (space.teacher_shapes): each
    # block may be its teacher layers with a quarter to all of their heads and FFN neurons, the most
    # important by this measure, weights copied. Activation ranked best untrained on MiniLM, ahead of the
    # weights' magnitude; sensitivity ranked below random (benchmarks/prune_start.py, docs/experiments.md).
    # Off by default until searches over both kinds are measured against the report's peers.
    prune: str = opt("off", "put the teacher's pruned layers in the space, heads and neurons ranked by this "
                     "importance (off: NAS-BERT's ops only)", choices=PRUNE)
    checkpoint_every: int = 25    # steps between checkpoints: a few seconds of work lost at most, cheap to save
    seed: int = opt(0, "random seed")

    def quick(self) -> TrainConfig:
        """Scaled down to finish the offline defaults in a few minutes on a 2-core CPU."""
        return replace(self, epochs=16, warmup_epochs=3, samples_per_bin=48, keep_per_bin=4, score_batches=1,
                       eval_paths=12, tau_steps=40)

    def __post_init__(self) -> None:
        self.check()  # a bad setting is refused where the config is made, before any work

    def check(self) -> None:
        for name in ("seq_len", "batch_size", "epochs", "epoch_steps", "bins", "samples_per_bin", "keep_per_bin",
                     "score_batches", "eval_paths", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise PipelineError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise PipelineError(f"warmup-epochs must be between 0 and epochs ({self.epochs})")
        if self.init not in INITS:
            raise PipelineError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.prune not in PRUNE:
            raise PipelineError(f"prune must be one of {', '.join(PRUNE)}, got {self.prune!r}")
        if self.prune != "off" and self.init != "teacher":
            raise PipelineError("--prune keeps the teacher's heads and neurons: it needs --init teacher")
        if self.sandwich_every < 0:
            raise PipelineError(f"sandwich-every must be 0 (off) or positive, got {self.sandwich_every}")
        if self.tau_paths < 10:
            raise PipelineError("tau-paths must be at least 10 for a meaningful rank correlation")
        if self.bins * self.keep_per_bin < self.tau_paths:
            raise PipelineError(f"bins x keep-per-bin ({self.bins * self.keep_per_bin}) must be at least "
                                f"tau-paths ({self.tau_paths}): the tau paths come from the pool")


def block_params(block: Block) -> int:
    """Parameters of the block's ops (adapters depend on the neighbours and are counted by the search)."""
    return sum(op_params(op, block.hidden) for op in block.layers)


def table_predictor(space: SearchSpace, table: Path, seq: int, batch: int = 1) -> Predictor:
    """The predictor of `table` at (batch, seq); an error if it lacks any op of this space."""
    p = Predictor(LatencyTable.load(table), batch, seq)
    missing = []
    for op, h in space.ops():
        try:
            p.block_ms(Block(h, (op,)))
        except PipelineError:
            missing.append(f"{op}@{h}")
    if missing:
        raise PipelineError(f"latency table {table} lacks {len(missing)} op(s) of this teacher's space at batch "
                            f"{batch}, seq {seq} (first: {missing[0]}); profile this teacher into it "
                            "(`profile --teacher ...`, with --teacher-shapes for --prune) or pass another table")
    return p


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    return warmup_cosine(step, total, cfg.lr, cfg.warmup_steps)


def _load_checkpoint(path: Path, settings: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, weights_only=True)
        ckpt["settings"], ckpt["model"]  # noqa: B018 - a checkpoint without these is corrupt
    except Exception as e:
        raise PipelineError(f"checkpoint {path} is corrupt ({type(e).__name__}); delete it or pass --force") from None
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt["settings"] != settings:
        raise PipelineError(f"checkpoint {path} is from a run with other settings (teacher, corpus or config); "
                            "use another --out or pass --force to start over")
    return ckpt


def train_block(n: int, space: SearchSpace, data: BlockData, cfg: TrainConfig, out_dir: Path, settings: str,
                predictors: dict[str, Predictor], target: str | None, device: torch.device,
                progress: bool = True, on_step: Callable[[int], None] | None = None,
                start: Callable[[SuperBlock], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train block n (1-based) of the supernet and return its result (also written to result.json).
    `start` sets the fresh supernet's weights (inherit.inherit with the block's teacher layers) and says how;
    None: they stay at random."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    torch.manual_seed(cfg.seed * 1000 + n)
    net = SuperBlock.for_space(space, cfg.dropout)
    init = start(net) if start is not None else {"from": "random"}  # a resumed checkpoint overwrites them
    net = net.to(device)
    opt = adamw(net.parameters(), cfg.lr, cfg.weight_decay)
    # bf16 forward passes where the device has bf16 arithmetic, fp32 elsewhere (compute.train_dtype); not a
    # setting of the supernet's key: the same training, rounded differently.
    dtype = train_dtype("auto", device)
    candidates = net.candidates()
    params = [block_params(c) for c in candidates]
    latency = {name: [p.block_ms(c) for c in candidates] for name, p in predictors.items()}
    n_train = data.x_train.shape[0]
    steps_per_epoch = max(1, min(n_train // cfg.batch_size, cfg.epoch_steps))
    total_steps = cfg.epochs * steps_per_epoch
    val_bs = cfg.batch_size
    score_x, score_y = data.x_val[: cfg.score_batches * val_bs], data.y_val[: cfg.score_batches * val_bs]

    def score(i: int) -> float:
        net.set(candidates[i])
        return mean_loss(net, score_x, score_y, val_bs)

    def val_loss(block: Block) -> float:
        net.set(block)
        return mean_loss(net, data.x_val, data.y_val, val_bs)

    state = _load_checkpoint(ckpt_path, settings)
    if state is None:
        eval_rng = random.Random(cfg.seed * 1000 + n + 500)
        eval_paths = [candidates[i] for i in sorted(eval_rng.sample(range(len(candidates)), cfg.eval_paths))]
        state = {
            "format": CHECKPOINT_FORMAT, "settings": settings, "epoch": 0, "step_in_epoch": 0, "step": 0,
            "rng": random.Random(cfg.seed * 1000 + n).getstate(),
            "bins": shrinking.make_bins(params, latency.get(target) if target else None, cfg.bins),
            "eval_paths": [candidates.index(b) for b in eval_paths],
            "untrained": [val_loss(b) for b in eval_paths],
            "history": [], "shrink": [], "tau": [], "train_s": 0.0, "tokens": 0,
        }
    else:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        torch.set_rng_state(state["torch_rng"])
    rng = random.Random()
    rng.setstate(_as_rng_state(state["rng"]))

    def save() -> None:
        state.update(model=net.state_dict(), optim=opt.state_dict(), rng=rng.getstate(),
                     torch_rng=torch.get_rng_state())
        write_atomic(ckpt_path, lambda tmp: torch.save(state, tmp))

    mask = torch.ones(cfg.batch_size, cfg.seq_len, dtype=torch.int64, device=device)
    net.train()
    for epoch in range(state["epoch"], cfg.epochs):
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(cfg.seed * 10**6 + n * 1000 + epoch))
        alive = [candidates[i] for b in state["bins"] for i in b]
        dearest = [candidates[i] for i in state["bins"][-1]]  # the sandwich steps' paths: the widest
        bar = tqdm(total=steps_per_epoch, initial=state["step_in_epoch"], disable=not progress, leave=False,
                   desc=f"block {n} epoch {epoch + 1}/{cfg.epochs}", unit="step")
        losses = []
        start = time.perf_counter()
        for i in range(state["step_in_epoch"], steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x, y = data.x_train[idx].to(device), data.y_train[idx].to(device)  # [B, S, T] each
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"], total_steps, cfg)
            opt.zero_grad(set_to_none=True)
            net.sample(rng, alive)
            with autocast(device, dtype):
                out = net(x, mask[: x.shape[0]])
            loss = F.mse_loss(out.float(), y)
            loss.backward()
            if cfg.sandwich_every and state["step"] % cfg.sandwich_every == 0:
                net.sample(rng, dearest)
                with autocast(device, dtype):
                    out = net(x, mask[: x.shape[0]])
                F.mse_loss(out.float(), y).backward()                          # gradients add up: one step for both
            opt.step()
            losses.append(loss.item())
            state["step"] += 1
            state["step_in_epoch"] = i + 1
            state["tokens"] += x.shape[0] * x.shape[1]
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.4f}", paths=len(alive))
            if state["step"] % cfg.checkpoint_every == 0:
                state["train_s"] += time.perf_counter() - start
                start = time.perf_counter()
                save()
            if on_step:
                on_step(state["step"])
        bar.close()
        state["train_s"] += time.perf_counter() - start
        state["history"].append({"epoch": epoch + 1, "train_loss": sum(losses) / max(1, len(losses)),
                                 "candidates": len(alive)})
        if epoch + 1 > cfg.warmup_epochs and not shrinking.done(state["bins"], cfg.keep_per_bin):
            _shrink(state, score, cfg, n, epoch + 1, progress)
        state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        save()
    # Shrink to exactly m per bin if the epochs ran out first (bounded: each step at least halves a bin).
    for extra in range(64):
        if shrinking.done(state["bins"], cfg.keep_per_bin):
            break
        _shrink(state, score, cfg, n, cfg.epochs + extra + 1, progress)
        save()
    return _finish(n, net, state, candidates, params, latency, data, cfg, out_dir, val_loss, save, progress, init)


def _as_rng_state(s: Any) -> tuple:
    """random.Random states come back from torch.load as lists; setstate wants tuples."""
    return (s[0], tuple(s[1]), s[2])


def _shrink(state: dict[str, Any], score: Callable[[int], float], cfg: TrainConfig, n: int, epoch: int,
            progress: bool) -> None:
    rng = random.Random(cfg.seed * 10**6 + n * 1000 + epoch + 7)
    total = shrinking.to_score(state["bins"], cfg.samples_per_bin, cfg.keep_per_bin)
    with tqdm(total=total, desc=f"block {n} shrink", unit="path", disable=not progress, leave=False) as bar:
        state["bins"] = shrinking.shrink_step(state["bins"], score, rng, cfg.samples_per_bin, cfg.keep_per_bin,
                                              on_score=bar.update)
    state["shrink"].append({"after_epoch": epoch, "scored": total, "alive": sum(map(len, state["bins"]))})


def _finish(n, net, state, candidates, params, latency, data, cfg, out_dir, val_loss, save, progress, init):
    """Pool losses, the trained losses of the evaluation paths, the Kendall tau; result.json."""
    pool = []
    for bin_index, b in enumerate(state["bins"]):
        for i in b:
            c = candidates[i]
            pool.append({"hidden": c.hidden, "layers": list(c.layers), "params": params[i], "bin": bin_index,
                         "latency_ms": {name: round(ms[i], 6) for name, ms in latency.items()},
                         "val_loss": val_loss(c)})
    eval_paths = [candidates[i] for i in state["eval_paths"]]
    trained = [val_loss(b) for b in eval_paths]
    tau_entries = tau_selection(pool, cfg.tau_paths, random.Random(cfg.seed * 1000 + n + 900))
    for k in tqdm(tau_entries[len(state["tau"]):], desc=f"block {n} tau", unit="path", disable=not progress,
                  leave=False):
        entry = pool[k]
        net.set(Block(entry["hidden"], tuple(entry["layers"])))
        standalone = train_standalone(net.get(), data, cfg, seed=cfg.seed * 1000 + n)
        state["tau"].append({"hidden": entry["hidden"], "layers": entry["layers"], "shared_loss": entry["val_loss"],
                             "standalone_loss": standalone})
        save()
    tau = shrinking.kendall_tau([t["shared_loss"] for t in state["tau"]], [t["standalone_loss"] for t in state["tau"]])
    write_atomic(out_dir / "supernet.pt", lambda tmp: torch.save(net.state_dict(), tmp))
    result = {
        "block": n,
        "candidates": len(candidates),
        "init": init,
        "target_mean_square": float(data.y_val.pow(2).mean()),  # MSE of predicting zeros: the loss scale
        "val_loss_untrained": sum(state["untrained"]) / len(state["untrained"]),
        "val_loss_trained": sum(trained) / len(trained),
        "eval_paths": [{"hidden": b.hidden, "layers": list(b.layers), "untrained": u, "trained": t}
                       for b, u, t in zip(eval_paths, state["untrained"], trained, strict=True)],
        "kendall_tau": tau,
        "tau_paths": state["tau"],
        "tau_steps": cfg.tau_steps,
        "steps": state["step"],
        "train_s": round(state["train_s"], 2),
        "tokens_per_s": round(state["tokens"] / max(state["train_s"], 1e-9), 1),
        "history": state["history"],
        "shrink": state["shrink"],
        "pool": sorted(pool, key=lambda e: (e["bin"], e["val_loss"])),
        "settings": state["settings"],
    }
    write_json_atomic(out_dir / "result.json", result)
    (out_dir / "checkpoint.pt").unlink(missing_ok=True)  # the result supersedes it (and it is ~3x the weights)
    return result


def settings_hash(teacher_id: dict[str, Any], corpus_id: dict[str, Any], cfg: TrainConfig, block: int,
                  tables: dict[str, str], target: str | None) -> str:
    """What a block's result depends on: a different key means its checkpoint cannot be resumed."""
    return content_key("train-block", 1, teacher=teacher_id, corpus=corpus_id, config=config_record(cfg),
                       block=block, tables=tables, target=target)


def config_record(cfg: TrainConfig) -> dict[str, Any]:
    """The settings as keys and summaries record them. `prune` came later: off, it is left out, so that the
    blocks and summaries of supernets trained before it keep their keys (and the later stages their reuse)."""
    config = asdict(cfg)
    if config["prune"] == "off":
        del config["prune"]
    return config
