"""Latency statistics from raw timings, and the one measurement loop every backend shares.

The statistic that tables store, that `predict` returns and that `benchmark` compares it with is
`robust_ms`: the median of the quietest burst (the minimum over bursts of each burst's p50).
On a shared machine a neighbour slows whole stretches of runs; the quietest burst's median
stays put while the overall p50 swings (DESIGN.md, "Timing on a shared machine").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

STATISTIC = "p50 of the quietest burst"


@dataclass(frozen=True)
class Latency:
    robust_ms: float  # STATISTIC: what tables store and predictions are compared with
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float    # mean and std after trimming far outliers (beyond Q3 + 3 IQR)
    std_ms: float
    min_ms: float
    n: int            # timed runs (warm-up excluded)
    n_trimmed: int    # runs left out of mean and std

    @classmethod
    def from_bursts(cls, bursts: Sequence[Sequence[float]]) -> Latency:
        bursts = [list(b) for b in bursts if len(b)]
        if not bursts:
            raise ValueError("no timings")
        ms = np.concatenate([np.asarray(b, dtype=np.float64) for b in bursts])
        q1, q3 = np.percentile(ms, [25, 75])
        kept = ms[ms <= q3 + 3 * (q3 - q1)]
        return cls(
            robust_ms=float(min(np.median(b) for b in bursts)),
            p50_ms=float(np.percentile(ms, 50)),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
            mean_ms=float(kept.mean()),
            std_ms=float(kept.std(ddof=1)) if len(kept) > 1 else 0.0,
            min_ms=float(ms.min()),
            n=int(len(ms)),
            n_trimmed=int(len(ms) - len(kept)),
        )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def measure(timed_runs: Sequence[Callable[[], float]], warmup: int, bursts: int,
            runs_per_burst: int) -> list[Latency]:
    """Time several models interleaved run by run, so that drift hits all of them alike.

    Each callable runs its model once and returns that run's time in ms, on its backend's own
    clock (perf_counter around session.run, CUDA events on a GPU).
    """
    for _ in range(warmup):
        for run in timed_runs:
            run()
    samples: list[list[list[float]]] = [[[] for _ in range(bursts)] for _ in timed_runs]
    for b in range(bursts):
        for _ in range(runs_per_burst):
            for i, run in enumerate(timed_runs):
                samples[i][b].append(run())
    return [Latency.from_bursts(s) for s in samples]
