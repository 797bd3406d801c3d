"""Stage 3: the best combination of per-block candidates under latency budgets (exact, not sampled).

The search never knows the hardware (once-for-all's rule): it receives a latency model that turns
parts of a student into additive term vectors and term sums into milliseconds (`Predictor` is
one), a quality estimator (by default the sum of the blocks' validation losses, NAS-BERT's), and
optionally a re-ranker that measures candidates directly (search/job.py: a short end-to-end
fine-tune, or the chained student's validation loss).

Exact: every combination of the (Pareto-pruned) pools is scored, vectorised over all blocks but
the first, so 100 candidates in each of 3 blocks (10^6 students) take a fraction of a second.
Pruning is exact too: within a block and width, a candidate no better in loss and no cheaper in
any latency term than another can never be the answer, because the prediction is monotone in
every term when the calibration's coefficients are non-negative (checked; otherwise no pruning).

The block losses are blind to one thing that matters: attention. In block-wise training a stack of
separable convolutions matches a block's outputs as well as attention does, but chained and
distilled end to end the students with more attention layers end far closer to the teacher. On
MiniLM (cpu table, 3.5 ms, quick supernet) the best student with 0-4 attention layers had block
losses within 0.0004 of each other and, after 150 steps of end-to-end distillation, validation
cosines of 0.653, 0.695, 0.709, 0.719 and 0.723. Hence `diverse`, which hands a re-ranker that
fine-tunes the best student of each attention count.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.budget import format_ms
from pipeline.errors import PipelineError
from pipeline.latency import Predictor
from pipeline.portable.opset import teacher_block
from pipeline.space import Architecture, Block, Frame


@dataclass(frozen=True)
class Choice:
    budget_ms: float
    arch: Architecture
    predicted_ms: float
    est_loss: float             # the quality estimator's value (sum of block losses)
    params: int
    true_loss: float | None     # the re-ranker's value, when there is one
    candidates_ranked: int      # how many of the top-T the re-ranker compared
    ranked: tuple[dict[str, Any], ...] = ()  # those candidates: describe, predicted_ms, est_loss, score

    def as_dict(self) -> dict[str, Any]:
        return {"budget_ms": self.budget_ms, "predicted_ms": self.predicted_ms, "est_loss": self.est_loss,
                "true_loss": self.true_loss, "params": self.params, "candidates_ranked": self.candidates_ranked,
                "arch": self.arch.to_dict(), "describe": self.arch.describe(), "candidates": list(self.ranked)}


def block_loss(n: int, entry: dict[str, Any]) -> float:
    """The default quality estimator: the candidate's validation loss in its supernet block."""
    return float(entry["val_loss"])


