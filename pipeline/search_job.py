"""The `search` command as a job: a trained supernet, a device's latency predictor and budgets in;
one architecture JSON per budget and search.json out.

The re-ranker is the true validation loss of each top-T candidate as a chained student (blocks fed
one into the next from the teacher's embedding output), on the validation split training scored
its pools with; the test split stays unseen for the benchmark.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.artifacts import write_json_atomic
from pipeline.budget import format_ms
from pipeline.errors import PipelineError
from pipeline.latency import Predictor
from pipeline.search import Choice, search
from pipeline.space import Architecture, save_architecture
from pipeline.timing import STATISTIC
from pipeline.trained import TrainedSupernet

SEARCH = "search.json"


def chained_loss_fn(trained: TrainedSupernet, progress: bool = False):
    """Architecture -> MSE of its chained student against the teacher's last hidden states (validation)."""
    from pipeline.data import load_corpus
    from pipeline.teacher import load_teacher, load_tokenizer, teacher_states
    from pipeline.train import mean_loss

    corpus = trained.summary["corpus"]
    tokenizer = load_tokenizer(trained.teacher)
    data = load_corpus(tokenizer, trained.seq_len, corpus.get("corpus"), corpus.get("dataset"))
    last = trained.summary["space"]["teacher_layers"]
    states = teacher_states(load_teacher(trained.teacher), data.validation, [0, last], progress=progress)
    x, y = states[0], states[last]

    def loss(arch: Architecture) -> float:
        return mean_loss(trained.chain(arch), x, y, batch_size=16)

    return loss


def run_search(train_dir: Path, predictor: Predictor, device: str, budgets_ms: list[float], out: Path,
               max_params: int | None = None, top_t: int = 5, rerank: bool = True,
               log=print, margin: float = 0.0) -> list[Choice]:
    """`margin` searches under budget x (1 - margin) and labels the result with the budget: room for
    the predictor's error, so that the measured latency stays within the budget."""
    if not 0 <= margin < 0.5:
        raise PipelineError(f"--margin must be in [0, 0.5), got {margin}")
    user_budgets = list(budgets_ms)
    budgets_ms = [b * (1 - margin) for b in user_budgets]
    trained = TrainedSupernet(train_dir)
    # The plain search runs first on its own (milliseconds) so that its time is reported apart from
    # the re-ranking, which runs students and dominates.
    start = time.perf_counter()
    plain = search(trained.pools, trained.frame, predictor, budgets_ms, max_params=max_params, top_t=top_t)
    search_s = time.perf_counter() - start
    pool_sizes = [len(p) for p in trained.pools]
    n_students = 1
    for size in pool_sizes:
        n_students *= size
    log(f"searched {n_students:,} students (pools {pool_sizes}) under {len(budgets_ms)} budget(s) "
        f"in {search_s * 1000:.0f} ms")
    choices, rerank_s = plain, 0.0
    if rerank:
        start = time.perf_counter()
        loss = chained_loss_fn(trained)
        choices = search(trained.pools, trained.frame, predictor, budgets_ms, max_params=max_params, top_t=top_t,
                         rerank=loss)
        rerank_s = time.perf_counter() - start
        log(f"re-ranked the top {top_t} of each budget by the chained student's validation loss "
            f"in {rerank_s:.1f} s")
    # Label each choice with the user's budget (the search ran under the margin-reduced one).
    by_search = dict(zip(budgets_ms, user_budgets, strict=True))
    choices = [replace(c, budget_ms=by_search[c.budget_ms]) for c in choices]
    records: list[dict[str, Any]] = []
    names: set[str] = set()
    for c in choices:
        name = f"arch_{format_ms(c.budget_ms)}"
        name = name if name not in names else f"{name}_{len(names)}"  # budgets equal to 4 digits
        names.add(name)
        path = save_architecture(c.arch, out / f"{name}.json")
        records.append({**c.as_dict(), "arch_path": str(path)})
    write_json_atomic(out / SEARCH, {
        "device": device, "train_dir": str(train_dir), "budgets_ms": user_budgets, "margin": margin,
        "searched_under_ms": budgets_ms, "max_params": max_params,
        "top_t": top_t, "latency": f"predicted from {predictor.table.path} ({STATISTIC})",
        "search_s": search_s, "rerank_s": rerank_s, "students_searched": n_students, "choices": records,
    })
    return choices
