"""`run`: every stage in a row, each reused when its artifact exists and its inputs did not change.

    OUT/train/     supernet and pools (train/job.py; blocks reused by their settings hash)
    OUT/search/    arch_<budget>.json, search.json (reused when pools, table and options match)
    OUT/export/    students and their artifacts (export/job.py; reused per architecture)
    OUT/report.*   the benchmark (reused when the exports and the device are the same)
    OUT/run.json   what ran, what was reused, how long each stage took
    OUT/teacher_latency.json  the teacher timed on the device, for budgets given as speed-ups (`4x`)

The latency table is this machine's (tables.py: latency_tables/<profile>/<fingerprint>.csv, or
--table): `run` profiles it when it is missing, and fills in only what it lacks otherwise, so a
table measured before is reused as it is. A foreign table (--foreign-table) is used as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.artifacts import reusable, writable_folder, write_json_atomic
from pipeline.budget import Budgets, format_ms, format_speedup, parse_count
from pipeline.config import shipped_devices
from pipeline.devices import Backend
from pipeline.errors import PipelineError
from pipeline.export.job import ExportConfig
from pipeline.finetune.distill import DistillConfig
from pipeline.options import opt, same_as
from pipeline.search.job import METHODS, MIN_ATTENTION, RERANKERS
from pipeline.search.naskd import NasKdConfig
from pipeline.search.readout import MIN_READOUT
from pipeline.task.train import TaskConfig
from pipeline.train.blockwise import TrainConfig


@dataclass(frozen=True)
class RunOptions:
    """What `run` is asked for; each field is also its command-line flag (options.py)."""

    budgets_ms: tuple[float, ...]
    teacher: str | None = opt(None, "Hugging Face BERT id or folder (default: the offline all-MiniLM-L6-v2)",
                              type=str)
    corpus: str | None = opt(None, "plain text (documents separated by blank lines) or .jsonl with a 'text' field "
                             "(default: the offline corpus, model/corpus.py)", type=str)
    dataset: str | None = opt(None, "a `datasets` name, NAME or NAME:CONFIG, with a 'text' column", type=str)
    # The scaled-down schedule: the whole chain in CPU minutes, for trying the tool out.
    quick: bool = opt(False, "scaled-down training and fine-tuning (CPU minutes)")
    # End-to-end distillation is what brings an assembled student close to the teacher; the quick
    # schedule keeps it to minutes on a CPU.
    finetune_steps: int | None = opt(None, "end-to-end distillation steps per student, the baselines' too "
                                     "(default: 200 with --quick, 2000 otherwise)", type=int)
    finetune_views: int = same_as(DistillConfig, "views")
    finetune_spans: int = same_as(DistillConfig, "span_rows")
    finetune_device: str = same_as(DistillConfig, "device")
    # int8 is the first thing a user tries on a CPU: every model of the report gets it, and is scored in it.
    int8: bool = opt(True, "leave out the int8 files (ONNX Runtime's dynamic quantisation of every model, on "
                     "ONNX Runtime devices)", flag="--no-int8")
    # No cap by default: the budget is the constraint.
    max_params: int | None = opt(None, "parameter cap, e.g. 10M or 500k", type=parse_count)
    # One candidate per attention count a block can have: the re-ranker sees attention, the block losses not.
    top_t: int = opt(5, "candidates per budget that the re-ranker compares", flag="--top")
    # Block losses are blind to how blocks work together; a short end-to-end distillation is not.
    rerank: str = opt("finetune", "finetune: distil each candidate end to end for --rerank-steps and keep the "
                      "closest to the teacher on validation text; chained: the candidates' untrained validation "
                      "loss (seconds); none: the block losses' best", choices=RERANKERS)
    # Enough steps to order candidates, far fewer than a student's fine-tuning.
    rerank_steps: int = opt(150, "distillation steps per re-ranked candidate", metavar="N")
    min_readout: float = opt(MIN_READOUT, "prefer students whose last block is wide enough that a read-out of it "
                             "can reach this sentence cosine to the teacher on new text (0: no preference)",
                             metavar="COS")
    # Convolutions only mix neighbours; a task needs the whole sentence (search/job.py: MIN_ATTENTION).
    min_attention: int = opt(MIN_ATTENTION, "prefer students with at least this many attention layers, which "
                             "read the whole sentence (0: no preference; nasbert's search)", metavar="N")
    search_method: str = opt("nasbert", "nasbert: the best student of the shrunk pools under the budget (NAS-BERT); "
                             "nas-kd: a differentiable search with a latency penalty (NAS-KD)", choices=METHODS)
    naskd_steps: int = same_as(NasKdConfig, "steps")
    naskd_widths: str = same_as(NasKdConfig, "widths")
    init: str = same_as(TrainConfig, "init")
    prune: str = same_as(TrainConfig, "prune")
    # The predictor errs by a few percent on a shared CPU; searching below the budget leaves room for it.
    margin: float = opt(0.03, "search under budget x (1 - margin), room for the predictor's error")
    # The report shows what the search buys over hand-designed students of the same latency.
    baselines: bool = opt(True, "leave the hand-designed students out of the report", flag="--no-baselines")
    force: bool = opt(False, "redo every stage (the latency table is kept)")
    seed: int = opt(0, "random seed of every stage")
    # The task stage runs only when asked: it trains a model per student and baseline.
    task: bool = opt(False, "append the task stage on the offline default task (WordNet lexnames)")
    task_train: str | None = opt(None, "append the task stage on this labelled file (.csv, .tsv, .jsonl)", type=str)
    task_dev: str | None = opt(None, "its dev examples (without: --task-train is split 80/10/10)", type=str)
    task_test: str | None = opt(None, "its test examples", type=str)
    task_dataset: str | None = opt(None, "append the task stage on a `datasets` task, NAME or NAME:CONFIG",
                                   type=str)
    task_unlabeled: str | None = opt(None, "text of the task without labels: the students also learn the "
                                     "teacher's predictions on it (a second batch each step)", type=str)
    train: TrainConfig | None = None  # overrides the schedule (tests use a tiny one)
    task_config: TaskConfig | None = None  # overrides the task recipe (tests use a tiny one)
    # Budgets written as speed-ups over the teacher (`--budget 4x`, budget.py): they join budgets_ms once the
    # teacher has been timed on the device, after training (benchmark/teacher.py).
    speedups: tuple[float, ...] = ()

    @property
    def wants_task(self) -> bool:
        return bool(self.task or self.task_train or self.task_dataset)

    def __post_init__(self) -> None:
        """Every option is checked here, before anything slow runs."""
        from pipeline.search.job import check_search_options

        check_search_options(self.top_t, self.rerank, self.rerank_steps, self.margin, self.min_readout,
                             self.min_attention)
        _ = self.naskd  # a bad --naskd-* setting is refused now, not after training
        if (self.task_dev or self.task_test) and not self.task_train:
            raise PipelineError("--task-dev and --task-test need --task-train")
        if self.task_train and self.task_dataset:
            raise PipelineError("give --task-train or --task-dataset, not both")
        for name in ("task_train", "task_dev", "task_test", "task_unlabeled"):
            if getattr(self, name) and not Path(getattr(self, name)).is_file():
                raise PipelineError(f"--{name.replace('_', '-')}: no such file {getattr(self, name)}")
        for name in ("finetune_steps", "finetune_views", "finetune_spans"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise PipelineError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")

    @property
    def naskd(self) -> NasKdConfig:
        return NasKdConfig(steps=self.naskd_steps, widths=self.naskd_widths, seed=self.seed)

    @property
    def steps(self) -> int:
        if self.finetune_steps is not None:
            return self.finetune_steps
        return 200 if self.quick else 2000


def task_config(o: RunOptions) -> TaskConfig:
    """The task stage's recipe in a run: the defaults (scaled down by --quick), trained where the export's
    fine-tuning runs (--finetune-device); the task's unlabelled text, when it has some, is learnt from
    (TaskConfig.transfer)."""
    base = TaskConfig(seed=o.seed, device=o.finetune_device)
    return o.task_config or (base.quick() if o.quick else base)


def run_all(backend: Backend, table: Path, out: Path, o: RunOptions, progress: bool = True,
            log: Callable[[str], None] = print, foreign_table: bool = False) -> dict[str, Any]:
    from pipeline.benchmark.job import bench_key, run_benchmark
    from pipeline.export.job import run_export, targets_from_search
    from pipeline.model.teacher import space_for_teacher
    from pipeline.profile.probes import plan, profile_device
    from pipeline.search.job import SEARCH, nas_kd_key, run_nas_kd, run_search, search_key
    from pipeline.tables import TableChoice, load_predictor
    from pipeline.train.job import run_train

    # Both folders before any stage runs: a run must not fail on them after an hour of work.
    writable_folder(out, "run folder")
    if not foreign_table:  # a foreign table is only read
        writable_folder(table.parent, "folder of the latency table")
    p = backend.profile
    seq = p.seq_lens[0]
    stages: list[dict[str, Any]] = []

    def stage(name: str, fn: Callable[[], Any], reused: bool = False) -> Any:
        done = "reusing the existing artifact" if reused else "running"
        log(f"[{len(stages) + 1}/{6 if o.wants_task else 5} {name}] {done}")
        start = time.perf_counter()
        result = fn()
        stages.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), "reused": reused})
        return result

    # 1 profile: measures only what the table lacks (nothing when it is complete).
    space = space_for_teacher(o.teacher, prune=o.prune != "off")  # the teacher's shapes profiled where searched
    choice = TableChoice(table, backend.fingerprint())
    predictor = None
    if foreign_table:  # measured elsewhere: nothing measured here may be added to it
        predictor, _ = stage("profile", lambda: load_predictor(p, choice, seq, foreign=True, log=log), reused=True)
    else:
        if not table.exists():
            n = len(plan(space, p.batch, p.seq_lens, p.calibration_archs))
            log(f"no latency table of device '{p.name}' for this machine yet: profiling it into {table} "
                f"({n} models x {p.rounds} rounds; about 2 minutes for the default teacher on a 2-core CPU)")
        stage("profile", lambda: profile_device(backend, space, table, force=False, progress=progress))
    base = TrainConfig(seed=o.seed, init=o.init, prune=o.prune)
    cfg = o.train or (base.quick() if o.quick else base)
    if cfg.seq_len != seq:
        raise PipelineError(f"the device profile measures sequence {seq} but training uses {cfg.seq_len}")
    # 2 train: finished blocks with the same settings are reused inside run_train.
    train_dir = out / "train"
    where = "auto"  # compute.py: the GPU when there is one
    trained = stage("train", lambda: run_train(train_dir, cfg, o.teacher, o.corpus, o.dataset, None, where, table,
                                               p.name, o.force, progress=progress, log=log))
    stages[-1]["reused"] = not trained.get("trained_now")  # every block already trained with these settings
    if o.speedups:  # `4x`: the teacher timed once on this device, kept, so a second run resolves the same budget
        from pipeline.benchmark.teacher import teacher_latency
        from pipeline.train.trained import TrainedSupernet

        timed = teacher_latency(TrainedSupernet(train_dir).teacher_model, backend, out, progress, log)
        asked = Budgets(o.budgets_ms, o.speedups)
        o = replace(o, budgets_ms=tuple(asked.resolve(timed["latency_ms"])), speedups=())
        log(f"budgets {asked.describe()} with the teacher at {timed['latency_ms']:.3f} ms on {p.name} "
            f"(measured {timed['measured_at']}): {', '.join(format_ms(b) for b in o.budgets_ms)}")
        resolved = {"asked": asked.describe(), "teacher_ms": timed["latency_ms"], "measured_at": timed["measured_at"],
                    "speedups": [{"speedup": x, "budget_ms": ms}
                                 for x, ms in asked.speedup_ms(timed["latency_ms"]).items()]}
    else:
        resolved = None
    # 3 search
    search_dir = out / "search"
    if predictor is None:  # this machine's table, as profiling left it
        predictor, _ = load_predictor(p, choice, seq, log=lambda _: None)
    naskd = o.naskd
    if o.search_method == "nas-kd":
        key = nas_kd_key(train_dir, predictor, list(o.budgets_ms), o.margin, naskd)
    else:
        key = search_key(train_dir, predictor, list(o.budgets_ms), o.max_params, o.top_t, o.rerank, o.rerank_steps,
                         o.margin, o.seed, o.min_readout, o.min_attention)
    fresh = o.force or reusable(search_dir / SEARCH, key) is None

    def do_search() -> None:
        if o.search_method == "nas-kd":
            run_nas_kd(train_dir, predictor, p.name, list(o.budgets_ms), search_dir, o.margin, naskd,
                       progress=progress, log=log)
            return
        run_search(train_dir, predictor, p.name, list(o.budgets_ms), search_dir, o.max_params, o.top_t, o.rerank,
                   o.rerank_steps, log=log, margin=o.margin, seed=o.seed, progress=progress,
                   min_readout=o.min_readout, min_attention=o.min_attention)

    stage("search", do_search if fresh else lambda: None, reused=not fresh)
    # 4 export (reuses each architecture exported with the same inputs)
    export_dir = out / "export"
    ecfg = ExportConfig(finetune=DistillConfig(steps=o.steps, seed=o.seed, views=o.finetune_views,
                                               span_rows=o.finetune_spans, device=o.finetune_device), int8=o.int8,
                        seed=o.seed)
    stage("export", lambda: run_export(train_dir, targets_from_search(search_dir), export_dir, backend, ecfg,
                                       force=o.force, progress=progress, log=log))
    # 5 benchmark
    old = None if o.force else reusable(out / "report.json", bench_key(export_dir, backend, o.baselines, o.int8))
    report = stage("benchmark", lambda: old or run_benchmark(export_dir, backend, out, predictor, o.baselines,
                                                             progress, log, o.int8), reused=old is not None)
    if o.wants_task:  # 6 task: reused by its own key (task/job.py) like every stage
        from pipeline.task.job import benchmark_narrow, exported_students, load_task, run_task

        task = load_task(o.task_train, o.task_dev, o.task_test, o.task_dataset, quick=o.quick,
                         unlabeled=o.task_unlabeled)
        tcfg = task_config(o)
        report["task"] = stage("task", lambda: run_task(task, exported_students(export_dir), backend, out / "task",
                                                        o.teacher, tcfg, o.baselines, o.force, progress, log,
                                                        narrow=benchmark_narrow(out / "report.json"), int8=o.int8))
    write_json_atomic(out / "run.json", {"device": p.name, "options": {**asdict(o), "train": None, "task_config": None},
                                         "speedup_budgets": resolved,
                                         "train_config": asdict(cfg), "table": str(table), "stages": stages})
    return {**report, "speedup_budgets": resolved} if resolved else report


# Beyond this drift the table misleads the search (a +28% drift made a 3x budget a 2.6x student: the
# benchmark of 2026-12-05): the summary says how to re-measure it.
REPROFILE_DRIFT = 10.0


def summary_lines(report: dict[str, Any], out: Path) -> list[str]:
    """One line per budget: met or not, measured latency, speedup, fidelity, where the model is."""
    t = report["teacher"]
    drift = report.get("machine_drift")
    note = ""
    if drift and abs(drift["percent"]) >= 2:
        note = f" (the machine ran {drift['percent']:+.1f}% against its latency table"
        if abs(drift["percent"]) >= REPROFILE_DRIFT and report.get("device"):
            where = (f"--device {report['device']}" if report["device"] in shipped_devices()
                     else "--profile YOUR_PROFILE.yaml")
            note += f"; `python -m pipeline profile {where} --force` re-measures it"
        note += ")"
    def ood(s: dict[str, Any]) -> str:
        if s.get("ood_neighbour_recall_at_10") is None:
            return ""
        return (f" (out of domain: recall@10 {s['ood_neighbour_recall_at_10']:.2f}, similarity spearman "
                f"{s['ood_similarity_spearman']:.2f})")

    # `4x` asked: its line names the speed-up beside the milliseconds it became (run_all).
    asked = {x["budget_ms"]: x["speedup"] for x in (report.get("speedup_budgets") or {}).get("speedups", [])}
    lines = []
    for m in (report.get("task") or {}).get("models", []):
        if m["kind"] == "searched" and m.get("precision", "fp32") == "fp32":
            split = "test" if m.get("test_accuracy") is not None else "dev"
            kept = m.get(f"{split}_accuracy_kept")
            share = f" ({100 * kept:.1f}% of the fine-tuned teacher's)" if kept is not None else ""
            lines.append(f"task {report['task']['task']['name']}: {m['name']} {split} accuracy "
                         f"{m[f'{split}_accuracy']:.3f}{share} at {m['latency_ms']:.3f} ms")
    if report.get("task"):
        from pipeline.task.report import choice_lines

        lines += [f"task: {line}" for line in choice_lines(report["task"])]
    by_name = {r.get("name"): r for r in [t, *report["students"], *report.get("baselines", []),
                                          *report.get("peers", [])]}
    for d in report.get("decisions") or []:
        pick = by_name.get(d["deploy"]) if d["deploy"] else None
        if pick is None:
            lines.append(f"budget {_asked(d['budget_ms'], asked)}: no model of the report fits it")
            continue
        searched = [by_name[v["name"]] for v in d["searched"] if not v["chosen"]]
        against = "; ".join(f"{s['name']} {s['latency_ms']:.2f} ms, OOD spearman {s['ood_similarity_spearman']:.2f}"
                            for s in searched if s.get("precision", "fp32") == "fp32")
        lines.append(f"budget {_asked(d['budget_ms'], asked)}: deploy {pick['name']} ({pick['kind']}, "
                     f"{pick.get('precision', 'fp32')}), {pick['latency_ms']:.2f} ms, "
                     f"{t['latency_ms'] / pick['latency_ms']:.1f}x faster than the teacher, OOD spearman "
                     f"{pick['ood_similarity_spearman']:.2f}, recall@10 {pick['ood_neighbour_recall_at_10']:.2f}"
                     + (f" (searched: {against})" if against else "")
                     + f"; file {pick.get('onnx_path') or pick.get('model_dir')}")
    for s in report["students"]:
        if s["kind"] != "searched" or s.get("precision", "fp32") != "fp32":
            continue
        what = (f"speedup {s['speedup']:.1f}x over the teacher ({t['latency_ms_p50']:.2f} ms p50), fidelity "
                f"{s['fidelity_cosine']:.3f}{ood(s)}{note}; model in {Path(s['model_dir']).parent}")
        if s.get("budget_ms") is None:  # exported from an architecture file (`export --arch`): no budget to meet
            lines.append(f"{s['name']}: measured {s['latency_ms']:.3f} ms (p50 {s['latency_ms_p50']:.3f} ms), {what}")
            continue
        met = "met" if s["within_budget"] else "NOT met"
        steady = s.get("within_budget_at_table_speed")
        if steady is not None and steady != s["within_budget"]:
            met += f" ({'met' if steady else 'not met'} at the table's speed: {s['latency_ms_at_table_speed']:.3f} ms)"
        lines.append(f"budget {_asked(s['budget_ms'], asked)} {met}: measured {s['latency_ms']:.3f} ms "
                     f"({100 * s['budget_use']:.0f}% of it; p50 {s['latency_ms_p50']:.3f} ms), {what}, "
                     f"report in {out / 'report.md'}")
    return lines


def _asked(budget_ms: float, speedups: dict[float, float]) -> str:
    ms = format_ms(budget_ms)
    return f"{format_speedup(speedups[budget_ms])} ({ms})" if budget_ms in speedups else ms
