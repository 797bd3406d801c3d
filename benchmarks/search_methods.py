"""NAS-BERT's search against NAS-KD's on one trained supernet, at several budgets.

    python benchmarks/search_methods.py --train-dir runs/cpu/train --budgets 3.5ms,5ms,7.5ms [--finetune-steps 200]
        [--naskd-steps N] [--arch-lr R] [--latency sampled] [--naskd-widths per-width] [--task quick|full]

For each method: search (its cost in minutes), export every student with the same fine-tuning
steps, then one benchmark of both methods' students together (no baselines), so that every
latency is measured in the same rounds. Prints per budget and method: the predicted and measured
latency, the share of the budget used, fidelity and out-of-domain quality, and whether it is within
budget. With --task quick|full, the task stage on the offline default task (WordNet lexnames) teaches
every student the task with PKD (no baselines) and adds its test accuracy. Results go to OUT
(default runs/search-methods). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline.artifacts import reusable
from pipeline.budget import parse_budgets
from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.export.job import ExportConfig, run_export, targets_from_search
from pipeline.finetune.distill import DistillConfig
from pipeline.tables import choose_table, load_predictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", required=True)
    ap.add_argument("--budgets", default="3.5ms,5ms,7.5ms")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--margin", type=float, default=0.03)
    ap.add_argument("--naskd-steps", type=int, help="NAS-KD's bilevel steps (default NasKdConfig's)")
    ap.add_argument("--arch-lr", type=float, help="NAS-KD's architecture rate (default NasKdConfig's)")
    ap.add_argument("--latency", choices=["expected", "sampled"], help="what NAS-KD's penalty is on "
                    "(default NasKdConfig's)")
    ap.add_argument("--naskd-widths", choices=["mixture", "per-width"], help="NAS-KD's widths: a softmax per "
                    "block, or one search per width (default NasKdConfig's)")
    ap.add_argument("--task", choices=["none", "quick", "full"], default="none",
                    help="also teach every student the default task (quick: a third of it, 300 steps)")
    ap.add_argument("--out", default="runs/search-methods")
    args = ap.parse_args()
    from pipeline.benchmark.job import run_benchmark
    from pipeline.search.job import SEARCH, nas_kd_key, run_nas_kd, run_search, search_key
    from pipeline.search.naskd import NasKdConfig

    out = Path(args.out)
    budgets = parse_budgets(args.budgets)
    profile = resolve_profile(args.device, None)
    backend = get_backend(profile)
    predictor, _ = load_predictor(profile, choose_table(profile, backend, None), profile.seq_lens[0])
    cost = {}
    for method in ("nasbert", "nas-kd"):
        start = time.perf_counter()
        where = out / method / "search"
        if method == "nasbert":
            key = search_key(Path(args.train_dir), predictor, budgets, margin=args.margin)
            if (done := reusable(where / SEARCH, key)) is not None:  # the same pools, table and options
                cost[method] = (done["search_s"] + done["rerank_s"]) / 60
                print(f"NAS-BERT: reusing {where / SEARCH} ({cost[method]:.1f} min when it ran)")
                continue
            run_search(Path(args.train_dir), predictor, profile.name, budgets, where, margin=args.margin,
                       progress=True)
        else:
            given = {"steps": args.naskd_steps, "arch_lr": args.arch_lr, "latency": args.latency,
                     "widths": args.naskd_widths}
            cfg = NasKdConfig(**{k: v for k, v in given.items() if v is not None})
            if (done := reusable(where / SEARCH, nas_kd_key(Path(args.train_dir), predictor, budgets, args.margin,
                                                             cfg))) is not None:
                cost[method] = sum(c["nas_kd"]["seconds"] for c in done["choices"]) / 60
                print(f"NAS-KD: reusing {where / SEARCH} ({cost[method]:.1f} min when it ran)")
                continue
            run_nas_kd(Path(args.train_dir), predictor, profile.name, budgets, where, args.margin, cfg=cfg,
                       progress=True)
        cost[method] = (time.perf_counter() - start) / 60
    # Both methods' students in one export folder (names prefixed), benchmarked in the same rounds.
    both = out / "export"
    targets = []
    for method in cost:
        for t in targets_from_search(out / method / "search"):
            targets.append(type(t)(f"{method}_{t.name}", t.arch, t.search))
    cfg = ExportConfig(finetune=DistillConfig(steps=args.finetune_steps))
    run_export(Path(args.train_dir), targets, both, backend, cfg, progress=True)
    report = run_benchmark(both, backend, out / "report", predictor, with_baselines=False, progress=True)
    accuracy = {}
    if args.task != "none":
        from pipeline.task.job import exported_students, load_task, run_task
        from pipeline.task.train import TaskConfig

        quick = args.task == "quick"
        cfg = TaskConfig().quick() if quick else TaskConfig()
        task_report = run_task(load_task(quick=quick), exported_students(both), backend, out / "task", None, cfg,
                               baselines=False, progress=True)
        accuracy = {m["name"]: m["test_accuracy"] for m in task_report["models"]}
        teacher = task_report["models"][0]
        print(f"\ntask {task_report['task']['name']}: teacher test accuracy {teacher['test_accuracy']:.3f}")
    print(f"\nsearch cost: NAS-BERT {cost['nasbert']:.1f} min, NAS-KD {cost['nas-kd']:.1f} min ({profile.name})")
    print("| budget | method | predicted ms | measured ms | used | within | fidelity | OOD spearman | OOD recall@10 "
          "| task acc |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in sorted(report["students"], key=lambda s: (s["budget_ms"], s["name"])):
        if s["kind"] != "searched":
            continue
        method = s["name"].split("_arch")[0]
        print(f"| {s['budget_ms']:g} ms | {method} | {s['predicted_ms']:.3f} | {s['latency_ms']:.3f} | "
              f"{100 * s['budget_use']:.0f}% | {'yes' if s['within_budget'] else 'NO'} | "
              f"{s['fidelity_cosine']:.3f} | {s.get('ood_similarity_spearman') or float('nan'):.3f} | "
              f"{s.get('ood_neighbour_recall_at_10') or float('nan'):.3f} | "
              f"{accuracy.get(s['name'], float('nan')):.3f} |")
    kd = json.loads((out / "nas-kd" / "search" / SEARCH).read_text())
    print("\nNAS-KD's readouts (normalised entropy of the softmaxes: 1 uniform, 0 decided)")
    print("| budget | per-layer argmax | argmax ms | readout | entropy ops / widths |")
    print("|---|---|---|---|---|")
    for c in kd["choices"]:
        k = c["nas_kd"]
        print(f"| {c['budget_ms']:g} ms | `{k['argmax']}` | {k['argmax_ms']:.3f} | {k['readout']}: `{c['describe']}` "
              f"{c['predicted_ms']:.3f} ms | {k['entropy']['ops']:.3f} / {k['entropy']['widths']:.3f} |")
    for c in kd["choices"]:
        for r in c["nas_kd"].get("per_width", []):
            print(f"{c['budget_ms']:g} ms, one search {r['widths'][0]} wide: `{r['describe']}` "
                  f"{r['predicted_ms']:.3f} ms, validation loss {r['readout_val_loss']:.4f} (discrete), "
                  f"{r['seconds'] / 60:.1f} min")
    (out / "summary.json").write_text(json.dumps({"cost_min": cost, "report": str(out / "report" / "report.json"),
                                                  "task_accuracy": accuracy}, indent=2))


if __name__ == "__main__":
    main()
