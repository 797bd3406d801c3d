"""The `train` command as a job: teacher, corpus and teacher states in; one trained block per
block out (resumed or reused when already there); train_summary.json at the end.

Several processes share the work when started by torchrun (RANK / WORLD_SIZE in the environment):
each trains its share of the blocks, they meet at a barrier, and rank 0 writes the summary.
"""

from __future__ import annotations

import copy
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from pipeline.artifacts import read_json, reusable, write_json_atomic
from pipeline.compute import compute_device
from pipeline.errors import PipelineError
from pipeline.model.corpus import load_corpus
from pipeline.model.teacher import (
    block_boundaries,
    chunks_for_states,
    load_teacher,
    load_tokenizer,
    resolve_teacher,
    sample_chunks,
    space_of_config,
    teacher_states,
)
from pipeline.train.blockwise import TrainConfig, config_record, settings_hash, table_predictor, train_block
from pipeline.train.inherit import inherit
from pipeline.train.standalone import BlockData
from pipeline.train.trained import SUMMARY


def _teacher_id(model, path: str) -> dict[str, Any]:
    """The teacher's config plus a checksum of its weights (a retrained copy at the same path differs)."""
    with torch.no_grad():
        checksum = float(sum(p.double().abs().sum() for p in model.parameters()))
    return {"path": path, "config": model.config.to_diff_dict(), "checksum": round(checksum, 3)}


def _dist() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def run_train(out: Path, cfg: TrainConfig, teacher: str | None = None, corpus: str | None = None,
              dataset: str | None = None, blocks: list[int] | None = None, device: str = "cpu",
              table: Path | None = None, target: str | None = "cpu", force: bool = False,
              progress: bool = True, log=print) -> dict[str, Any]:
    """Train (or resume, or reuse) the requested blocks and return the summary written to OUT."""
    cfg.check()
    rank, world, local_rank = _dist()
    dev = compute_device(device, local_rank)
    path = resolve_teacher(teacher)
    tokenizer = load_tokenizer(teacher)
    model = load_teacher(teacher).to(dev)
    c = model.config
    space = space_of_config(c, prune=cfg.prune != "off")
    if cfg.seq_len > c.max_position_embeddings:
        n = c.max_position_embeddings
        raise PipelineError(f"sequence length {cfg.seq_len} is longer than the teacher's {n} positions; "
                            f"pass --seq-len {n} or less")
    wanted = blocks or list(range(1, space.num_blocks + 1))
    for b in wanted:
        if not 1 <= b <= space.num_blocks:
            raise PipelineError(f"--block {b} is out of range: the teacher has blocks 1..{space.num_blocks}")
    mine = [b for b in wanted if (b - 1) % world == rank]
    data = load_corpus(tokenizer, cfg.seq_len, corpus, dataset)
    # The bins rank candidates by latency on the one table given (the command's, this machine's),
    # never by whatever else lies in its folder.
    predictors = {target or "target": table_predictor(space, table, cfg.seq_len)} if table else {}
    if not table:
        log("note: no latency table: the candidates are binned by parameters only, not by latency on a device")
        target = None
    tables = {name: p.table.fingerprint_hash for name, p in predictors.items()}
    teacher_id = _teacher_id(model, path)
    corpus_id = {**data.describe(), "train_sum": int(data.train.sum()), "val_sum": int(data.validation.sum())}
    log(f"teacher {path}: {c.num_hidden_layers} layers, hidden {c.hidden_size} -> {space.num_blocks} blocks of "
        f"{space.layers_per_block} layers, widths {list(space.hidden_sizes)}")
    log(f"corpus {data.source}: {data.train.shape[0]} training / {data.validation.shape[0]} validation chunks of "
        f"{cfg.seq_len} tokens (test split of {data.test.shape[0]} held out); training on {dev}"
        + (f", rank {rank} of {world}: blocks {mine}" if world > 1 else ""))
    bounds = block_boundaries(space)
    todo = []
    for b in mine:
        settings = settings_hash(teacher_id, corpus_id, cfg, b, tables, target)
        block_dir = out / f"block_{b}"
        if force:
            for name in ("checkpoint.pt", "result.json", "supernet.pt"):
                (block_dir / name).unlink(missing_ok=True)
        if reusable(block_dir / "result.json", settings, field="settings"):
            log(f"block {b}: already trained with these settings ({block_dir / 'result.json'}), reused")
            continue
        (block_dir / "result.json").unlink(missing_ok=True)  # of other settings, or damaged: trained again
        todo.append((b, settings))
    if todo:
        layers = sorted({bounds[b - 1] for b, _ in todo} | {bounds[b] for b, _ in todo})
        wanted = cfg.epochs * cfg.epoch_steps * cfg.batch_size  # what the schedule reads at most
        n = chunks_for_states(wanted, cfg.seq_len, space.teacher_hidden, len(layers))
        train_ids = sample_chunks(data.train, n, cfg.seed)
        if train_ids.shape[0] < data.train.shape[0]:
            log(f"training on a random {train_ids.shape[0]} of the {data.train.shape[0]} training chunks "
                f"(the schedule reads at most {wanted}; the teacher's states must fit in memory)")
        train_states = teacher_states(model, train_ids, layers, progress=progress)
        val_states = teacher_states(model, data.validation, layers, progress=progress)
        orders = _importance_orders(model, cfg, data.train, log)
        starts = {b: partial(inherit, layers=[copy.deepcopy(model.encoder.layer[i]).cpu()
                                              for i in range(bounds[b - 1], bounds[b])],
                             teacher_heads=c.num_attention_heads,
                             orders=orders[bounds[b - 1]:bounds[b]] if orders else None)
                  if cfg.init == "teacher" else None for b, _ in todo}
        del model
        for b, settings in todo:
            lo, hi = bounds[b - 1], bounds[b]
            block_data = BlockData(train_states[lo], train_states[hi], val_states[lo], val_states[hi])
            log(f"block {b}: teacher layers {lo + 1}-{hi}, training {cfg.epochs} epochs of up to "
                f"{cfg.epoch_steps} steps ({cfg.warmup_epochs} before shrinking)")
            r = train_block(b, space, block_data, cfg, out / f"block_{b}", settings, predictors, target, dev,
                            progress, start=starts[b])
            if r["init"]["from"] == "teacher":
                log(f"block {b}: started from the teacher's layers {lo + 1}-{hi} (attention {r['init']['attention']})")
            elif cfg.init == "teacher":
                log(f"block {b}: started at random: {r['init'].get('why')}")
            log(f"block {b}: val loss {r['val_loss_untrained']:.4f} -> {r['val_loss_trained']:.4f}, pool "
                f"{len(r['pool'])}, kendall tau {r['kendall_tau']:.2f}, {r['tokens_per_s']:.0f} tokens/s")
    if world > 1:
        _barrier(dev)
    if rank != 0:
        return {}
    corpus_args = {"corpus": str(Path(corpus).resolve()) if corpus else None, "dataset": dataset}
    summary = _write_summary(out, path, {**data.describe(), **corpus_args}, cfg, space, device, predictors, target,
                             world)
    return {**summary, "trained_now": [b for b, _ in todo]}  # not written: what this call did, for run.json