def _prune(terms: np.ndarray, loss: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Indices of candidates not dominated by another of the same width (terms and loss all <=)."""
    keep = []
    for i in range(len(loss)):
        same = hidden == hidden[i]
        no_worse = same & (loss <= loss[i]) & (terms <= terms[i]).all(1)
        better = no_worse & ((loss < loss[i]) | (terms < terms[i]).any(1))
        # Exact duplicates: keep the first of them.
        dup = same & (loss == loss[i]) & (terms == terms[i]).all(1) & (np.arange(len(loss)) < i)
        if not better.any() and not dup.any():
            keep.append(i)
    return np.array(keep, dtype=int)


def search(pools: Sequence[Sequence[dict[str, Any]]], frame: Frame, latency: Predictor,
           budgets_ms: Sequence[float], quality: Callable[[int, dict[str, Any]], float] = block_loss,
           max_params: int | None = None, top_t: int = 5,
           rerank: Callable[[Architecture], float] | None = None, diverse: bool = False,
           last_widths: Collection[int] | None = None, min_use: float = 0.0, prune: bool = True,
           min_attention: int = 0) -> list[Choice]:
    """The best student for each budget (ascending budgets in, one Choice each out).

    `last_widths`: under each budget, only students whose last block has one of these widths are
    considered when any of them fits; the others only when none does (readout.py: a narrow last
    block caps fidelity in a way the block losses do not show). `min_use`: likewise, only students
    predicted at or above this share of their budget when any fits (the block losses of a short
    supernet schedule are noisy enough that the best of an attention count can sit far below it).
    `min_attention`: likewise, only students with at least this many attention layers when any fits
    (job.py's MIN_ATTENTION says why). Attention comes first, then width, then use.

    `diverse`: the T handed to the re-ranker are the best combination with each number of
    attention layers, T of those numbers spread evenly from the fewest to the most that fit, not
    the T best overall. The block losses barely see attention while end-to-end fidelity does
    (module docstring), so the T best overall differ only in a convolution or two and give a
    re-ranker nothing to choose between.

    `prune`: drop the candidates another of the same width beats in loss and every latency term first.
    Exact for the best student under a budget; with `min_use` a pruned, slower candidate may have been
    the one that reaches the budget's share (discrete.py, whose most probable block dominates all
    others, passes False and thins its pools itself).

    `latency` is anything with Predictor's four term methods (block_terms, link_terms, base_terms,
    predict_terms) and optionally `calibration.coefs`; the tests pass a toy one.
    """
    if not pools or any(len(p) == 0 for p in pools):
        raise PipelineError("every block needs a non-empty candidate pool; train the supernet first")
    if max_params is not None and max_params < 1:  # 0 is no cap to the checks below, not "none fits"
        raise PipelineError(f"a parameter cap of {max_params} admits no student; give at least 1 (e.g. 500k), "
                            "or none for no cap")
    blocks = [[Block(int(e["hidden"]), tuple(e["layers"])) for e in pool] for pool in pools]
    terms = [np.array([latency.block_terms(b) for b in bl]) for bl in blocks]  # [P_n, TERMS] per block
    losses = [np.array([quality(n, e) for e in pool], dtype=float) for n, pool in enumerate(pools)]
    widths = [np.array([b.hidden for b in bl]) for bl in blocks]
    n_mha = [np.array([b.attention for b in bl]) for bl in blocks]
    # A block of the teacher's own layers has no adapter beside another such block nor after the last
    # (space.adapter_shapes): a block's links depend on its width and on that.
    own = [np.array([teacher_block(b.hidden, b.layers, frame.teacher_hidden) for b in bl], dtype=np.int64)
           for bl in blocks]
    monotone = bool((np.asarray(getattr(getattr(latency, "calibration", None), "coefs", (1.0,))) >= 0).all())
    # Pruning within (width, own) is exact; a diverse search, or one that prefers attention, prunes within
    # (width, own, attention count), which is exact for the best of each count too.
    depth = 1 + max(len(b.layers) for bl in blocks for b in bl)  # attention counts are below it
    by_attention = diverse or min_attention > 0
    group = [(2 * w + o) * depth + (m if by_attention else 0) for w, o, m in zip(widths, own, n_mha, strict=True)]
    keep = [_prune(t, lo, g) if monotone and prune else np.arange(len(lo)) for t, lo, g in zip(terms, losses, group,
                                                                                        strict=True)]
    terms = [t[k] for t, k in zip(terms, keep, strict=True)]
    losses = [lo[k] for lo, k in zip(losses, keep, strict=True)]
    widths = [w[k] for w, k in zip(widths, keep, strict=True)]
    own = [o[k] for o, k in zip(own, keep, strict=True)]
    n_mha = [m[k] for m, k in zip(n_mha, keep, strict=True)]
    blocks = [[bl[i] for i in k] for bl, k in zip(blocks, keep, strict=True)]

    # The links are priced per pair of block ends, an end being (width, own).
    ends = sorted({(int(h), int(o)) for w, ow in zip(widths, own, strict=True) for h, o in zip(w, ow, strict=True)})
    sizes = [h for h, _ in ends]
    wi = [np.array([ends.index((int(h), int(o))) for h, o in zip(w, ow, strict=True)], dtype=np.int64)
          for w, ow in zip(widths, own, strict=True)]  # candidate -> index into ends
    base = latency.base_terms(frame.teacher_hidden, frame.vocab_size, frame.embed_dim, frame.max_positions)
    zero = np.zeros_like(base)
    link = np.array([[zero if oa and ob else latency.link_terms(a, b) for b, ob in ends]
                     for a, oa in ends])  # [S, S, TERMS]
    first = np.array([latency.link_terms(frame.embed_dim, h) for h in sizes])  # [S, TERMS]
    last = np.array([zero if o else latency.link_terms(h, frame.teacher_hidden) for h, o in ends])  # [S, TERMS]

    # Terms and losses of every combination of blocks 2..N: [P_2 * ... * P_N, TERMS] and [...].
    rest_terms, rest_loss, rest_first, rest_mha, rest_last = _combine(terms[1:], losses[1:], wi[1:], n_mha[1:],
                                                                      link, last)
    preferred = np.isin(sizes, list(last_widths if last_widths is not None else sizes))  # [S]
    budgets = sorted(budgets_ms)
    # Preference tiers per budget, first non-empty wins: enough attention, then a preferred last width,
    # then the budget used (at least min_use of it), each with and without the ones after it; last,
    # anything that fits. Only the preferences asked for make tiers (without any, one: the plain search).
    prefs = [(a, w, u) for a in ((True, False) if min_attention > 0 else (False,))
             for w in ((True, False) if last_widths is not None else (False,))
             for u in ((True, False) if min_use > 0 else (False,))]
    tiers = len(prefs)
    best: list[list[list[tuple[float, float, tuple[int, ...], float]]]] = [[[] for _ in budgets] for _ in range(tiers)]
    by_count: list[list[dict[int, tuple[float, float, tuple[int, ...], float]]]] = [[{} for _ in budgets]
                                                                                     for _ in range(tiers)]
    fastest = np.inf
    for i in range(len(blocks[0])):
        s1 = int(wi[0][i])
        head = base + first[s1] + terms[0][i]
        t = (head + last[s1])[None] if rest_first is None else head + rest_terms + link[s1][rest_first]
        loss = losses[0][i] + rest_loss
        ms = latency.predict_terms(t)
        ok_params = t[:, 5] <= max_params if max_params else np.ones(len(ms), bool)
        if ok_params.any():
            fastest = min(fastest, float(ms[ok_params].min()))
        wide = preferred[rest_last] if rest_last is not None else preferred[[s1]]  # [combinations]
        attended = int(n_mha[0][i]) + rest_mha >= min_attention                       # [combinations]
        for b, budget in enumerate(budgets):
            fits = (ms <= budget) & ok_params
            used = fits & (ms >= min_use * budget)
            for tier, (want_attention, want_wide, want_use) in enumerate(prefs):
                feasible = np.flatnonzero((used if want_use else fits) & (wide if want_wide else True)
                                          & (attended if want_attention else True))
                if feasible.size == 0:
                    continue
                order = feasible[np.lexsort((feasible, loss[feasible]))]
                if diverse:
                    count = int(n_mha[0][i]) + rest_mha[order]  # attention layers of each combination
                    _, first_of = np.unique(count, return_index=True)  # the best of each count
                    for j, k in zip(order[first_of], count[first_of], strict=True):
                        entry = (float(loss[j]), float(ms[j]), (i, int(j)), float(t[j, 5]))
                        if int(k) not in by_count[tier][b] or entry < by_count[tier][b][int(k)]:
                            by_count[tier][b][int(k)] = entry
                    continue
                merged = best[tier][b] + [(float(loss[j]), float(ms[j]), (i, int(j)), float(t[j, 5]))
                                          for j in order[:top_t]]
                best[tier][b] = sorted(merged)[:top_t]
    if diverse:
        best = [[_spread(counts, top_t) for counts in tier] for tier in by_count]
    best = [next((tier[b] for tier in best if tier[b]), []) for b in range(len(budgets))]
    choices, cache = [], {}
    for budget, top in zip(budgets, best, strict=True):
        if not top:
            cap = f" and at most {max_params / 1e6:g}M parameters" if max_params else ""
            raise PipelineError(f"no architecture in the pools meets {format_ms(budget)}{cap}: the fastest is "
                                f"predicted at {fastest:.3f} ms" if np.isfinite(fastest) else
                                f"no architecture in the pools has at most {max_params / 1e6:g}M parameters")
        ranked = []
        for est, ms, (i, j), params in top:
            arch = _arch(frame, blocks, [i, *_unravel(j, [len(b) for b in blocks[1:]])])
            if rerank is not None and arch.key not in cache:
                cache[arch.key] = float(rerank(arch))
            ranked.append((cache.get(arch.key, est), est, ms, params, arch))
        true, est, ms, params, arch = min(ranked, key=lambda r: (r[0], r[1]))
        listed = tuple({"describe": a.describe(), "attention": a.attention_layers,
                        "predicted_ms": m, "est_loss": e, "score": s if rerank else None}
                       for s, e, m, _, a in ranked)
        choices.append(Choice(budget, arch, ms, est, int(params), true if rerank else None, len(ranked), listed))
    return choices


def _combine(terms, losses, wi, n_mha, link, last):
    """Terms, losses, first- and last-width indices and attention counts of every combination of the
    given blocks (C order)."""
    if not terms:
        return None, np.zeros(1), None, np.zeros(1, dtype=np.int64), None
    t, lo, w_first, w_last, mha = terms[0], losses[0], wi[0], wi[0], n_mha[0].astype(np.int64)
    for tn, ln, wn, mn in zip(terms[1:], losses[1:], wi[1:], n_mha[1:], strict=True):
        links = link[w_last[:, None], wn[None, :]]  # [combos so far, P_n, TERMS]
        t = (t[:, None] + tn[None] + links).reshape(-1, t.shape[-1])
        lo = (lo[:, None] + ln[None]).reshape(-1)
        mha = (mha[:, None] + mn[None, :]).reshape(-1)
        w_first = np.repeat(w_first, len(wn))
        w_last = np.tile(wn, len(w_last))
    return t + last[w_last], lo, w_first, mha, w_last


def _spread(by_count: dict[int, tuple], top_t: int) -> list[tuple]:
    """The entries of top_t attention counts spread evenly over those present, fewest and most
    included, in estimate order."""
    counts = sorted(by_count)
    picked = sorted({counts[int(round(x))] for x in np.linspace(0, len(counts) - 1, min(top_t, len(counts)))})
    return sorted(by_count[c] for c in picked)


def _unravel(j: int, sizes: list[int]) -> list[int]:
    return [int(x) for x in np.unravel_index(j, sizes)] if sizes else []


def _arch(frame: Frame, blocks: list[list[Block]], idx: list[int]) -> Architecture:
    return Architecture(frame.teacher_hidden, frame.embed_dim, tuple(bl[i] for bl, i in zip(blocks, idx, strict=True)),
                        frame.vocab_size, frame.max_positions)
