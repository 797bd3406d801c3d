"""The `search` command as a job: a trained supernet, a device's latency predictor and budgets in;
one architecture JSON per budget and search.json out.

Re-rankers (`--rerank`), all on the validation split training scored its pools with; the test
split stays unseen for the benchmark:

- `finetune` (the default): each candidate is assembled as export assembles it (supernet weights,
  fitted embeddings), distilled end to end for a few steps (150; `--rerank-steps`), and scored by
  its sentence-embedding cosine to the teacher. The candidates are the best student of each
  attention count (search.py's `diverse`), because that is what the block losses cannot see. On
  MiniLM at 3.5 ms this picked a student with 4 attention layers (0.723 after 150 steps) over the
  block losses' favourite with 1 (0.695). About 30 s per candidate on 2 CPU cores.
- `chained`: the MSE of each of the top T as a chained student (blocks fed one into the next from
  the teacher's embedding output), no training; seconds. It barely separates the candidates
  (0.0352-0.0356 for the five above).
- `none`: the block losses' best.

Before any of them the candidates are narrowed three times, each only where something is left: to
students with at least `min_attention` attention layers (MIN_ATTENTION), to last blocks wide enough
for `min_readout` (readout.py) and to students predicted at MIN_USE of their budget or more.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from pipeline.artifacts import content_key, short_hash, write_json_atomic
from pipeline.budget import format_ms
from pipeline.devices.timing import STATISTIC
from pipeline.errors import PipelineError
from pipeline.latency import Predictor
from pipeline.search.exact import Choice, search
from pipeline.search.readout import MIN_READOUT
from pipeline.space import Architecture, save_architecture
from pipeline.train.trained import TrainedSupernet

SEARCH = "search.json"
# Students predicted at >= 90% of the (margin-reduced) budget come first: a student that leaves a tenth of
# its budget unused leaves capacity the user pays for in latency anyway.
MIN_USE = 0.9
# Training chunks the read-out caps are fit on: a least-squares fit of a width into the teacher's needs a
# few times more chunks than the width, and the cap is a preference, not a result (experiments.md).
READOUT_CHUNKS = 512
# Students keep at least one attention layer when one fits. Separable convolutions mix a token with its
# neighbours only; a stack of them imitates the base teacher's states well enough that the re-ranker's short
# distillation can prefer it, but a fine-tuned teacher's states (what a task needs) depend on the whole
# sentence. Every all-convolution pick taught a task so far lost to PKD's own student of similar latency,
# where picks with attention tied or won (docs/experiments.md, "Task accuracy").
MIN_ATTENTION = 1
RERANKERS = ("finetune", "chained", "none")
METHODS = ("nasbert", "nas-kd")  # selection from the shrunk pools (NAS-BERT), or the differentiable search
SCORES = {"finetune": "1 - validation sentence cosine after rerank_steps", "chained": "validation MSE of the "
          "chained student", "none": None}  # what each candidate's "score" in search.json is


def chained_loss_fn(trained: TrainedSupernet, progress: bool = False):
    """Architecture -> MSE of its chained student against the teacher's last hidden states (validation)."""
    from pipeline.model.teacher import teacher_states
    from pipeline.train.standalone import mean_loss

    last = trained.summary["space"]["teacher_layers"]
    states = teacher_states(trained.teacher_model, trained.corpus.validation, [0, last], progress=progress)
    x, y = states[0], states[last]

    def loss(arch: Architecture) -> float:
        return mean_loss(trained.chain(arch), x, y, batch_size=16)

    return loss


def finetune_fidelity_fn(trained: TrainedSupernet, steps: int, seed: int = 0, progress: bool = False,
                         log=print):
    """Architecture -> 1 - validation sentence cosine to the teacher after `steps` of end-to-end
    distillation from the supernet's weights (lower is better, like a loss)."""
    from pipeline.finetune.builder import BuildConfig, StudentBuilder
    from pipeline.finetune.distill import DistillConfig, fidelity, outputs
    from pipeline.model.teacher import cached_teacher_states

    cfg = BuildConfig(finetune=DistillConfig(steps=steps, seed=seed), seed=seed)
    ex = StudentBuilder(trained, cfg, progress=progress, log=lambda _m: None)
    last = trained.summary["space"]["teacher_layers"]
    # [N, S, T], the same entry as the read-out caps'
    reference = cached_teacher_states(trained.teacher_model, ex.data.validation, last)
    numbers = itertools.count(1)

    def score(arch: Architecture) -> float:
        start = time.perf_counter()
        student, _ = ex.student(arch, "re-rank")
        cosine = fidelity(outputs(student, ex.data.validation), reference)["sentence"]
        attention = arch.attention_layers
        log(f"re-rank candidate {next(numbers)}: validation cosine {cosine:.4f} after {steps} steps "
            f"({attention} attention layer{'' if attention == 1 else 's'}, {time.perf_counter() - start:.0f} s): "
            f"{arch.describe()}")
        return 1.0 - cosine

    return score