IMPORTANCE_CHUNKS = 256  # training chunks that rank heads and neurons: 33k tokens, a minute on 2 cores


def _importance_orders(model, cfg: TrainConfig, train: torch.Tensor, log
                       ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Per teacher layer, (heads, neurons) most important first by cfg.prune's measure; None when off."""
    if cfg.prune == "off":
        return None
    from pipeline.model.importance import cached_importance

    ids = sample_chunks(train, IMPORTANCE_CHUNKS, cfg.seed)
    imp = cached_importance(model, cfg.prune, ids, cfg.seed)  # about a minute on 2 cores, then cached
    log(f"ranked the teacher's heads and FFN neurons by {cfg.prune} on {ids.shape[0]} training chunks")
    return [(imp.head_order(i), imp.neuron_order(i)) for i in range(imp.heads.shape[0])]


def _barrier(dev: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    dist.barrier()
    dist.destroy_process_group()


def _result(block_dir: Path) -> dict[str, Any] | None:
    try:
        return read_json(block_dir / "result.json", "")
    except (FileNotFoundError, PipelineError):
        return None  # an unreadable result is retrained, from the checkpoint if there is one


def _write_summary(out, teacher_path, corpus, cfg, space, device, predictors, target, world) -> dict[str, Any]:
    blocks, missing = [], []
    for b in range(1, space.num_blocks + 1):
        r = _result(out / f"block_{b}")
        (blocks if r is not None else missing).append(r if r is not None else b)
    summary = {
        "teacher": teacher_path,
        "corpus": corpus,
        "config": config_record(cfg),
        "training_device": device,
        "processes": world,
        "space": {"teacher_hidden": space.teacher_hidden, "hidden_sizes": list(space.hidden_sizes),
                  "num_blocks": space.num_blocks, "layers_per_block": space.layers_per_block,
                  "embed_dim": space.embed_dim, "vocab_size": space.vocab_size,
                  "max_positions": space.max_positions, "teacher_layers": space.teacher_layers,
                  # only where the space has them: the summaries (and keys) of plain supernets stay as they were
                  **({"teacher_attention": list(space.teacher_attention), "teacher_ffn": list(space.teacher_ffn)}
                     if space.teacher_ops else {})},
        "latency_tables": {name: str(p.table.path) for name, p in predictors.items()},
        "bins_by": f"latency on {target} and parameters" if target else "parameters",
        "loss": "mean squared error against the teacher's hidden states at the block's output",
        "blocks": blocks,
        "missing_blocks": missing,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(out / SUMMARY, summary)
    return summary
