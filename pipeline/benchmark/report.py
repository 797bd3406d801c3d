"""The benchmark's report files: report.md (for people), report.csv (one row per model), pareto.png.

report.json (written by benchmark/job.py) is the source of all three; this module only formats it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from pipeline.artifacts import write_atomic, write_text_atomic

COLUMNS = [
    ("name", "model"), ("kind", "kind"), ("budget_ms", "budget ms"), ("latency_ms", "latency ms"),
    ("latency_ms_p50", "p50 ms"), ("latency_ms_p90", "p90 ms"), ("latency_ms_p99", "p99 ms"),
    ("predicted_ms", "predicted ms"), ("prediction_error_pct", "pred. err %"), ("speedup", "speedup (p50)"),
    ("fidelity_cosine", "fidelity (sentence cos)"), ("fidelity_token_cosine", "token cos"),
    ("similarity_spearman", "sim. spearman"), ("neighbour_recall_at_10", "recall@10"),
    ("ood_fidelity_cosine", "OOD cos"), ("ood_similarity_spearman", "OOD spearman"),
    ("ood_neighbour_recall_at_10", "OOD recall@10"),
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


def markdown(report: dict[str, Any]) -> str:
    t = report["teacher"]
    lines = [
        f"# Benchmark on `{report['device']}` ({report['backend']}, {report['precision']})",
        "",
        f"Batch {report['batch']}, sequence {report['seq']}. Latency = {report['statistic']} "
        "(what the latency table stores and `predict` returns); p50/p90/p99 beside it; all models were timed "
        "together, round-robin, on the same inputs. Speedup = teacher p50 / model p50.",
        f"Quality against the teacher's sentence embeddings (mean-pooled, normalised) on the {report['fidelity_on']} "
        f"and, out of domain (OOD), on {report.get('out_of_domain_on', '-')}; neither is ever read by training "
        "or search. Fidelity: mean cosine to the teacher's embedding (token cos: of every token's state); "
        "sim. spearman: rank correlation of the model's and the teacher's cosine similarities over random "
        "pairs; recall@10: share of each text's 10 nearest neighbours under the teacher that the model also "
        "ranks in its top 10.",
        "",
        f"Teacher `{t['name']}`: {_fmt('', t['latency_ms'])} ms (p50 {_fmt('', t['latency_ms_p50'])} ms), "
        f"{_fmt('params', t['params'])} parameters; deployed as {t.get('optimisation', 'PyTorch')}.",
    ]
    for v in t.get("variants_tried", []):
        lines.append(f"- tried {v['optimisation']}: {v['latency_ms']:.3f} ms")
    drift = report.get("machine_drift")
    if drift:
        lines += ["", f"Machine drift since the latency table was profiled: {drift['percent']:+.1f}% (median over "
                  f"{drift['students']} of its calibration students timed in the same rounds). Predictions and "
                  "budget margins are off by about as much: a shared host that runs slower now reads late."]
    lines += ["", "| " + " | ".join(h for _, h in COLUMNS) + " | within budget |",
              "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows(report):
        cells = [_fmt(k, r.get(k)) for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {_within(r)} |")
    lines += ["", "Architectures:", ""]
    for r in rows(report)[1:]:
        lines.append(f"- `{r['name']}`: {r.get('arch', '')}" + (f" (ONNX: `{r['onnx_path']}`)" if r.get("onnx_path")
                                                                else ""))
    lines += ["", "Searched students against the hand-designed baselines matched to them "
              "(same distillation steps):", ""]
    for s in report["students"]:
        if s["kind"] != "searched":
            continue
        near = [b for b in report["baselines"] if b.get("matched_to_ms") == s.get("predicted_ms")]
        for b in near:
            verdict = "better" if s["fidelity_cosine"] > b["fidelity_cosine"] else "NOT better"
            lines.append(f"- `{s['name']}` ({s['latency_ms']:.3f} ms, cos {s['fidelity_cosine']:.4f}) vs `{b['name']}` "
                         f"({b['latency_ms']:.3f} ms, cos {b['fidelity_cosine']:.4f}): {verdict}")
    lines += peer_lines(report)
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
        if s["kind"] != "searched":
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


def plot(report: dict[str, Any], path: Path) -> Path | None:
    """Measured latency (p50) against fidelity, teacher and budgets marked; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    style = {"teacher": ("*", "black"), "searched": ("o", "tab:blue"), "searched-int8": ("s", "tab:cyan"),
             "narrow": ("^", "tab:orange"), "pkd": ("v", "tab:red"), "peer": ("D", "tab:green")}
    for kind, (marker, color) in style.items():
        pts = [r for r in rows(report) if r["kind"] == kind]
        if pts:
            ax.scatter([r["latency_ms_p50"] for r in pts], [r["fidelity_cosine"] for r in pts], marker=marker,
                       color=color, s=120 if kind == "teacher" else 50, label=kind, zorder=3)
            for r in pts:
                ax.annotate(r["name"], (r["latency_ms_p50"], r["fidelity_cosine"]), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
    for b in report["budgets_ms"]:
        ax.axvline(b, color="gray", linestyle="--", linewidth=1)
        ax.annotate(f"budget {b:g} ms", (b, ax.get_ylim()[0]), rotation=90, fontsize=7, color="gray",
                    textcoords="offset points", xytext=(-9, 5))
    return save_plot(plt, fig, ax, path,
                     f"measured latency p50 (ms), {report['device']}, batch {report['batch']}, seq {report['seq']}",
                     "fidelity: sentence cosine to the teacher", "Latency against fidelity")


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    out = Path(out)
    written = [write_text_atomic(out / "report.md", markdown(report)), write_text_atomic(out / "report.csv",
                                                                                           to_csv(report))]
    png = plot(report, out / "pareto.png")
    return written + ([png] if png else [])