def check_min_readout(value: float) -> None:
    if not 0 <= value <= 1:
        raise PipelineError(f"--min-readout must be a cosine in [0, 1], got {value}")


def check_rerank(rerank: str, steps: int) -> None:
    if rerank not in RERANKERS:
        raise PipelineError(f"unknown re-ranker {rerank!r}; use {', '.join(RERANKERS)}")
    if rerank == "finetune" and steps < 1:
        raise PipelineError(f"--rerank-steps must be at least 1, got {steps}")


def check_search_options(top_t: int, rerank: str, rerank_steps: int, margin: float, min_readout: float,
                         min_attention: int = MIN_ATTENTION) -> None:
    """Every option of a search, checked before any work (run checks them before training)."""
    if min_attention < 0:
        raise PipelineError(f"--min-attention must be 0 or more, got {min_attention}")
    if top_t < 1:
        raise PipelineError(f"--top must be at least 1, got {top_t}")
    if not 0 <= margin < 0.5:
        raise PipelineError(f"--margin must be in [0, 0.5), got {margin}")
    check_rerank(rerank, rerank_steps)
    check_min_readout(min_readout)


def readout_widths(trained: TrainedSupernet, floor: float, log=print) -> tuple[dict[int, float], set[int] | None]:
    """The read-out cap of every last-block width in the pools (readout.py: fit on READOUT_CHUNKS of
    the training text, judged on the validation split), and the widths that reach `floor` (None: no
    preference, floor 0 or none reaches it)."""
    from pipeline.model.teacher import cached_teacher_states, sample_chunks
    from pipeline.search.readout import readout_caps, wide_enough

    if floor <= 0:
        return {}, None
    data, teacher = trained.corpus, trained.teacher_model
    last = trained.summary["space"]["teacher_layers"]
    states = cached_teacher_states(teacher, data.validation, last)                          # [N, S, T]
    fit = cached_teacher_states(teacher, sample_chunks(data.train, READOUT_CHUNKS, seed=0), last)  # [M, S, T]
    caps = readout_caps(fit, states, {int(e["hidden"]) for e in trained.pools[-1]})
    wide = wide_enough(caps, floor) or None
    shown = ", ".join(f"{h}: {c:.3f}" for h, c in caps.items())
    log(f"read-out caps of the last block's width (sentence cosine at best): {shown}; "
        + (f"preferring {', '.join(map(str, sorted(wide)))} (at least {floor:g})" if wide else
           f"none reaches {floor:g}, no preference"))
    return caps, wide


def search_key(train_dir: Path, predictor: Predictor, budgets_ms: list[float], max_params: int | None = None,
               top_t: int = 5, rerank: str = "finetune", rerank_steps: int = 150, margin: float = 0.0, seed: int = 0,
               min_readout: float = MIN_READOUT, min_attention: int = MIN_ATTENTION) -> str:
    """What a search result depends on (run_search's arguments): written into search.json, so that `run`
    reuses a search of the same pools, table and options."""
    return content_key("search", 4, min_attention=min_attention, train=TrainedSupernet(train_dir).content_hash,
                       table=short_hash(predictor.table.df.to_csv(index=False)), seq=predictor.seq,
                       budgets=list(budgets_ms), max_params=max_params, top=top_t, margin=margin,
                       rerank=[rerank, rerank_steps, seed], min_readout=min_readout)


