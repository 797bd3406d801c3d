"""The Pareto front of the report's models, and what to deploy at each budget.

A model is on the front of a quality measure when no other model is at least as fast and at least as
good on it, and strictly better on one of the two. Three measures, out of domain first, the way users
use an encoder: similarity ranking and neighbours on text of another source, then closeness to the
teacher on held-out text of the training source.

What to deploy at a budget: of every model (any kind, any precision) whose measured latency is within
the budget, the best on the held-out split's similarity spearman (the faster on a tie). Chosen on the
held-out split only, never on the out-of-domain text: that text stays the estimate of how the choice
does on text no stage ever looked at, the way a dev set chooses and a test set reports.
"""

from __future__ import annotations

from typing import Any

# (field, what the report calls it), the order in which the report judges
MEASURES = (("ood_similarity_spearman", "OOD spearman"), ("ood_neighbour_recall_at_10", "OOD recall@10"),
            ("fidelity_cosine", "held-out cos"))
CHOOSE_ON = ("similarity_spearman", "held-out spearman")


def dominates(a: dict[str, Any], b: dict[str, Any], measure: str) -> bool:
    """a at least as fast and as good as b on `measure`, and strictly better on one of the two."""
    qa, qb = a.get(measure), b.get(measure)
    if qa is None or qb is None:
        return False
    la, lb = a["latency_ms"], b["latency_ms"]
    return la <= lb and qa >= qb and (la < lb or qa > qb)


def front(rows: list[dict[str, Any]], measure: str) -> list[str]:
    """Names of the models no other model dominates on `measure`, fastest first."""
    scored = [r for r in rows if r.get(measure) is not None]
    keep = [r for r in scored if not any(dominates(o, r, measure) for o in scored if o is not r)]
    return [r["name"] for r in sorted(keep, key=lambda r: r["latency_ms"])]


def best_dominator(rows: list[dict[str, Any]], row: dict[str, Any], measure: str) -> dict[str, Any] | None:
    """Of the models that dominate `row` on `measure`, the one that beats it by most; None if none does."""
    over = [o for o in rows if o is not row and dominates(o, row, measure)]
    return max(over, key=lambda o: (o[measure], -o["latency_ms"])) if over else None


def choose(rows: list[dict[str, Any]], budget_ms: float) -> dict[str, Any] | None:
    """The model to deploy within budget_ms (measured latency), chosen on the held-out split; None if no
    model with a held-out score fits."""
    key = CHOOSE_ON[0]
    fits = [r for r in rows if r["latency_ms"] <= budget_ms and r.get(key) is not None]
    return max(fits, key=lambda r: (r[key], -r["latency_ms"])) if fits else None


def mark_fronts(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each measure's front (names); each row gets `on_front`: the measures whose front it is on."""
    fronts = {m: front(rows, m) for m, _ in MEASURES}
    for r in rows:
        r["on_front"] = [m for m, _ in MEASURES if r["name"] in fronts[m]]
    return fronts


def decisions(rows: list[dict[str, Any]], budgets: list[float]) -> list[dict[str, Any]]:
    """Per budget: the choice, and for each searched student of that budget whether it is on each front or
    what dominates it there (the dominator's name and its margins)."""
    out = []
    for b in budgets:
        pick = choose(rows, b)
        entry: dict[str, Any] = {"budget_ms": b, "deploy": pick["name"] if pick else None, "searched": []}
        for s in (r for r in rows if r["kind"] == "searched" and r.get("budget_ms") == b):
            verdict = {"name": s["name"], "chosen": pick is not None and pick["name"] == s["name"]}
            for m, _ in MEASURES:
                d = best_dominator(rows, s, m)
                verdict[m] = None if d is None else {"by": d["name"], "gain": d[m] - s[m],
                                                    "latency_ratio": d["latency_ms"] / s["latency_ms"]}
            entry["searched"].append(verdict)
        out.append(entry)
    return out
