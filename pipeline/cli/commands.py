"""The subcommands: each reads its parsed flags, calls its stage's job and prints what it wrote."""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

from pipeline.artifacts import writable_folder
from pipeline.cli.parser import FINETUNE_FLAGS, RUN_FLAGS, TASK_FLAGS, TRAIN_OVERRIDES
from pipeline.config import DeviceProfile, resolve_profile
from pipeline.devices import get_backend
from pipeline.devices.timing import STATISTIC
from pipeline.errors import PipelineError
from pipeline.finetune.distill import DistillConfig
from pipeline.options import options_of
from pipeline.run import RunOptions
from pipeline.search.job import check_search_options
from pipeline.space import count_flops, count_params, load_architecture, save_architecture
from pipeline.tables import choose_table, load_predictor, missing_table, training_table
from pipeline.task.train import TaskConfig
from pipeline.train.blockwise import TrainConfig


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
    space = space_for_teacher(args.teacher, prune=args.teacher_shapes)
    path = choose_table(profile, backend, args.table).path
    writable_folder(path.parent, "folder of the latency table")  # before the minutes of measuring
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

        out = writable_folder(args.out)  # before the students are timed and distilled
        report = run_benchmark(Path(args.export_dir), backend, out, predictor, args.baselines,
                               progress=not args.json, log=_note, int8=args.int8)
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

    space = space_for_teacher(args.teacher, prune=args.teacher_shapes)
    if args.sample:  # only samples are written: describing the space needs no folder
        writable_folder(args.out)
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
    from pipeline.train.job import run_train
    from pipeline.train.trained import SUMMARY

    cfg = TrainConfig(seed=args.seed)
    cfg = cfg.quick() if args.quick else cfg
    overrides = options_of(args, TrainConfig, TRAIN_OVERRIDES, skip_none=True)
    if "epochs" in overrides:  # shrinking needs an epoch after the warm-up
        overrides["warmup_epochs"] = min(cfg.warmup_epochs, max(0, overrides["epochs"] - 1))
    cfg = replace(cfg, **overrides)  # checked as it is made (TrainConfig.__post_init__)
    out, table = Path(args.out), training_table(args.target, args.table, args.foreign_table, _note)
    writable_folder(out)  # before the teacher's states are computed and the blocks trained
    try:
        summary = run_train(out, cfg, args.teacher, args.corpus, args.dataset, args.block, args.device, table,
                            args.target, args.force, progress=not args.quiet, log=_note)
    except KeyboardInterrupt:
        _note(f"interrupted: checkpoints are in {out}/block_*/; run the same command to resume")
        return 130
    if summary:
        missing = summary["missing_blocks"]
        reused = len(summary["blocks"]) - len(summary["trained_now"])
        print(f"wrote {out / SUMMARY}: {len(summary['blocks'])} block(s) trained"
              + (f" ({reused} reused from an earlier run)" if reused else "")
              + (f", blocks {missing} not yet (train them with --block)" if missing else ""))
    return 0


def _teacher_ms(trained, backend, out: Path, quiet: bool) -> float:
    """The deployed teacher's latency on the device, timed once per output folder (benchmark/teacher.py)."""
    from pipeline.benchmark.teacher import teacher_latency

    timed = teacher_latency(trained.teacher_model, backend, out, progress=not quiet, log=_note)
    _note(f"the teacher runs {timed['latency_ms']:.3f} ms on {backend.profile.name} (measured {timed['measured_at']})")
    return timed["latency_ms"]