def run_search(train_dir: Path, predictor: Predictor, device: str, budgets_ms: list[float], out: Path,
               max_params: int | None = None, top_t: int = 5, rerank: str = "finetune", rerank_steps: int = 150,
               log=print, margin: float = 0.0, seed: int = 0, progress: bool = False,
               min_readout: float = MIN_READOUT, min_attention: int = MIN_ATTENTION) -> list[Choice]:
    """`margin` searches under budget x (1 - margin) and labels the result with the budget: room for
    the predictor's error, so that the measured latency stays within the budget. `rerank` is one of
    RERANKERS (module docstring). `min_readout`: prefer last blocks whose read-out cap reaches it
    (readout.py; 0 turns the preference off). `min_attention`: prefer students with at least this many
    attention layers (MIN_ATTENTION; 0 turns the preference off)."""
    check_search_options(top_t, rerank, rerank_steps, margin, min_readout, min_attention)
    user_budgets = list(budgets_ms)
    budgets_ms = [b * (1 - margin) for b in user_budgets]
    # Absolute: search.json is read from other folders (export runs where the user is).
    out, train_dir = Path(out).absolute(), Path(train_dir).absolute()
    trained = TrainedSupernet(train_dir)
    caps, wide = readout_widths(trained, min_readout, log)
    # The plain search runs first on its own (milliseconds) so that its time is reported apart from
    # the re-ranking, which runs students and dominates.
    start = time.perf_counter()
    plain = search(trained.pools, trained.frame, predictor, budgets_ms, max_params=max_params, top_t=top_t,
                   last_widths=wide, min_use=MIN_USE, min_attention=min_attention)
    search_s = time.perf_counter() - start
    pool_sizes = [len(p) for p in trained.pools]
    n_students = 1
    for size in pool_sizes:
        n_students *= size
    log(f"searched {n_students:,} students (pools {pool_sizes}) under {len(budgets_ms)} budget(s) "
        f"in {search_s * 1000:.0f} ms")
    choices, rerank_s = plain, 0.0
    if rerank != "none":
        start = time.perf_counter()
        if rerank == "finetune":
            log(f"re-ranking the best student of up to {top_t} attention counts per budget by validation cosine "
                f"after {rerank_steps} steps of end-to-end distillation")
            fn, what = finetune_fidelity_fn(trained, rerank_steps, seed, progress, log), "fine-tuned cosine"
        else:
            fn, what = chained_loss_fn(trained, progress), "the chained student's validation loss"
        choices = search(trained.pools, trained.frame, predictor, budgets_ms, max_params=max_params, top_t=top_t,
                         rerank=fn, diverse=rerank == "finetune", last_widths=wide, min_use=MIN_USE,
                         min_attention=min_attention)
        rerank_s = time.perf_counter() - start
        log(f"re-ranked {sum(c.candidates_ranked for c in choices)} candidates by {what} in {rerank_s:.1f} s")
    # Label each choice with the user's budget (the search ran under the margin-reduced one).
    by_search = dict(zip(budgets_ms, user_budgets, strict=True))
    choices = [replace(c, budget_ms=by_search[c.budget_ms]) for c in choices]
    for c in choices:
        if c.arch.attention_layers < min_attention:
            log(f"note: no student with {min_attention} attention layer{'' if min_attention == 1 else 's'} fits "
                f"{format_ms(c.budget_ms)}; its student has {c.arch.attention_layers}")
        if wide and c.arch.blocks[-1].hidden not in wide:
            log(f"note: nothing with a last block of {', '.join(map(str, sorted(wide)))} fits "
                f"{format_ms(c.budget_ms)}; its student's last block is {c.arch.blocks[-1].hidden} wide "
                f"(fidelity at most {caps[c.arch.blocks[-1].hidden]:.3f})")
    (out / SEARCH).unlink(missing_ok=True)  # the record goes before the architecture files change and comes back
    # last: a search killed between them leaves no record, never an older one beside newer files
    records: list[dict[str, Any]] = []
    names: set[str] = set()
    for c in choices:
        name = f"arch_{format_ms(c.budget_ms)}"
        name = name if name not in names else f"{name}_{len(names)}"  # budgets equal to 4 digits
        names.add(name)
        path = save_architecture(c.arch, out / f"{name}.json")
        records.append({**c.as_dict(), "arch_path": str(path)})
    key = search_key(train_dir, predictor, user_budgets, max_params, top_t, rerank, rerank_steps, margin, seed,
                     min_readout, min_attention)
    write_json_atomic(out / SEARCH, {
        "key": key, "device": device, "train_dir": str(train_dir), "budgets_ms": user_budgets, "margin": margin,
        "searched_under_ms": budgets_ms, "max_params": max_params,
        "top_t": top_t, "min_use": MIN_USE,
        "min_attention": min_attention, "min_readout": min_readout,
        "readout_caps": {str(h): c for h, c in caps.items()},
        "preferred_last_widths": sorted(wide) if wide else None,
        "rerank": rerank, "rerank_steps": rerank_steps if rerank == "finetune" else None,
        "rerank_score": SCORES[rerank], "latency": f"predicted from {predictor.table.path} ({STATISTIC})",
        "search_s": search_s, "rerank_s": rerank_s, "students_searched": n_students, "choices": records,
    })
    return choices


