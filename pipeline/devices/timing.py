"""Latency statistics from raw timings, and the one measurement loop every backend shares.

The statistic that tables store, that `predict` returns and that `benchmark` compares it with is
`robust_ms`: the minimum over all timed runs. Noise on a shared machine only ever adds time, so
the minimum converges on what the hardware does; measured here on 30 students timed twice, the
minimum moved by at most 0.9% (std 0.16%) where the quietest burst's p50 moved 2.4% and the
overall p50 7.4%. p50/p90/p99 are reported beside it for users.

Measured on this 2-core shared machine: a neighbour slows whole stretches of seconds (ops read
1.3-1.6x slower for a 10 s profile, then normal again), and a model run right after another one
runs cold (an FFN stack at hidden 384: 2.9 ms warm, 7-10 ms straight after another model). So
`measure` time-slices: in each round every model gets a few warm-up runs and then a burst, the
order shuffled per round, and rounds are spread over the whole measurement. A slow stretch then
spoils only some bursts of each model.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

STATISTIC = "minimum of all timed runs"


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
            robust_ms=float(ms.min()),
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


def measure(timed_runs: Sequence[Callable[[], float]], warmup: int, rounds: int, runs_per_round: int,
            min_round_s: float = 0.0, seed: int = 0,
            on_round: Callable[[int, list[list[list[float]]]], None] | None = None,
            samples: list[list[list[float]]] | None = None) -> list[Latency]:
    """Time several models in rounds; each round gives every model one warm burst.

    Each callable runs its model once and returns that run's time in ms, on its backend's own
    clock (perf_counter around session.run, CUDA events on a GPU). A round shorter than
    `min_round_s` is padded with sleep, so that even one model's bursts are spread in time.
    `samples` (per model, per round, per run) resumes an interrupted measurement; `on_round` sees
    it after every round, to save it.
    """
    samples = samples if samples is not None else [[] for _ in timed_runs]
    rng = random.Random(seed)
    done = min((len(s) for s in samples), default=0)
    for r in range(done, rounds):
        t0 = time.perf_counter()
        order = list(range(len(timed_runs)))
        rng.shuffle(order)
        for i in order:
            run = timed_runs[i]
            for _ in range(warmup):
                run()
            burst = [run() for _ in range(runs_per_round)]
            if len(samples[i]) == r:
                samples[i].append(burst)
        if on_round:
            on_round(r, samples)
        left = min_round_s - (time.perf_counter() - t0)
        if left > 0 and r + 1 < rounds:
            time.sleep(left)
    return [Latency.from_bursts(s) for s in samples]