def cmd_search(args: argparse.Namespace) -> int:
    from pipeline.budget import format_ms, parse_budget_list
    from pipeline.search.job import SEARCH, run_search
    from pipeline.train.trained import TrainedSupernet

    asked = parse_budget_list(args.budget)
    check_search_options(args.top, args.rerank, args.rerank_steps, args.margin, args.min_readout, args.min_attention)
    profile = resolve_profile(args.device, args.profile)
    # A speed-up budget times the teacher, so the device must be here; milliseconds need only its table.
    backend = get_backend(profile, require_present=bool(asked.speedups))
    trained = TrainedSupernet(Path(args.train_dir))  # a missing supernet is named before the table
    out = writable_folder(args.out)  # before the teacher is timed and the search runs
    choice = choose_table(profile, backend, args.table)
    predictor, _ = load_predictor(profile, choice, _seq(profile, args.seq), args.foreign_table, log=_note)
    budgets = asked.resolve(_teacher_ms(trained, backend, out, args.quiet) if asked.speedups else None)
    if asked.speedups:
        _note(f"budgets {asked.describe()}: {', '.join(format_ms(b) for b in budgets)}")
    if args.method == "nas-kd":
        from pipeline.cli.parser import NASKD_FLAGS
        from pipeline.search.job import run_nas_kd
        from pipeline.search.naskd import NasKdConfig

        cfg = NasKdConfig(**options_of(args, NasKdConfig, NASKD_FLAGS))
        for r in run_nas_kd(Path(args.train_dir), predictor, profile.name, budgets, Path(args.out), args.margin,
                            cfg, progress=not args.quiet, log=_note):
            print(f"budget {r['budget_ms']:g} ms: predicted {r['predicted_ms']:.3f} ms, {r['params'] / 1e6:.2f}M "
                  f"params (nas-kd): {r['describe']}")
        print(f"wrote {Path(args.out) / SEARCH}")
        return 0
    choices = run_search(Path(args.train_dir), predictor, profile.name, budgets, out, args.max_params, args.top,
                         rerank=args.rerank, rerank_steps=args.rerank_steps, log=_note, margin=args.margin,
                         progress=not args.quiet, min_readout=args.min_readout,
                         min_attention=args.min_attention)
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
    out = writable_folder(args.out)  # before the students are built, fine-tuned and exported
    records = run_export(Path(args.train_dir), targets, out, backend, cfg, args.force, progress=not args.quiet,
                         log=_note)
    for r in records:
        diffs = ", ".join(f"{a['kind']} {a['max_abs_diff']:.1e}" for a in r["artifacts"])
        print(f"{out / r['name']}: {r['describe']} ({r['params'] / 1e6:.2f}M params); max |diff| {diffs}")
    print(f"wrote {out / EXPORT}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.budget import parse_budget_list
    from pipeline.run import run_all, summary_lines

    # Budgets and options are checked (RunOptions) before anything slow: a bad one is an instant error.
    budgets = parse_budget_list(args.budget)
    o = RunOptions(budgets.ms, speedups=budgets.speedups, **options_of(args, RunOptions, ["teacher", "corpus",
                                                                                         "dataset", *RUN_FLAGS]))
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
    if args.quick and args.task_steps == TaskConfig.steps:  # --quick scales the schedules not given
        given = {k: getattr(cfg, k) for k in ("teacher_steps", "adapt_steps")
                 if getattr(cfg, k) != getattr(TaskConfig, k)}
        cfg = replace(cfg.quick(), **given)
    task = load_task(args.train, args.dev, args.test, args.task_dataset,
                     Columns(args.text_column, args.pair_column, args.label_column), quick=args.quick,
                     unlabeled=args.unlabeled)
    students = exported_students(Path(args.export_dir)) if args.export_dir else [student_folder(Path(args.student))]
    teacher = args.teacher
    if args.export_dir:  # the students learn the task from the teacher they were distilled from
        from pipeline.task.job import export_teacher, same_teacher

        made_from = export_teacher(Path(args.export_dir))
        if made_from and teacher and not same_teacher(teacher, made_from):
            raise PipelineError(f"--teacher {teacher} is not the teacher the students of {args.export_dir} were "
                                f"distilled from ({made_from}); leave --teacher out to use that one")
        teacher = teacher or made_from
    backend = get_backend(resolve_profile(args.device, args.profile))
    writable_folder(args.out)  # before the teacher is fine-tuned and the students distilled
    # The benchmark beside the export (run's layout) saved its narrowed BERTs: they learn the task too.
    narrow = benchmark_narrow(Path(args.export_dir).parent / "report.json") if args.export_dir else []
    report = run_task(task, students, backend, Path(args.out), teacher, cfg, args.baselines, args.force,
                      progress=not args.quiet, log=_note, narrow=narrow, int8=args.int8)
    for m in report["models"]:
        kept = f" ({100 * m['test_accuracy_kept']:.1f}% of the teacher's)" if m.get("test_accuracy_kept") else ""
        score = m["test_accuracy"] if m.get("test_accuracy") is not None else m["dev_accuracy"]
        print(f"{m['name']}: {m['latency_ms']:.3f} ms, {m['speedup']:.1f}x, accuracy {score:.3f}{kept}")
    from pipeline.task.report import choice_lines

    for line in choice_lines(report):
        print(line)
    print(f"report: {Path(args.out) / 'task_report.md'}")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from pipeline.model.bundle import ENV, write_bundle

    manifest = write_bundle(Path(args.out), full_precision=args.full_precision, log=_note)
    print(f"wrote {args.out} ({manifest['bytes'] / 1e6:.0f} MB: the teacher in {manifest['teacher']['dtype']}, "
          f"WordNet, {manifest['texts']['wikipedia']} Wikipedia documents, the news articles); on the other "
          f"machine: {ENV}={args.out} python -m pipeline ...")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    import time

    from pipeline.artifacts import cache_dir
    from pipeline.cache import entries, human_bytes, remove, select, summary

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))

    chosen = select(entries(), args.kind, args.older_than)
    filtered = bool(args.kind) or args.older_than is not None
    if args.action == "clear":
        removed, kept = remove(chosen)
        print(f"removed {len(removed)} entries ({human_bytes(sum(e.bytes for e in removed))}) from {cache_dir()}; "
              "a run that needs one again recomputes it")
        for e in kept:
            print(f"kept {e.path}: a write in progress")
        return 0
    if not chosen:
        print(f"{cache_dir()}: {'no entry matches' if filtered else 'empty'}")
        return 0
    print(f"{cache_dir()}: {human_bytes(sum(e.bytes for e in chosen))} in {len(chosen)} entries"
          + (" (matching the filters: what `clear` with them removes)" if filtered else ""))
    print(f"{'kind':<14}{'entries':>8}{'size':>11}  last used")
    for kind, n, size, last in summary(chosen):
        print(f"{kind:<14}{n:>8}{human_bytes(size):>11}  {when(last)}")
    if args.kind:
        for e in chosen:
            print(f"  {e.path}  {human_bytes(e.bytes)}  {when(e.last_used)}")
    return 0


COMMANDS = {"task": cmd_task, "profile": cmd_profile, "train": cmd_train, "search": cmd_search, "predict": cmd_predict,
            "benchmark": cmd_benchmark, "export": cmd_export, "run": cmd_run, "space": cmd_space,
            "cache": cmd_cache, "bundle": cmd_bundle}