# ---- NAS-KD: the differentiable search (naskd.py), the same outputs ----
NASKD_TRAIN_CHUNKS = 512  # training chunks the relaxed student reads (teacher states at every boundary in memory)
NASKD_VAL_CHUNKS = 64     # validation chunks for the architecture steps


def nas_kd_key(train_dir: Path, predictor: Predictor, budgets_ms: list[float], margin: float, cfg=None) -> str:
    from pipeline.search.naskd import NasKdConfig

    return content_key("search-nas-kd", 2, train=TrainedSupernet(train_dir).content_hash,
                       table=short_hash(predictor.table.df.to_csv(index=False)), seq=predictor.seq,
                       budgets=list(budgets_ms), margin=margin, cfg=asdict(cfg or NasKdConfig()))


def run_nas_kd(train_dir: Path, predictor: Predictor, device: str, budgets_ms: list[float], out: Path,
               margin: float = 0.0, cfg=None, progress: bool = False, log=print) -> list[dict[str, Any]]:
    """One NAS-KD search per budget (under budget x (1 - margin), read out at MIN_USE of it or more as the
    NAS-BERT search's students are); writes arch_<budget>.json and search.json as run_search does, so
    export and benchmark take them unchanged."""
    from pipeline.model.teacher import sample_chunks, teacher_states
    from pipeline.search.naskd import NasKdConfig, nas_kd_widths
    from pipeline.search.relaxed import LatencyTerms, RelaxedStudent

    if not 0 <= margin < 0.5:
        raise PipelineError(f"--margin must be in [0, 0.5), got {margin}")
    cfg = cfg or NasKdConfig()
    # Absolute: search.json is read from other folders (export runs where the user is).
    out, train_dir = Path(out).absolute(), Path(train_dir).absolute()
    trained = TrainedSupernet(train_dir)
    per_block = trained.layers_per_block // 2
    bounds = [n * per_block for n in range(trained.num_blocks + 1)]              # 0 = the embedding output
    data, teacher = trained.corpus, trained.teacher_model

    def states(ids):
        s = teacher_states(teacher, ids, bounds, progress=progress)
        return s[0], [s[b] for b in bounds[1:]]

    train = states(sample_chunks(data.train, NASKD_TRAIN_CHUNKS, cfg.seed))
    val = states(data.validation[:NASKD_VAL_CHUNKS])

    def relaxed(widths: tuple[int, ...]) -> tuple[RelaxedStudent, LatencyTerms]:
        """A relaxed student of these widths warm-started from the supernet, and its latency terms."""
        student = RelaxedStudent(trained.frame, widths, trained.layers_per_block, trained.num_blocks)
        for n, block in enumerate(student.blocks, 1):
            for path in block.paths:
                path.load_supernet(trained.supernet_block(n))
        return student, LatencyTerms(predictor, trained.frame, widths)

    (out / SEARCH).unlink(missing_ok=True)  # before the architecture files change: see run_search
    records, names = [], set()
    for budget in budgets_ms:
        found = nas_kd_widths(relaxed, trained.hidden_sizes, predictor, budget * (1 - margin), train, val, cfg,
                              progress, log, min_use=MIN_USE)
        arch = found.pop("arch")
        name = f"arch_{format_ms(budget)}"
        name = name if name not in names else f"{name}_{len(names)}"
        names.add(name)
        path = save_architecture(arch, out / f"{name}.json")
        log(f"nas-kd {format_ms(budget)}: {arch.describe()}, predicted {found['predicted_ms']:.3f} ms, "
            f"validation loss {found['val_loss_first']:.4f} -> {found['val_loss_last']:.4f} in "
            f"{found['seconds']:.0f} s")
        records.append({"budget_ms": budget, "method": "nas-kd", "predicted_ms": found["predicted_ms"],
                        "est_loss": found["val_loss_last"], "true_loss": None, "params": found["params"],
                        "arch": arch.to_dict(), "describe": arch.describe(), "arch_path": str(path),
                        "nas_kd": found})
    write_json_atomic(out / SEARCH, {
        "key": nas_kd_key(train_dir, predictor, budgets_ms, margin, cfg),
        "method": "nas-kd", "device": device, "train_dir": str(train_dir), "budgets_ms": list(budgets_ms),
        "margin": margin, "latency": f"predicted from {predictor.table.path} ({STATISTIC})",
        "config": asdict(cfg), "choices": records,
    })
    return records
