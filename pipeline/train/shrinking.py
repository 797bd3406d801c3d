"""Hardware-aware progressive shrinking (NAS-BERT): bins of similar cost, pruned by validation loss.

The candidates of a block are split into B bins of equal count by their cost: the mean of their
rank by predicted latency on the target device and their rank by parameters, so that each bin
holds architectures of similar size and speed. After the warm-up epochs, each shrinking step
scores E candidates sampled from every bin on a few validation batches and keeps the better half
of that sample as the bin (when a bin holds no more than E, that is exactly "drop the worse
half"), never fewer than m. Training then samples paths only from the survivors.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np


def ranks(values: Sequence[float]) -> np.ndarray:
    """0..1 rank of each value (ties share the mean rank)."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    for value in np.unique(v):  # average ties so that equal costs never straddle a bin edge by index
        same = v == value
        r[same] = r[same].mean()
    return r / max(len(v) - 1, 1)


def make_bins(params: Sequence[int], latency_ms: Sequence[float] | None, n_bins: int) -> list[list[int]]:
    """Candidate indices split into `n_bins` equal-count bins from cheapest to dearest."""
    if n_bins < 1:
        raise ValueError("need at least one bin")
    cost = ranks(params) if latency_ms is None else (ranks(params) + ranks(latency_ms)) / 2
    order = np.lexsort((np.arange(len(cost)), cost))  # by cost, then index: deterministic
    return [chunk.tolist() for chunk in np.array_split(order, min(n_bins, len(order)))]


def shrink_step(bins: list[list[int]], score: Callable[[int], float], rng: random.Random, samples: int,
                keep: int, on_score: Callable[[], None] | None = None) -> list[list[int]]:
    """One shrinking step: in every bin above `keep`, score `samples` candidates and keep the better half."""
    out = []
    for b in bins:
        if len(b) <= keep:
            out.append(list(b))
            continue
        sample = sorted(rng.sample(b, min(samples, len(b))))
        scored = []
        for c in sample:
            scored.append((score(c), c))
            if on_score:
                on_score()
        scored.sort()
        out.append(sorted(c for _, c in scored[: max(keep, len(sample) // 2)]))
    return out


def to_score(bins: list[list[int]], samples: int, keep: int) -> int:
    """How many candidates the next shrink_step scores (for progress bars)."""
    return sum(min(samples, len(b)) for b in bins if len(b) > keep)


def done(bins: list[list[int]], keep: int) -> bool:
    return all(len(b) <= keep for b in bins)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two score lists (1: same order, -1: reversed)."""
    n = len(a)
    if n != len(b) or n < 2:
        raise ValueError("kendall_tau needs two lists of the same length >= 2")
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denom = np.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denom) if denom else 0.0
