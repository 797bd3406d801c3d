"""Task accuracy of the exported students at their measured latency, and PKD's ablation on one student.

    python benchmarks/task_accuracy.py --export-dir runs/cpu/export [--device cpu] [--quick]

1. The task stage (pipeline/task/job.py) on the offline default task (WordNet lexnames), or on
   --train/--dev/--test files: the fine-tuned teacher, every searched student, PKD's own
   students (the teacher's first k layers) and the benchmark's narrowed BERTs (--bench-report)
   with the same recipe and steps, all timed together.
   Prints accuracy kept against measured latency, and whether each searched student keeps 97% of
   the teacher's accuracy and beats the hand-designed students of similar latency.
2. The ablation (--ablation NAME, default the student nearest a quarter of the teacher's latency):
   PKD-Skip, PKD-Skip with the task's unlabelled text (--transfer), PKD-Last, KD and CE on that
   student alone, with the same steps.
Results go to OUT (default runs/task-benchmark): one task report per setting and ablation.md.
Timing: each report times its models together; run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import replace
from pathlib import Path

from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.task.job import benchmark_narrow, exported_students, load_task, run_task
from pipeline.task.train import TaskConfig

# (label, TaskConfig overrides); the first is the main report's recipe (the defaults), not trained twice
SETTINGS = [("PKD-Skip", {}), ("PKD-Skip + unlabelled text", {"transfer": True}),
            ("PKD-Last", {"pkd": "last"}), ("KD", {"method": "kd"}), ("CE", {"method": "ce"})]
KEEP_GOAL = 0.97  # NAS-KD reports over 97% of the teacher on every task


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def score(m: dict) -> float:
    return m["test_accuracy"] if m.get("test_accuracy") is not None else m["dev_accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export-dir", required=True, help="output folder of `export` (or of `run`: RUN/export)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train", help="labelled file (default: the offline WordNet task)")
    ap.add_argument("--dev")
    ap.add_argument("--test")
    ap.add_argument("--quick", action="store_true", help="a third of the default task, fewer steps")
    ap.add_argument("--ablation", help="student name for the ablation (default: nearest a quarter of the teacher)")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--bench-report", help="benchmark report.json whose narrowed BERTs learn the task too "
                    "(default: the one beside the export, as `run` lays it out)")
    ap.add_argument("--out", default="runs/task-benchmark")
    args = ap.parse_args()
    out = Path(args.out)
    backend = get_backend(resolve_profile(args.device, None))
    task = load_task(args.train, args.dev, args.test, quick=args.quick)
    cfg = TaskConfig().quick() if args.quick else TaskConfig()
    students = exported_students(Path(args.export_dir))
    bench = Path(args.bench_report) if args.bench_report else Path(args.export_dir).parent / "report.json"
    narrow = benchmark_narrow(bench)
    if not narrow:
        print(f"note: no saved narrowed BERTs in {bench}; only PKD's students are baselines")
    report = run_task(task, students, backend, out / "main", None, cfg, progress=True, narrow=narrow)
    models = report["models"]
    teacher = models[0]
    print(f"\n{task.name}: teacher {score(teacher):.3f} at {teacher['latency_ms']:.3f} ms ({report['device']})")
    print("| model | kind | latency ms | speedup | accuracy | kept | >= 97% | beats baselines of similar latency |")
    print("|---|---|---|---|---|---|---|---|")
    baselines = [m for m in models if m["kind"] in ("pkd", "narrow")]
    for m in models[1:]:
        kept = score(m) / score(teacher)
        similar = [b for b in baselines if b["latency_ms"] <= 1.25 * m["latency_ms"]]
        beats = "-" if m["kind"] != "searched" else ("yes" if all(score(m) > score(b) for b in similar) else "no")
        print(f"| {m['name']} | {m['kind']} | {m['latency_ms']:.3f} | {m['speedup']:.2f} | {score(m):.3f} | "
              f"{100 * kept:.1f}% | {'yes' if kept >= KEEP_GOAL else 'no'} | {beats} |")
    if args.no_ablation:
        return
    searched = [m for m in models if m["kind"] == "searched"]
    target = teacher["latency_ms"] / 4
    name = args.ablation or min(searched, key=lambda m: abs(m["latency_ms"] - target))["name"]
    one = [s for s in students if s["name"] == name]
    if not one:
        raise SystemExit(f"no student {name!r} in {args.export_dir}")
    lines = [f"# PKD ablation on {name} ({task.name}, {cfg.steps} steps, commit {commit()})", "",
             "| setting | dev | test |", "|---|---|---|"]
    for label, overrides in SETTINGS:
        if not overrides:
            m = next(x for x in models if x["name"] == name)  # the main report's own setting: not trained twice
        else:
            folder = out / ("ablation-" + label.replace(" + ", "-").replace(" ", "-"))
            r = run_task(task, one, backend, folder, None, replace(cfg, **overrides), baselines=False,
                         progress=True)
            m = next(x for x in r["models"] if x["name"] == name)
        lines.append(f"| {label} | {m['dev_accuracy']:.3f} | "
                     f"{m['test_accuracy'] if m.get('test_accuracy') is not None else float('nan'):.3f} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(json.dumps({"report": str(out / "main" / "task_report.md"), "ablation": str(out / "ablation.md")}))


if __name__ == "__main__":
    main()
