"""Command line: one subcommand per stage; `main(argv)` is what tests call.

User errors (PipelineError) print one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from pipeline.config import DeviceProfile, resolve_profile, shipped_devices
from pipeline.devices import get_backend
from pipeline.devices.timing import STATISTIC
from pipeline.errors import PipelineError
from pipeline.finetune.distill import DistillConfig
from pipeline.options import add_options, options_of
from pipeline.run import RunOptions
from pipeline.search.job import METHODS, check_search_options
from pipeline.space import count_flops, count_params, load_architecture, save_architecture
from pipeline.tables import choose_table, load_predictor, missing_table, training_table
from pipeline.task.train import TaskConfig
from pipeline.train.blockwise import TrainConfig

TRAIN_OVERRIDES = ["epochs", "epoch_steps", "batch_size", "seq_len", "sandwich_every"]
FINETUNE_FLAGS = ["steps", "views", "span_rows", "device"]  # DistillConfig's fields, --finetune-*
TASK_FLAGS = ["method", "pkd", "alpha", "temperature", "beta", "steps", "teacher_steps", "seed"]
RUN_FLAGS = ["quick", "finetune_steps", "finetune_views", "finetune_spans", "finetune_device", "int8", "max_params",
             "top_t", "rerank", "rerank_steps", "search_method", "task", "task_train", "task_dev", "task_test",
             "task_dataset", "min_readout", "margin", "baselines", "force", "seed"]

STAGES = """\
stages, each a subcommand (COMMAND --help):
  1 profile    device profile -> this machine's latency table of every candidate op
  2 train      teacher + corpus -> block-wise distilled supernet, candidate pools
  3 search     supernet + latency table + budget(s) -> architecture per budget
  4 export     architecture -> HF folder, ONNX, ORT-optimised, int8, TensorRT engine
  5 benchmark  teacher vs students vs hand-designed baselines on the device -> report
  6 task       labelled task + exported students -> task students (PKD), accuracy at measured latency
  run          all five in a row, reusing what is already done (the main job)
helpers:
  predict      latency of an architecture JSON from a latency table
  space        the search space a teacher gives; --sample writes random architectures

devices: --device NAME reads profiles/NAME.yaml (shipped: {devices});
         --profile PATH reads any profile file, which is how new hardware is profiled.
