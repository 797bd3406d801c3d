"""The task stage's report files: task_report.md, task_report.csv, task_accuracy.png.

task_report.json (written by the command) is the source of all three; this module formats it, and
reads from its models what to deploy at each searched student's latency (`choices`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.artifacts import write_json_atomic, write_text_atomic
from pipeline.benchmark.report import csv_of, pyplot, save_plot

COLUMNS = [("name", "model"), ("kind", "kind"), ("precision", "precision"), ("budget_ms", "budget ms"),
           ("latency_ms", "latency ms"), ("p50_ms", "p50 ms"),
           ("speedup", "speedup"), ("dev_accuracy", "dev acc"), ("dev_accuracy_kept", "dev kept"),
           ("dev_f1", "dev F1"), ("test_accuracy", "test acc"), ("test_accuracy_kept", "test kept"),
           ("test_f1", "test F1"), ("params", "params"), ("describe", "architecture")]


def start_of(cfg: dict) -> str:
    """How the distilled students start (task/start.py) and train, where not as distilled with a random head
    and no dropout."""
    parts = ([f"first adapt their final states to the teacher's for {cfg['adapt_steps']} steps"]
             if cfg.get("adapt_steps") else []) + \
        (["start with the teacher's head"] if cfg.get("student_head") == "teacher" else []) + \
        ([f"train with dropout {cfg['student_dropout']:g} inside"] if cfg.get("student_dropout") else [])
    return f"; the distilled students {' and '.join(parts)}" if parts else ""


def transfer_of(report: dict[str, Any]) -> str:
    """The unlabelled text the students also learnt from (the transfer set), as the training records say."""
    counts = {m["train"].get("unlabeled") for m in report["models"] if m["kind"] != "teacher"
              and isinstance(m.get("train"), dict)}
    n = max((c for c in counts if c), default=0)
    return f", also from the teacher's predictions on {n} unlabelled examples (a batch beside each labelled one)" \
        if n else ""


def trained_on(report: dict[str, Any]) -> str:
    """Where the task's training steps ran (the --task-device the records name), for the report's preamble."""
    where = sorted({m["train"]["device"] for m in report["models"] if isinstance(m.get("train"), dict)
                    and m["train"].get("device")})
    return f" Training ran on {' and '.join(where)}." if where else ""


def choices(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to deploy at each budget of the searched students (a student without one, exported from an
    architecture file: at its measured latency): of every task model (any kind, any precision) whose measured
    latency is within it, the one with the best dev score, the faster on a tie. Chosen on dev, never on test:
    test stays the estimate of how the choice does. A report without dev scores chooses nothing."""
    searched = sorted((m for m in models if m["kind"] == "searched" and m.get("precision", "fp32") == "fp32"),
                      key=lambda m: m["latency_ms"])
    picks = []
    for s in searched:
        within = s.get("budget_ms") or s["latency_ms"]
        fits = [m for m in models if m["latency_ms"] <= within and m.get("dev_accuracy") is not None]
        if not fits:
            continue
        best = max(fits, key=lambda m: (m["dev_accuracy"], -m["latency_ms"]))
        picks.append({"within_ms": within, "budget_ms": s.get("budget_ms"), "searched": s["name"],
                      "pick": best["name"], "kind": best["kind"], "precision": best.get("precision", "fp32"),
                      "latency_ms": best["latency_ms"], "dev_accuracy": best["dev_accuracy"],
                      "test_accuracy": best.get("test_accuracy"), "file": best.get("onnx_path")})
    return picks


