"""Task accuracy of the exported students at their measured latency, and PKD's ablation on one student.

    python benchmarks/task_accuracy.py --export-dir runs/cpu/export [--device cpu] [--quick] [--seeds N]
        [--settings "PKD-Skip,PKD-Skip mean states"] [--no-main]

1. The task stage (pipeline/task/job.py) on the offline default task (WordNet lexnames), or on
   --train/--dev/--test files: the fine-tuned teacher, every searched student, PKD's own
   students (the teacher's first k layers) and the benchmark's narrowed BERTs (--bench-report)
   with the same recipe and steps, all timed together.
   Prints accuracy kept against measured latency, and whether each searched student keeps 97% of
   the teacher's accuracy and beats the hand-designed students of similar latency. With --seeds N
   every student learns N times (seeds 0..N-1, one teacher): a point or two between students is
   within one run's spread, so compare means.
2. The ablation (--ablation NAME, default the student nearest a quarter of the teacher's latency):
   PKD-Skip, PKD-Skip on the layers' mean states (--pkd-states mean) and on every token's (tokens),
   PKD-Skip without the task's unlabelled text (--no-transfer), PKD-Skip from other starts (the distilled
   student as it is, with a random head; the teacher's head without adaptation; shorter or faster
   adaptation), PKD-Last, KD and CE on that student alone,
   with the same steps (--settings picks some), each with the --seeds too. --no-main skips step 1.
Results go to OUT (default runs/task-benchmark): one task report per setting and ablation.md.
Timing: each report times its models together; run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
from dataclasses import replace
from pathlib import Path

from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.task.job import benchmark_narrow, exported_students, load_task, run_task
from pipeline.task.train import TaskConfig

# (label, TaskConfig overrides); the first is the main report's recipe (the defaults), not trained twice
SETTINGS = [("PKD-Skip", {}), ("PKD-Skip mean states", {"pkd_states": "mean"}),
            ("PKD-Skip token states", {"pkd_states": "tokens"}),
            ("PKD-Skip without the unlabelled text", {"transfer": False}),
            # where a distilled student starts (task/start.py): the defaults adapt it and give it the teacher's head
            ("PKD-Skip from the distilled student (random head, no adaptation)",
             {"student_head": "random", "adapt_steps": 0}),
            ("PKD-Skip with the teacher's head, no adaptation", {"adapt_steps": 0}),
            ("PKD-Skip adapted 500 steps", {"adapt_steps": 500}),
            ("PKD-Skip adapted 500 steps at 1e-3", {"adapt_steps": 500, "adapt_lr": 1e-3}),
            ("PKD-Skip adapted 3000 steps", {"adapt_steps": 3000}),
            # the soft targets' temperature: PKD's preset 10 and its grid {5, 10, 20}; TinyBERT uses 1
            ("PKD-Skip at T=5", {"temperature": 5.0}), ("PKD-Skip at T=20", {"temperature": 20.0}),
            # the students' rate: three times BERT-small's fine-tuning rate is the default (TaskConfig.lr)
            ("PKD-Skip at lr 1e-4", {"lr": 1e-4}), ("PKD-Skip at lr 5e-5", {"lr": 5e-5}),
            ("PKD-Skip with dropout 0.1 in the student", {"student_dropout": 0.1}),
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


def summarise(reports: list[dict]) -> list[dict]:
    """Per model over the seeds' reports: its scores, their mean and standard deviation, and its median
    latency (each report timed its models together)."""
    names: dict[str, dict] = {}
    for r in reports:
        for m in r["models"]:
            row = names.setdefault(m["name"], {"name": m["name"], "kind": m["kind"], "scores": [], "ms": []})
            row["scores"].append(score(m))
            row["ms"].append(m["latency_ms"])
    for row in names.values():
        row["mean"], row["latency_ms"] = statistics.fmean(row["scores"]), statistics.median(row["ms"])
        row["sd"] = statistics.stdev(row["scores"]) if len(row["scores"]) > 1 else 0.0
    return list(names.values())


def main_report(task, students, backend, out: Path, cfg: TaskConfig, seeds: int, narrow) -> list[dict]:
    """Step 1: the task report of every student and baseline, once per seed; prints the table. Returns the
    seeds' reports."""
    # One teacher for every seed (TaskConfig.teacher_seed): the spread is the students' own.
    reports = [run_task(task, students, backend, out / ("main" if seed == 0 else f"main-seed{seed}"), None,
                        replace(cfg, seed=seed), progress=True, narrow=narrow) for seed in range(seeds)]
    report, rows = reports[0], summarise(reports)
    teacher = rows[0]
    print(f"\n{task.name}: teacher {teacher['mean']:.3f} at {teacher['latency_ms']:.3f} ms ({report['device']}); "
          f"{seeds} seed(s) per student, accuracy as mean ± standard deviation")
    print("| model | kind | latency ms | speedup | accuracy | kept | >= 97% | beats baselines of similar latency |")
    print("|---|---|---|---|---|---|---|---|")
    baselines = [m for m in rows if m["kind"] in ("pkd", "narrow")]
    for m in rows[1:]:
        kept = m["mean"] / teacher["mean"]
        similar = [b for b in baselines if b["latency_ms"] <= 1.25 * m["latency_ms"]]
        beats = "-" if m["kind"] != "searched" else (
            "yes" if all(m["mean"] > b["mean"] for b in similar) else "no")
        spread = f" ± {m['sd']:.3f}" if len(m["scores"]) > 1 else ""
        print(f"| {m['name']} | {m['kind']} | {m['latency_ms']:.3f} | {teacher['latency_ms'] / m['latency_ms']:.2f} "
              f"| {m['mean']:.3f}{spread} | {100 * kept:.1f}% | {'yes' if kept >= KEEP_GOAL else 'no'} | {beats} |")
    return reports


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
    ap.add_argument("--settings", help="comma-separated ablation settings (default all: "
                    + ", ".join(label for label, _ in SETTINGS) + ")")
    ap.add_argument("--no-main", action="store_true", help="only the ablation (then --ablation names the "
                    "student, unless the export has one)")
    ap.add_argument("--bench-report", help="benchmark report.json whose narrowed BERTs learn the task too "
                    "(default: the one beside the export, as `run` lays it out)")
    ap.add_argument("--seeds", type=int, default=1, help="train every student with this many seeds (0, 1, ...), "
                    "one teacher for all; the table gives mean and standard deviation (default 1)")
    ap.add_argument("--out", default="runs/task-benchmark")
    args = ap.parse_args()
    if args.seeds < 1:
        raise SystemExit("--seeds must be 1 or more")
    chosen = dict(SETTINGS)
    if args.settings:
        unknown = [x for x in args.settings.split(",") if x.strip() not in chosen]
        if unknown:
            raise SystemExit(f"unknown --settings {unknown}; choose among {list(chosen)}")
        chosen = {x.strip(): chosen[x.strip()] for x in args.settings.split(",")}
    if args.no_main and args.no_ablation:
        raise SystemExit("--no-main and --no-ablation leave nothing to do")
    out = Path(args.out)
    backend = get_backend(resolve_profile(args.device, None))
    task = load_task(args.train, args.dev, args.test, quick=args.quick)
    cfg = TaskConfig().quick() if args.quick else TaskConfig()
    students = exported_students(Path(args.export_dir))
    bench = Path(args.bench_report) if args.bench_report else Path(args.export_dir).parent / "report.json"
    narrow = benchmark_narrow(bench)
    if not narrow:
        print(f"note: no saved narrowed BERTs in {bench}; only PKD's students are baselines")
    reports = [] if args.no_main else main_report(task, students, backend, out, cfg, args.seeds, narrow)
    if args.no_ablation:
        return
    if args.ablation:
        name = args.ablation
    elif reports:
        searched = [m for m in reports[0]["models"] if m["kind"] == "searched"]
        target = reports[0]["models"][0]["latency_ms"] / 4
        name = min(searched, key=lambda m: abs(m["latency_ms"] - target))["name"]
    elif len(students) == 1:
        name = students[0]["name"]
    else:
        raise SystemExit(f"--no-main: name the ablation's student with --ablation ({[s['name'] for s in students]})")
    one = [s for s in students if s["name"] == name]
    if not one:
        raise SystemExit(f"no student {name!r} in {args.export_dir}")
    lines = [f"# PKD ablation on {name} ({task.name}, {cfg.steps} steps, {args.seeds} seed(s): mean ± sd, "
             f"commit {commit()})", "", "| setting | dev | test |", "|---|---|---|"]
    for label, overrides in chosen.items():
        runs = []
        for seed in range(args.seeds):
            if not overrides and reports:
                r = reports[seed]  # the main report's own setting: not trained twice
            else:
                folder = out / ("ablation-" + re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
                                + ("" if seed == 0 else f"-seed{seed}"))
                r = run_task(task, one, backend, folder, None, replace(cfg, seed=seed, **overrides),
                             baselines=False, progress=True)
            runs.append(next(x for x in r["models"] if x["name"] == name))
        cells = []
        for split in ("dev", "test"):
            vals = [m[f"{split}_accuracy"] for m in runs if m.get(f"{split}_accuracy") is not None]
            spread = f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
            cells.append(f"{statistics.fmean(vals):.3f}{spread}" if vals else "-")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
        print(lines[-1])
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(json.dumps({"report": None if not reports else str(out / "main" / "task_report.md"),
                      "ablation": str(out / "ablation.md")}))


if __name__ == "__main__":
    main()