tables:  latency_tables/<profile>/<fingerprint>.csv, one per machine ($PIPELINE_TABLES moves them).
"""


def _add_device_args(p: argparse.ArgumentParser, table: bool = True, foreign: bool = True) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--device", help="shipped device profile name (cpu, gpu, tensorrt); default cpu")
    g.add_argument("--profile", help="path to a device profile YAML (for new hardware)")
    if table:
        p.add_argument("--table", help="latency table CSV (default: this machine's, "
                       "latency_tables/<profile>/<fingerprint>.csv)")
    if table and foreign:
        p.add_argument("--foreign-table", action="store_true",
                       help="use a --table measured on another machine (another fingerprint), with a warning")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """What predict and benchmark share: the sequence length measured or predicted, and JSON output."""
    p.add_argument("--seq", type=int, help="sequence length (default: the profile's first)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_text_args(p: argparse.ArgumentParser, corpus: bool = True) -> None:
    add_options(p, RunOptions, ["teacher"])
    if corpus:
        add_options(p.add_mutually_exclusive_group(), RunOptions, ["corpus", "dataset"])


def _add_common(p: argparse.ArgumentParser, out: str | None, force: str | None = None) -> None:
    if out:
        p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if force:
        p.add_argument("--force", action="store_true", help=force)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


SEARCH_FLAGS = ["max_params", "top_t", "rerank", "rerank_steps", "min_readout", "margin"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Hardware-aware BERT compression: NAS-BERT latency tables, search, export, benchmark.",
        epilog=STAGES.format(devices=", ".join(shipped_devices())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("profile", help="measure every candidate op on a device into a latency table",
                       description="Measure every op of the teacher's search space, the fixed parts and a few "
                       "whole students on the device's runtime; write a fingerprinted latency table. "
                       "An interrupted profile resumes where it stopped.")
    _add_device_args(p, foreign=False)
    _add_text_args(p, corpus=False)
    p.add_argument("--force", action="store_true", help="re-measure everything, replacing the table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("predict", help="predict an architecture's latency from a latency table")
    _add_device_args(p)
    p.add_argument("--arch", required=True, help="architecture JSON")
    _add_output_args(p)

    p = sub.add_parser("benchmark", help="the report: teacher, exported students and baselines on the device",
                       description="With --export-dir: load the teacher (exported and optimised by ONNX Runtime "
                       "at its best), the exported students and hand-designed baselines of similar latency on the "
                       "device's runtime, time them together, measure their fidelity to the teacher on held-out "
                       "text, and write OUT/report.md, report.csv, report.json and pareto.png. With --arch: time "
                       "one architecture (random weights) beside its predicted latency.")
    _add_device_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--export-dir", help="output folder of `export`: write the full report")
    g.add_argument("--arch", help="architecture JSON: time it beside the prediction")
    p.add_argument("--out", default="runs/benchmark", help="report folder (with --export-dir)")
    add_options(p, RunOptions, ["baselines"])
    _add_output_args(p)

    p = sub.add_parser("train", help="train the supernet by block-wise distillation, with progressive shrinking",
                       description="NAS-BERT stage 2: split the teacher into blocks, train a weight-sharing supernet "
                       "block per teacher block to reproduce its output states (one random path per step), prune "
                       "the candidates by progressive shrinking in bins of similar latency and size, and write a "
                       "pool of candidates per block with their validation losses to OUT/train_summary.json. "
                       "A killed run resumes from its checkpoints; finished blocks are reused. "
                       "Several processes: torchrun --nproc_per_node N -m pipeline train ... (each rank trains "
                       "its share of the blocks).")
    _add_text_args(p)
    p.add_argument("--block", type=int, action="append", metavar="N",
                   help="train only block N (1-based; repeatable); blocks are independent")
    p.add_argument("--quick", action="store_true", help="scaled-down schedule for a CPU (a few minutes)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where training runs (not the target)")
    p.add_argument("--target", default="cpu", help="device profile (shipped name) whose latency table bins the "
                   "candidates (default cpu)")
    p.add_argument("--table", help="that latency table (default: this machine's table of --target; without one "
                   "the bins use parameters only)")
    p.add_argument("--foreign-table", action="store_true", help="use a --table measured on another machine")
    # Not given: the schedule's own (the default or --quick's), shown in the help.
    add_options(p, TrainConfig, TRAIN_OVERRIDES, defaults=dict.fromkeys(TRAIN_OVERRIDES))
    _add_common(p, "runs/train", "discard checkpoints and results in OUT and start over")

    p = sub.add_parser("search", help="the best architecture under each latency budget, from the trained pools",
                       description="Combine the per-block candidate pools of a trained supernet into the student "
                       "with the lowest estimated loss (sum of block losses) whose latency, predicted from the "
                       "device's latency table, fits each budget (exact search; preferring last blocks wide enough "
                       "for --min-readout and students using 90% of their budget), then re-rank T candidates "
                       "(--rerank) and keep the best. Writes OUT/arch_<budget>.json and OUT/search.json.")
    _add_device_args(p)
    p.add_argument("--budget", required=True, help="latency budget(s): 5ms, 500us, 0.01s; several: 5ms,8ms,12ms")
    p.add_argument("--train-dir", default="runs/train", help="output folder of `train` (default runs/train)")
    p.add_argument("--method", default="nasbert", choices=METHODS,
                   help="nasbert: the best student of the shrunk pools (default); nas-kd: NAS-KD's differentiable "
                   "search with the device's expected latency as a penalty")
    # A search alone takes the budget as given; `run` keeps its margin (RunOptions.margin).
    add_options(p, RunOptions, SEARCH_FLAGS, defaults={"margin": 0.0})
    p.add_argument("--seq", type=int, help="sequence length of the prediction (default: the profile's first)")
    p.add_argument("--out", default="runs/search", help="output folder (default runs/search)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("export", help="searched architectures -> deployable students, every artifact checked",
                       description="Assemble each searched architecture from the supernet (adapters between blocks "
                       "fused into one matrix), optionally finish it by end-to-end distillation, and write per "
                       "architecture: a Hugging Face-style folder (config.json, model.safetensors, tokenizer; load "
                       "it with pipeline.model.hf.load_student), model.onnx (dynamic batch and sequence), "
                       "model.opt.onnx (ONNX Runtime-optimised), model.int8.onnx (--int8), and the device's own "
                       "build (a TensorRT engine for tensorrt). Each is compared with the PyTorch student and the "
                       "max |diff| is recorded in export.json.")
    _add_device_args(p, table=False)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--search-dir", default="runs/search", help="output folder of `search` (default runs/search)")
    g.add_argument("--arch", action="append", help="architecture JSON instead (repeatable)")
    p.add_argument("--train-dir", default="runs/train", help="output folder of `train`, the weights "
                   "(default runs/train)")
    add_options(p, DistillConfig, FINETUNE_FLAGS)
    add_options(p, RunOptions, ["int8"])
    _add_common(p, "runs/export", "re-export even what is already exported")

    p = sub.add_parser("run", help="profile, train, search, export and benchmark in a row (the main job)",
                       description="Chain every stage for a device and latency budget(s). A stage whose artifact "
                       "exists and whose inputs did not change is reused, so a second identical run takes "
                       "seconds; --force redoes them. Ends with one line per budget: met or not, measured latency, "
                       "speedup, fidelity, where the model is.")
    _add_device_args(p)
    p.add_argument("--budget", required=True, help="latency budget(s): 5ms, 500us, 0.01s; several: 3ms,5ms")
    _add_text_args(p)
    p.add_argument("--out", help="run folder (default runs/<device>)")
    add_options(p, RunOptions, RUN_FLAGS)
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("task", help="distil the exported students for a labelled task (PKD); accuracy at latency",
                       description="Fine-tune the teacher on a labelled task (cached), teach it to each exported "
                       "student with PKD (and to PKD's own student, the teacher's first layers, with the same "
                       "recipe), export and time every task model on the device, and write OUT/task_report.md, "
                       ".csv, .json and task_accuracy.png. Without --train or --task-dataset: the offline default "
                       "task, WordNet glosses labelled with their 45 lexicographer files.")
    _add_device_args(p, table=False)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--export-dir", help="output folder of `export`: every student in it")
    g.add_argument("--student", help="one student folder (export's <name>/model)")
    p.add_argument("--train", help="labelled examples: .csv, .tsv or .jsonl (alone: split 80/10/10, seeded)")
    p.add_argument("--dev", help="dev examples (same format)")
    p.add_argument("--test", help="test examples (same format)")
    p.add_argument("--task-dataset", help="a `datasets` name, NAME or NAME:CONFIG (GLUE: glue:sst2)")
    p.add_argument("--text-column", default="text", help="column of the text (default: text)")
    p.add_argument("--pair-column", help="column of the second text, for sentence-pair tasks")
    p.add_argument("--label-column", default="label", help="column of the label (floats: a regression)")
    p.add_argument("--teacher", help="teacher: HF id or folder (default: the offline MiniLM)")
    p.add_argument("--out", default="runs/task", help="report folder (default runs/task)")
    p.add_argument("--quick", action="store_true", help="fewer steps and a third of the default task (CPU minutes)")
    p.add_argument("--force", action="store_true", help="redo the stage even if its report is up to date")
    add_options(p, TaskConfig, TASK_FLAGS)
    add_options(p, RunOptions, ["baselines"])
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("space", help="describe the search space of a teacher; sample architectures")
    _add_text_args(p, corpus=False)
    p.add_argument("--sample", type=int, default=0, metavar="N", help="write N random architectures")
    p.add_argument("--out", default="archs", help="folder for sampled architectures (default archs/)")
    p.add_argument("--seed", type=int, default=0)
    return parser


def _note(msg: str) -> None:
    print(msg, file=sys.stderr)


def _seq(profile: DeviceProfile, seq: int | None) -> int:
    if seq is not None and seq <= 0:
        raise PipelineError(f"--seq must be a positive integer, got {seq}")
    return seq or profile.seq_lens[0]


def cmd_profile(args: argparse.Namespace) -> int:
    from pipeline.model.teacher import space_for_teacher
    from pipeline.profile.job import run_profile

    profile = resolve_profile(args.device, args.profile)
    backend = get_backend(profile)
    space = space_for_teacher(args.teacher)
    path = choose_table(profile, backend, args.table).path
    try:
        table, added = run_profile(backend, space, path, args.force, progress=not args.quiet, log=_note)
    except KeyboardInterrupt:
        _note(f"interrupted: the rounds measured so far are saved beside {path}; run the same command to resume")
        return 130
    if not added:
        print(f"{path} already holds every part of this space ({len(table.df)} rows); --force measures it anew")
    else:
        print(f"wrote {path} ({len(table.df)} rows, fingerprint {table.fingerprint_hash})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    profile = resolve_profile(args.device, args.profile)
    backend = get_backend(profile, require_present=False)
    arch = load_architecture(args.arch)
    seq = _seq(profile, args.seq)
    choice = choose_table(profile, backend, args.table)
    path = choice.path
    predictor, matched = load_predictor(profile, choice, seq, args.foreign_table, log=_note)
    predicted, cal = predictor(arch), predictor.calibration
    if args.json:
        print(json.dumps({
            "predicted_ms": predicted, "raw_ms": predictor.raw_ms(arch), "statistic": STATISTIC,
            "device": profile.name, "batch": profile.batch, "seq": seq, "table": str(path),
            "fingerprint": predictor.table.fingerprint_hash, "fingerprint_match": matched,
            "calibration": cal.as_dict(),
            "params": count_params(arch), "flops": count_flops(arch, seq, profile.batch), "arch_key": arch.key,
            "parts_ms": [[name, ms] for name, ms in predictor.parts(arch)],
        }))
    else:
        calib = f"calibrated on {cal.archs} students" if cal.archs else "uncalibrated sum of parts"
        print(f"{arch.describe()}\npredicted {predicted:.3f} ms on {profile.name} (batch {profile.batch}, seq {seq}; "
              f"{STATISTIC}; {calib}; table {path})")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from pipeline.benchmark.measure import benchmark_architecture

    profile = resolve_profile(args.device, args.profile)
    backend = get_backend(profile)
    seq = _seq(profile, args.seq)
    choice = choose_table(profile, backend, args.table)
    predictor = None
    if args.table or choice.path.exists():
        predictor, _ = load_predictor(profile, choice, seq, args.foreign_table, log=_note)
    else:
        _note(f"note: {missing_table(profile, choice.path)}; measuring without a prediction")
    if args.export_dir:
        from pipeline.benchmark.job import run_benchmark
        from pipeline.run import summary_lines

        out = Path(args.out)
        report = run_benchmark(Path(args.export_dir), backend, out, predictor, args.baselines,
                               progress=not args.json, log=_note)
        if args.json:
            print(json.dumps(report))
        else:
            print("\n".join(summary_lines(report, out)))
            print(f"wrote {out / 'report.md'}, report.csv, report.json, pareto.png")
        return 0
    arch = load_architecture(args.arch)
    _note(f"benchmarking {arch.describe()} on {profile.name} ...")
    result = benchmark_architecture(backend, arch, predictor, seq, progress=not args.json)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    lat = result.latency
    print(f"measured  {result.measured_ms:.3f} ms ({STATISTIC}; p50 {lat.p50_ms:.3f}, p90 {lat.p90_ms:.3f}, "
          f"p99 {lat.p99_ms:.3f}, n {lat.n})")
    if result.predicted_ms is not None:
        print(f"predicted {result.predicted_ms:.3f} ms (error {result.error_pct:+.1f}%)")
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    from pipeline.model.teacher import space_for_teacher

    space = space_for_teacher(args.teacher)
    print(f"teacher hidden {space.teacher_hidden}, {space.teacher_layers} layers -> {space.num_blocks} blocks of "
          f"{space.layers_per_block} layers; hidden sizes {list(space.hidden_sizes)}; embed dim {space.embed_dim}; "
          f"{len(space.ops()) + 1} ops")
    rng = random.Random(args.seed)
    for i in range(args.sample):
        arch = space.sample(rng)
        path = save_architecture(arch, Path(args.out) / f"arch_{i:03d}_{arch.key}.json")
        print(f"{path}: {arch.describe()} ({count_params(arch) / 1e6:.2f}M params)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline.train.job import run_train
    from pipeline.train.trained import SUMMARY

    cfg = TrainConfig(seed=args.seed)
    cfg = cfg.quick() if args.quick else cfg
    overrides = options_of(args, TrainConfig, TRAIN_OVERRIDES, skip_none=True)
    if "epochs" in overrides:  # shrinking needs an epoch after the warm-up
        overrides["warmup_epochs"] = min(cfg.warmup_epochs, max(0, overrides["epochs"] - 1))
    cfg = replace(cfg, **overrides)  # checked as it is made (TrainConfig.__post_init__)
    out, table = Path(args.out), training_table(args.target, args.table, args.foreign_table, _note)
    try:
        summary = run_train(out, cfg, args.teacher, args.corpus, args.dataset, args.block, args.device, table,
                            args.target, args.force, progress=not args.quiet, log=_note)
    except KeyboardInterrupt:
        _note(f"interrupted: checkpoints are in {out}/block_*/; run the same command to resume")
        return 130
    if summary:
        missing = summary["missing_blocks"]
        print(f"wrote {out / SUMMARY}: {len(summary['blocks'])} block(s) trained"
              + (f", blocks {missing} not yet (train them with --block)" if missing else ""))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from pipeline.budget import parse_budgets
    from pipeline.search.job import SEARCH, run_search
    from pipeline.train.trained import TrainedSupernet

    budgets = parse_budgets(args.budget)
    check_search_options(args.top, args.rerank, args.rerank_steps, args.margin, args.min_readout)
    profile = resolve_profile(args.device, args.profile)
    backend = get_backend(profile, require_present=False)
    TrainedSupernet(Path(args.train_dir))  # a missing supernet is named before the table
    choice = choose_table(profile, backend, args.table)
    predictor, _ = load_predictor(profile, choice, _seq(profile, args.seq), args.foreign_table, log=_note)
    out = Path(args.out)
    if args.method == "nas-kd":
        from pipeline.search.job import run_nas_kd

        for r in run_nas_kd(Path(args.train_dir), predictor, profile.name, budgets, Path(args.out), args.margin,
                            progress=not args.quiet, log=_note):
            print(f"budget {r['budget_ms']:g} ms: predicted {r['predicted_ms']:.3f} ms, {r['params'] / 1e6:.2f}M "
                  f"params (nas-kd): {r['describe']}")
        print(f"wrote {Path(args.out) / SEARCH}")
        return 0
    choices = run_search(Path(args.train_dir), predictor, profile.name, budgets, out, args.max_params, args.top,
                         rerank=args.rerank, rerank_steps=args.rerank_steps, log=_note, margin=args.margin,
                         progress=not args.quiet, min_readout=args.min_readout)
    for c in choices:
        loss = "" if c.true_loss is None else (f", chained loss {c.true_loss:.4f}" if args.rerank == "chained" else
                                               f", fine-tuned validation cosine {1 - c.true_loss:.4f}")
        print(f"budget {c.budget_ms:g} ms: predicted {c.predicted_ms:.3f} ms, {c.params / 1e6:.2f}M params, "
              f"block losses {c.est_loss:.4f}{loss}: {c.arch.describe()}")
    print(f"wrote {out / SEARCH} and {len(choices)} architecture(s) in {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.export.job import EXPORT, ExportConfig, Target, run_export, targets_from_search

    # DistillConfig checks its settings as it is made: before the device and the targets are looked at.
    cfg = ExportConfig(finetune=DistillConfig(seed=args.seed, **options_of(args, DistillConfig, FINETUNE_FLAGS)),
                       int8=args.int8, seed=args.seed)
    profile = resolve_profile(args.device, args.profile)
    backend = get_backend(profile)
    if args.arch:
        targets = [Target(Path(a).stem, load_architecture(a)) for a in args.arch]
    else:
        targets = targets_from_search(Path(args.search_dir))
    out = Path(args.out)
    records = run_export(Path(args.train_dir), targets, out, backend, cfg, args.force, progress=not args.quiet,
                         log=_note)
    for r in records:
        diffs = ", ".join(f"{a['kind']} {a['max_abs_diff']:.1e}" for a in r["artifacts"])
        print(f"{out / r['name']}: {r['describe']} ({r['params'] / 1e6:.2f}M params); max |diff| {diffs}")
    print(f"wrote {out / EXPORT}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.budget import parse_budgets
    from pipeline.run import run_all, summary_lines

    # Budgets and options are checked (RunOptions) before anything slow: a bad one is an instant error.
    o = RunOptions(tuple(parse_budgets(args.budget)), **options_of(args, RunOptions, ["teacher", "corpus", "dataset",
                                                                                      *RUN_FLAGS]))
    profile = resolve_profile(args.device, args.profile)
    backend = get_backend(profile)
    table = choose_table(profile, backend, args.table).path
    out = Path(args.out) if args.out else Path("runs") / profile.name
    try:
        report = run_all(backend, table, out, o, progress=not args.quiet, log=_note, foreign_table=args.foreign_table)
    except KeyboardInterrupt:
        _note(f"interrupted: what finished is kept in {out}; run the same command to resume")
        return 130
    print("\n".join(summary_lines(report, out)))
    return 0


def cmd_task(args: argparse.Namespace) -> int:
    from pipeline.task.data import Columns
    from pipeline.task.job import benchmark_narrow, exported_students, load_task, run_task, student_folder
    cfg = TaskConfig(**options_of(args, TaskConfig, TASK_FLAGS))
    cfg = cfg.quick() if args.quick and args.task_steps == TaskConfig.steps else cfg
    task = load_task(args.train, args.dev, args.test, args.task_dataset,
                     Columns(args.text_column, args.pair_column, args.label_column), quick=args.quick)
    students = exported_students(Path(args.export_dir)) if args.export_dir else [student_folder(Path(args.student))]
    backend = get_backend(resolve_profile(args.device, args.profile))
    # The benchmark beside the export (run's layout) saved its narrowed BERTs: they learn the task too.
    narrow = benchmark_narrow(Path(args.export_dir).parent / "report.json") if args.export_dir else []
    report = run_task(task, students, backend, Path(args.out), args.teacher, cfg, args.baselines, args.force,
                      progress=not args.quiet, log=_note, narrow=narrow)
    for m in report["models"]:
        kept = f" ({100 * m['test_accuracy_kept']:.1f}% of the teacher's)" if m.get("test_accuracy_kept") else ""
        score = m["test_accuracy"] if m.get("test_accuracy") is not None else m["dev_accuracy"]
        print(f"{m['name']}: {m['latency_ms']:.3f} ms, {m['speedup']:.1f}x, accuracy {score:.3f}{kept}")
    print(f"report: {Path(args.out) / 'task_report.md'}")
    return 0


COMMANDS = {"task": cmd_task, "profile": cmd_profile, "train": cmd_train, "search": cmd_search, "predict": cmd_predict,
            "benchmark": cmd_benchmark, "export": cmd_export, "run": cmd_run, "space": cmd_space}


def _glue_negative_budgets(argv: list[str]) -> list[str]:
    """`--budget -3ms` would be read by argparse as a missing value plus an unknown option; glue it into
    `--budget=-3ms` so that the budget check answers with what a budget looks like."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg == "--budget" and nxt.startswith("-") and not nxt.startswith("--"):
            out.append(f"--budget={nxt}")
            skip = True
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        # Inside the try: some flags are read by the parsers of their configs (--max-params: parse_count).
        args = parser.parse_args(_glue_negative_budgets(sys.argv[1:] if argv is None else argv))
        if not args.command:
            parser.print_help()
            return 0
        return COMMANDS[args.command](args)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