def choice_lines(report: dict[str, Any]) -> list[str]:
    """One line per choice, for the report and the command's output."""
    models = {m["name"]: m for m in report["models"]}
    lines = []
    for c in report.get("choices") or choices(report["models"]):
        s, test = models[c["searched"]], c.get("test_accuracy")
        other = "" if c["pick"] == c["searched"] else \
            f", ahead of {c['searched']}'s {s['dev_accuracy']:.3f}"
        where = "budget" if c.get("budget_ms") else "latency of"
        precision = f", {c['precision']}" if c.get("precision", "fp32") != "fp32" else ""
        lines.append(f"within {c['within_ms']:.3f} ms ({where} {c['searched']}): deploy {c['pick']} ({c['kind']}"
                     f"{precision}, {c['latency_ms']:.3f} ms, dev {c['dev_accuracy']:.3f}{other}"
                     + (f"; test {test:.3f}" if test is not None else "")
                     + f"), {c.get('file') or 'models/' + c['pick'] + '/'}")
    return lines


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key == "params":
        return f"{v / 1e6:.2f}M"
    if key.endswith("_kept"):
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    t = report["task"]
    metric = "Spearman" if t["kind"] == "regression" else "accuracy"
    cols = [(k, h) for k, h in COLUMNS if any(m.get(k) is not None for m in report["models"])]
    lines = [f"# Task report: {t['name']} on {report['device']}", "",
             f"{t['kind']}, {len(t['classes'] or []) or 'float'} {'classes' if t['classes'] else 'labels'}; "
             f"{t['train_examples']} train / {t['dev_examples']} dev / {t['test_examples']} test examples. "
             f"Teacher: {report['teacher']}, fine-tuned on the task. Students learn it by "
             f"{report['config']['method']} ({report['config']['pkd']} layer map, "
             f"{report['config'].get('pkd_states', 'cls')} states), "
             f"{report['config']['steps']} steps each{transfer_of(report)}{start_of(report['config'])}. "
             f"Scores ({metric}) are of the deployed artifacts; "
             f"latency is the {report['statistic']} on the device, all models timed together; kept = "
             f"relative to the teacher.{trained_on(report)}", "",
             "| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for m in report["models"]:
        # An architecture names its blocks with "|": escaped, or the row gets a cell per block.
        lines.append("| " + " | ".join(_fmt(k, m.get(k)).replace("|", "\\|") for k, _ in cols) + " |")
    picked = choice_lines(report)
    if picked:
        lines += ["", "What to deploy (of every model, any kind and precision, the best dev score within each "
                  "searched student's budget; test is how it then does):", ""] + [f"- {line}" for line in picked]
    return "\n".join(lines) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    return csv_of(report["models"])


def plot(report: dict[str, Any], path: Path) -> Path | None:
    """Test (else dev) score against measured latency; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    split = "test" if all(m.get("test_accuracy") is not None for m in report["models"]) else "dev"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    style = {"teacher": ("*", "black"), "searched": ("o", "tab:blue"), "narrow": ("^", "tab:orange"),
             "pkd": ("v", "tab:red")}
    for (kind, (marker, color)), int8 in ((k, i) for k in style.items() for i in (False, True)):
        pts = [m for m in report["models"] if m["kind"] == kind and (m.get("precision") == "int8") == int8]
        if pts:
            ax.scatter([m["latency_ms"] for m in pts], [m[f"{split}_accuracy"] for m in pts], marker=marker,
                       facecolors="none" if int8 else color, edgecolors=color, s=120 if kind == "teacher" else 50,
                       label=f"{kind}{' int8' if int8 else ''}", zorder=3)
            for m in pts:
                ax.annotate(m["name"], (m["latency_ms"], m[f"{split}_accuracy"]), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    return save_plot(plt, fig, ax, path, f"measured latency ({report['statistic']}, ms), {report['device']}",
                     f"{split} {'Spearman' if report['task']['kind'] == 'regression' else 'accuracy'}",
                     f"Task accuracy against latency: {report['task']['name']}")


def write_task_report(report: dict[str, Any], out: Path) -> list[Path]:
    out = Path(out)
    written = [write_text_atomic(out / "task_report.md", markdown(report)),
               write_text_atomic(out / "task_report.csv", to_csv(report))]
    png = plot(report, out / "task_accuracy.png")
    # Last: the record whose key says the stage is done (reusable), so never beside an older report.md.
    return [write_json_atomic(out / "task_report.json", report), *written] + ([png] if png else [])
