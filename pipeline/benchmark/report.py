"""The benchmark's report files: report.md (for people), report.csv (one row per model), pareto.png.

report.json (written by benchmark/job.py) is the source of all three; this module only formats it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from pipeline.artifacts import write_atomic, write_text_atomic
from pipeline.benchmark.front import CHOOSE_ON, MEASURES, decisions, front, mark_fronts

COLUMNS = [
    ("name", "model"), ("kind", "kind"), ("precision", "precision"), ("budget_ms", "budget ms"),
    ("latency_ms", "latency ms"), ("latency_ms_p50", "p50 ms"), ("latency_ms_p90", "p90 ms"),
    ("latency_ms_p99", "p99 ms"), ("predicted_ms", "predicted ms"), ("prediction_error_pct", "pred. err %"),
    ("speedup", "speedup (p50)"), ("ood_similarity_spearman", "OOD spearman"),
    ("ood_neighbour_recall_at_10", "OOD recall@10"), ("ood_fidelity_cosine", "OOD cos"),
    ("similarity_spearman", "held-out spearman"), ("neighbour_recall_at_10", "held-out recall@10"),
    ("fidelity_cosine", "held-out cos"), ("fidelity_token_cosine", "token cos"),
    ("params", "params"), ("flops", "FLOPs"), ("throughput_seq_per_s", "seq/s"), ("peak_memory_mb", "peak MiB"),
]


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [report["teacher"], *report["students"], *report["baselines"], *report.get("peers", [])]


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if key in ("params", "flops"):
        return f"{v / 1e9:.2f}G" if v >= 1e9 else f"{v / 1e6:.2f}M"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _within(r: dict[str, Any]) -> str:
    """yes / no, and where the machine's drift turns the verdict, what it is at the table's speed."""
    got, steady = r.get("within_budget"), r.get("within_budget_at_table_speed")
    if steady is None or steady == got:
        return _fmt("", got)
    return f"{_fmt('', got)} ({_fmt('', steady)} at the table's speed: {r['latency_ms_at_table_speed']:.3f} ms)"


def _fronts_of(r: dict[str, Any]) -> str:
    return ", ".join(dict(MEASURES)[m] for m in r.get("on_front", [])) or "-"


def _budget_name(report: dict[str, Any], b: float) -> str:
    asked = {x["budget_ms"]: x["speedup"] for x in (report.get("speedup_budgets") or {}).get("speedups", [])}
    return f"{b:g} ms" + (f" ({asked[b]:g}x)" if b in asked else "")


def _scores(r: dict[str, Any]) -> str:
    return ", ".join(f"{h} {r[m]:.3f}" for m, h in MEASURES if r.get(m) is not None)


def _deployable(r: dict[str, Any]) -> str:
    return r.get("onnx_path") or r.get("model_dir") or r.get("runs_on") or ""


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """Per budget: what to deploy, how much faster, what it keeps, and how each searched student fares against
    every other model on each measure (front.py)."""
    all_rows = rows(report)
    by_name = {r["name"]: r for r in all_rows}
    t = report["teacher"]
    found = report.get("decisions")
    if found is None:
        mark_fronts(all_rows)
        found = decisions(all_rows, report.get("budgets_ms", []))
    lines = []
    for d in found:
        head = f"- **Budget {_budget_name(report, d['budget_ms'])}**: "
        pick = by_name.get(d["deploy"]) if d["deploy"] else None
        if pick is None:
            lines.append(head + "no model of the report fits it.")
            continue
        lines.append(head + f"deploy `{pick['name']}` ({pick['kind']}, {pick.get('precision', 'fp32')}): "
                     f"{pick['latency_ms']:.3f} ms, {t['latency_ms'] / pick['latency_ms']:.1f}x faster than the "
                     f"teacher; keeps {_scores(pick)}. File: `{_deployable(pick)}`")
        for v in d["searched"]:
            s = by_name[v["name"]]
            judged = []
            for m, h in MEASURES:
                dom = v.get(m)
                judged.append(f"on the {h} front" if dom is None else
                              f"{h}: `{dom['by']}` is {dom['gain']:+.3f} at {dom['latency_ratio']:.2f}x its latency")
            lines.append(f"  - searched `{s['name']}` ({s['latency_ms']:.3f} ms, {_scores(s)}): "
                         + ("chosen; " if v["chosen"] else "") + "; ".join(judged))
    return lines


def markdown(report: dict[str, Any]) -> str:
    t = report["teacher"]
    lines = [
        f"# Benchmark on `{report['device']}` ({report['backend']}, {report['precision']})",
        "",
        "## What to deploy",
        "",
        "At each budget, of every model below (searched or made by hand, any precision) whose measured latency "
        f"fits: the best on the {CHOOSE_ON[1]} (the corpus's held-out test split); the out-of-domain (OOD) scores, "
        "on text no stage ever read, are how the choice does there. Each searched student is judged on every "
        "measure, OOD first: on that measure's Pareto front (no model as fast is as good), or the model that "
        "dominates it by most.",
        "",
        *recommendation_lines(report),
    ]
    baseline_teachers = [b for b in report["baselines"] if b["kind"] == "teacher"]
    for b in baseline_teachers:
        lines += ["", f"The teacher in {b.get('precision', 'int8')} (`{b['name']}`, {b.get('int8', '')}): "
                  f"{b['latency_ms']:.3f} ms, {t['latency_ms'] / b['latency_ms']:.2f}x faster; keeps {_scores(b)}."]
    lines += peer_lines(report)
    lines += [
        "",
        "## Every model",
        "",
        f"Batch {report['batch']}, sequence {report['seq']}. Latency = {report['statistic']} "
        "(what the latency table stores and `predict` returns); p50/p90/p99 beside it; all models were timed "
        "together, round-robin, on the same inputs. Speedup = teacher p50 / model p50.",
        f"Quality against the teacher's sentence embeddings (mean-pooled, normalised) on the {report['fidelity_on']} "
        f"(held-out) and, out of domain (OOD), on {report.get('out_of_domain_on', '-')}; neither is ever read by "
        "training or search. cos: mean cosine to the teacher's embedding (token cos: of every token's state); "
        "spearman: rank correlation of the model's and the teacher's cosine similarities over random "
        "pairs; recall@10: share of each text's 10 nearest neighbours under the teacher that the model also "
        "ranks in its top 10. int8: " + (report.get("int8") or "not measured") + ".",
        "",
        f"Teacher `{t.get('source', t['name'])}`: {_fmt('', t['latency_ms'])} ms (p50 {_fmt('', t['latency_ms_p50'])} "
        f"ms), {_fmt('params', t['params'])} parameters; deployed as {t.get('optimisation', 'PyTorch')}.",
    ]
    for v in t.get("variants_tried", []):
        lines.append(f"- tried {v['optimisation']}: {v['latency_ms']:.3f} ms")
    drift = report.get("machine_drift")
    if drift:
        lines += ["", f"Machine drift since the latency table was profiled: {drift['percent']:+.1f}% (median over "
                  f"{drift['students']} of its calibration students timed in the same rounds). Predictions and "
                  "budget margins are off by about as much: a shared host that runs slower now reads late."]
    lines += ["", "| " + " | ".join(h for _, h in COLUMNS) + " | within budget | on the front of |",
              "|" + "---|" * (len(COLUMNS) + 2)]
    for r in sorted(rows(report), key=lambda r: r["latency_ms"], reverse=True):
        cells = [_fmt(k, r.get(k)) for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {_within(r)} | {_fronts_of(r)} |")
    lines += ["", "Architectures:", ""]
    for r in rows(report)[1:]:
        lines.append(f"- `{r['name']}`: {r.get('arch', '')}" + (f" (file: `{r['onnx_path']}`)" if r.get("onnx_path")
                                                                else ""))
    return "\n".join(lines) + "\n"


def peer_lines(report: dict[str, Any]) -> list[str]:
    """What each searched student buys over the cheap peer, and what it costs in latency."""
    peers = report.get("peers", [])
    if not peers:
        return []
    p = peers[0]
    lines = ["", f"Against the cheap peer `{p['name']}` ({p.get('runs_on', '')}; {p['latency_ms']:.3f} ms): "
             "out-of-domain recall@10 and spearman, and the latency it costs:", ""]
    for s in report["students"]:
        if s["kind"] != "searched" or s.get("precision", "fp32") != "fp32":
            continue
        better = (s["ood_neighbour_recall_at_10"] > p["ood_neighbour_recall_at_10"]
                  and s["ood_similarity_spearman"] > p["ood_similarity_spearman"]
                  and s["neighbour_recall_at_10"] > p["neighbour_recall_at_10"]
                  and s["similarity_spearman"] > p["similarity_spearman"])
        lines.append(f"- `{s['name']}`: recall@10 {s['ood_neighbour_recall_at_10']:.3f} vs "
                     f"{p['ood_neighbour_recall_at_10']:.3f}, spearman {s['ood_similarity_spearman']:.3f} vs "
                     f"{p['ood_similarity_spearman']:.3f}, at {s['latency_ms'] / p['latency_ms']:.0f}x its latency: "
                     + ("better on both measures on both sources" if better else "NOT better on every measure"))
    return lines


def csv_of(all_rows: list[dict[str, Any]]) -> str:
    """One CSV row per dict, a column per scalar field any of them has (nested fields left out)."""
    keys = list(dict.fromkeys(k for r in all_rows for k in r if not isinstance(r[k], (dict, list))))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in all_rows:
        w.writerow({k: r.get(k) for k in keys})
    return buf.getvalue()


def to_csv(report: dict[str, Any]) -> str:
    return csv_of(rows(report))


def pyplot():
    """matplotlib.pyplot on the file-only backend, or None where matplotlib is absent (no plot, no error)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_plot(plt, fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, grid, legend, then write the figure atomically as PNG and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return path


STYLE = {"teacher": ("*", "black"), "searched": ("o", "tab:blue"), "narrow": ("^", "tab:orange"),
         "pkd": ("v", "tab:red"), "peer": ("D", "tab:green")}


def plot(report: dict[str, Any], path: Path) -> Path | None:
    """Measured latency (log axis) against out-of-domain spearman, and beside it against the held-out spearman
    that chooses; each panel's Pareto front drawn, budgets marked, int8 models hollow. None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    all_rows = rows(report)
    panels = [("ood_similarity_spearman", "out-of-domain similarity spearman"),
              (CHOOSE_ON[0], "held-out similarity spearman (chooses)")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharex=True)
    for ax, (measure, label) in zip(axes, panels, strict=True):
        pts = [r for r in all_rows if r.get(measure) is not None]
        for kind, (marker, color) in STYLE.items():
            for int8 in (False, True):
                mine = [r for r in pts if r["kind"] == kind and (r.get("precision") == "int8") == int8]
                if not mine:
                    continue
                ax.scatter([r["latency_ms"] for r in mine], [r[measure] for r in mine], marker=marker, s=90 if
                           kind == "teacher" else 40, zorder=3, facecolors="none" if int8 else color,
                           edgecolors=color, label=f"{kind}{' int8' if int8 else ''}")
        for r in pts:
            ax.annotate(r["name"], (r["latency_ms"], r[measure]), fontsize=6, textcoords="offset points",
                        xytext=(3, 3), annotation_clip=False)
        on = [r for r in pts if r["name"] in front(pts, measure)]
        if on:
            ax.step([r["latency_ms"] for r in on], [r[measure] for r in on], where="post", color="gray",
                    linewidth=1, alpha=0.6, label="Pareto front", zorder=2)
        ax.set_xscale("log")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.25)
        for b in report.get("budgets_ms", []):
            ax.axvline(b, color="gray", linestyle=":", linewidth=1, zorder=1)
            ax.annotate(f"{_budget_name(report, b)}", (b, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=6, color="gray", ha="right", va="top", xytext=(-2, -2), textcoords="offset points")
        ax.set_xlabel(f"measured latency (ms, log), {report['device']}, batch {report['batch']}, seq {report['seq']}")
        ax.margins(x=0.12, y=0.08)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("What each model keeps of the teacher, against its latency (up and left is better)")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight"))
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    out = Path(out)
    written = [write_text_atomic(out / "report.md", markdown(report)), write_text_atomic(out / "report.csv",
                                                                                           to_csv(report))]
    png = plot(report, out / "pareto.png")
    return written + ([png] if png else [])
