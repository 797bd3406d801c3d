"""Stage 6: a labelled task in, task students and their accuracy at measured latency out.

1. The teacher learns the task first (its base model, a mean-pooled head, plain fine-tuning),
   cached by the content of the teacher, the training data and the recipe: a second run reuses it.
2. Each exported searched student first learns the fine-tuned teacher's final states on the task's
   text and takes the teacher's head (start.py), then learns the task from the teacher (PKD by
   default, train.py), its block boundaries mapped to teacher layers (pkd.layer_map). The
   hand-designed baselines learn with the same recipe and steps: PKD's own student (the
   fine-tuned teacher's first k layers, at every depth) and, where the benchmark saved them, the
   narrowed BERTs.
3. Every task model is exported (ONNX, ONNX Runtime-optimised where the device runs it, and int8
   where it runs ONNX Runtime), checked against PyTorch on the device's runtime, timed on the device
   together with the teacher, and scored as deployed: dev and test accuracy (F1 for two classes,
   Spearman for a regression). At each budget, the best on dev within it is what to deploy.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from pipeline.artifacts import content_key, disk_cached, inside, read_json, reusable, short_hash, write_json_atomic
from pipeline.benchmark.evaluate import Model, Outputs
from pipeline.benchmark.measure import measure_runners
from pipeline.devices import Backend
from pipeline.devices.host import scratch_folder
from pipeline.devices.timing import STATISTIC
from pipeline.errors import PipelineError
from pipeline.export import EXPORT, read_export
from pipeline.model.student import example_inputs
from pipeline.onnxio import Int8Settings, export_onnx, optimize_onnx, quantize_int8
from pipeline.task.data import Task
from pipeline.task.metrics import scores
from pipeline.task.models import bert_task_model, student_task_model
from pipeline.task.pkd import layer_map
from pipeline.task.start import held_states, prepare
from pipeline.task.train import TaskConfig, encode, fit, predict, teacher_targets

TASK = "task_report.json"
FORMAT = 4  # bump when the stage's outputs change meaning (4: PKD at every depth, int8, a choice per budget)


def task_key(task: Task, teacher_hash: str, students: list[dict[str, Any]], backend: Backend, cfg: TaskConfig,
             baselines: bool, int8: str | None = None) -> str:
    data = short_hash([task.describe(), [s.texts + (s.pairs or []) + [str(x) for x in s.labels]
                                         for s in (task.train, task.dev, task.test, task.unlabeled)
                                         if s is not None]])
    return content_key("task", FORMAT, data=data, teacher=teacher_hash, students=[s["key"] for s in students],
                       device=backend.profile.name, fingerprint=backend.fingerprint(), cfg=asdict(cfg),
                       baselines=baselines, int8=int8, budgets=[s.get("budget_ms") for s in students])


def fine_tuned_teacher(teacher_name: str, task: Task, rows, pad_id: int, cfg: TaskConfig, progress: bool,
                       log: Callable[[str], None]):
    """The teacher with a head for the task: its own, when it has one for this task (a sequence-classification
    checkpoint), else its base model fine-tuned with a new head (cached by content) -> (model, record)."""
    from pipeline.model.teacher import load_teacher, weights_hash
    from pipeline.task.models import headed_teacher

    headed, why = headed_teacher(teacher_name, task.classes, task.outputs)
    if headed is not None:
        log(f"the teacher has a head for this task: used as it is ({why})")
        return headed, {"steps": 0, "own_head": True}
    log(f"the teacher learns the task first: {why}")
    bert = load_teacher(teacher_name)
    teacher = bert_task_model(bert, task.outputs)
    data = short_hash([task.train.texts, task.train.pairs, [str(x) for x in task.train.labels], task.classes])
    key = {"teacher": weights_hash(bert), "data": data, "steps": cfg.teacher_steps, "lr": cfg.teacher_lr,
           "batch": cfg.batch_size, "max_length": cfg.max_length, "seed": cfg.teacher_seed, "format": 1}
    record: dict[str, Any] = {}

    def train() -> dict[str, torch.Tensor]:
        torch.manual_seed(cfg.teacher_seed)
        teacher.head.reset_parameters()
        record.update(fit(teacher, rows, task.train.labels, pad_id, replace(cfg, seed=cfg.teacher_seed),
                          task.regression, steps=cfg.teacher_steps,
                          lr=cfg.teacher_lr, desc="fine-tune teacher", progress=progress))
        log(f"fine-tuned the teacher on the task: {record.get('steps', 0)} steps in {record.get('seconds', 0):.0f} s"
            f" on {record.get('device', 'cpu')}")
        return {k: v.detach().clone() for k, v in teacher.state_dict().items()}

    state = disk_cached("task-teacher", key, train, valid=lambda s: isinstance(s, dict) and "head.weight" in s)
    if not record:
        log("reused the teacher fine-tuned on this task (cached by the teacher, the data and the recipe)")
        record = {"steps": cfg.teacher_steps, "reused": True}
    teacher.load_state_dict(state)
    return teacher.eval(), record


def _params(module: torch.nn.Module) -> int:
    """What the report's `params` count: every parameter of the encoder given (heads are left out)."""
    return sum(p.numel() for p in module.parameters())


def exported_students(export_dir: Path) -> list[dict[str, Any]]:
    """The students of `export`'s DIR/export.json (checked as benchmark checks it: read_export)."""
    source = str(Path(export_dir) / EXPORT)  # where each name came from, for run_task's check of it
    return [{"name": r["name"], "kind": "searched", "model_dir": r["model_dir"], "key": r["key"],
             "describe": r.get("describe"), "params": r.get("params"), "source": source,
             "budget_ms": (r.get("search") or {}).get("budget_ms")}
            for r in read_export(export_dir)["models"]]


def export_teacher(export_dir: Path) -> str | None:
    """The teacher the exported students were distilled from: export.json's record, or (exports that predate
    it) the training summary it names; None where neither is there any more."""
    from pipeline.train.trained import TrainedSupernet

    export = read_export(export_dir)
    if export.get("teacher"):
        return str(export["teacher"])
    try:
        return TrainedSupernet(export["train_dir"]).teacher
    except (PipelineError, KeyError, TypeError, OSError):
        return None


def same_teacher(a: str | None, b: str | None) -> bool:
    """Whether two teacher names (ids or folders, None the default) load the same teacher."""
    from pipeline.model.teacher import resolve_teacher

    def where(name: str | None) -> str:
        path = resolve_teacher(name)
        return str(Path(path).resolve()) if Path(path).exists() else path
    return where(a) == where(b)


def benchmark_narrow(report_path: Path) -> list[dict[str, Any]]:
    """The narrowed BERTs of a benchmark report (`benchmark` saves them as student folders), as task
    baselines; none when there is no report or it predates the saved folders."""
    try:
        report = read_json(report_path, "run `benchmark` again")
    except FileNotFoundError:
        return []
    # Keyed by the benchmark that distilled it and where it lies: a re-distilled baseline is a new student.
    return [{"name": b["name"], "kind": "narrow", "model_dir": b["model_dir"],
             "key": f"{b['name']}@{report.get('key')}:{b['model_dir']}",
             "describe": b.get("arch"), "params": b.get("params"), "source": str(report_path)}
            for b in report.get("baselines", []) if b.get("kind") == "narrow" and b.get("model_dir")
            and b.get("precision", "fp32") == "fp32"  # its int8 file is the task stage's to make
            and Path(b["model_dir"]).is_dir()]


def student_folder(folder: Path) -> dict[str, Any]:
    """--student DIR: one student folder written by export."""
    from pipeline.model.hf import load_student

    student, _ = load_student(folder, with_tokenizer=False)
    return {"name": Path(folder).resolve().parent.name if Path(folder).name == "model" else Path(folder).name,
            "kind": "searched", "model_dir": str(folder), "key": student.arch.key, "describe": student.arch.describe(),
            "params": _params(student), "source": str(folder)}


def run_task(task: Task, students: list[dict[str, Any]], backend: Backend, out: Path, teacher_name: str | None,
             cfg: TaskConfig | None = None, baselines: bool = True, force: bool = False, progress: bool = False,
             log: Callable[[str], None] = print, narrow: list[dict[str, Any]] | None = None,
             int8: bool = True) -> dict[str, Any]:
    """The task report (also written to OUT/task_report.*); reused when made from the same inputs.
    students: the searched students (exported_students); narrow: the benchmark's narrowed BERTs
    (benchmark_narrow), taught the task with the same recipe when baselines are on; int8: every task model
    also quantised (on devices that run ONNX Runtime), scored and timed."""
    students = students + (narrow or [] if baselines else [])
    from pipeline.model.teacher import load_teacher, resolve_teacher, weights_hash

    backend.check_available()
    cfg = cfg or TaskConfig()
    out = Path(out)
    seen: set[str] = set()
    for s in students:  # each becomes OUT/models/<name>: a name read from a file must stay there, checked first
        where = f"{s.get('source', 'student')} model name"
        inside(out / "models", s["name"], where)
        # One folder and one row each: a plain name, none twice, none of the models the stage adds itself.
        if not re.fullmatch(r"\w[\w.-]*", s["name"]) or s["name"] in seen or re.fullmatch(r"teacher|pkd_\d+",
                                                                                           s["name"]):
            raise PipelineError(f"{where}: {s['name']!r} is not a name of its own (a plain name, not 'teacher' "
                                "or pkd_N, each student's different); rename the student")
        seen.add(s["name"])
    missing = next((s for s in students if not Path(s["model_dir"]).is_dir()), None)
    if missing is not None:  # found now, not after the teacher's fine-tuning
        raise PipelineError(f"{missing.get('source', 'student')}: the folder of student {missing['name']!r}, "
                            f"{missing['model_dir']}, is missing; export it again")
    teacher_name = resolve_teacher(teacher_name)
    int8_settings = backend.int8 if int8 and backend.runs_int8 else None
    key = task_key(task, weights_hash(load_teacher(teacher_name)), students, backend, cfg, baselines,
                   int8_settings.describe() if int8_settings else None)
    old = None if force else reusable(out / TASK, key)
    if old is not None:
        log(f"task stage reused: {out / TASK} was made from the same task, students, teacher and recipe")
        return old
    # The record (its key) goes before the students' folders change and comes back last (write_task_report).
    (out / TASK).unlink(missing_ok=True)
    report = {"key": key, **_run(task, students, backend, out, teacher_name, cfg, baselines, progress, log,
                                 int8_settings)}
    from pipeline.task.report import choices, write_task_report

    report["choices"] = choices(report["models"])
    write_task_report(report, out)
    return report


def _run(task: Task, students: list[dict[str, Any]], backend: Backend, out: Path, teacher_name: str,
         cfg: TaskConfig, baselines: bool, progress: bool, log: Callable[[str], None],
         int8: Int8Settings | None = None) -> dict[str, Any]:
    from pipeline.model.hf import load_student
    from pipeline.model.teacher import load_teacher_config, load_tokenizer, truncated_teacher

    tokenizer = load_tokenizer(teacher_name)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # No longer than the teacher's positions, nor than what latency is measured at.
    max_length = min(cfg.max_length, load_teacher_config(teacher_name).max_position_embeddings,
                     backend.profile.seq_lens[0])
    rows = {s: encode(tokenizer, getattr(task, s), max_length) for s in ("train", "dev", "test")
            if getattr(task, s) is not None}
    log(f"task {task.name}: {task.describe()['kind']}, {task.outputs if not task.regression else 'float'} "
        f"{'classes' if not task.regression else 'labels'}; {len(task.train)} train / {len(task.dev)} dev / "
        f"{len(task.test) if task.test else 0} test examples")
    teacher, teacher_record = fine_tuned_teacher(teacher_name, task, rows["train"], pad_id, cfg, progress, log)
    layers = teacher.encoder.config.num_hidden_layers
    unlabeled = encode(tokenizer, task.unlabeled, max_length) if task.unlabeled and (cfg.transfer or
                                                                                   cfg.adapt_steps) else []
    if len(unlabeled) > cfg.max_unlabeled:
        log(f"{len(unlabeled)} unlabelled examples: a seeded sample of {cfg.max_unlabeled} is used")
        unlabeled = random.Random(cfg.seed).sample(unlabeled, cfg.max_unlabeled)
    transfer = unlabeled if cfg.transfer else []
    if transfer:
        log(f"the students also learn the teacher's predictions on {len(transfer)} unlabelled examples")
    targets = teacher_targets(teacher, rows["train"] + transfer, pad_id, progress,  # [N+U, C], [N+U, L-1, T]
                              pool=cfg.pkd_states, device=cfg.device)

    models: list[dict[str, Any]] = [{"name": "teacher", "kind": "teacher", "module": teacher,
                                     "info": {"params": _params(teacher.encoder),
                                              "describe": f"{teacher_name} fine-tuned", "train": teacher_record}}]
    @functools.cache
    def held():  # the teacher's states for the adaptations, once, and only when one is not in the cache
        states = held_states(teacher, rows["train"] + unlabeled, pad_id, progress=progress, device=cfg.device)
        log(f"the teacher's final states of {len(rows['train']) + len(unlabeled)} texts " +
            ("held for every student's adaptation" if states is not None else
             "are too large to hold: the teacher runs beside each adaptation step"))
        return states

    for s in students:
        student, _ = load_student(s["model_dir"], with_tokenizer=False)
        torch.manual_seed(cfg.seed)
        model = student_task_model(student, task.outputs, cfg.student_dropout)
        start = prepare(model, teacher, rows["train"] + unlabeled, pad_id, cfg, desc=f"adapt {s['name']}",
                        progress=progress, held=held)
        if start.get("adapt", {}).get("steps"):
            a = start["adapt"]
            log(f"{s['name']}: final states adapted to the fine-tuned teacher's on {a['rows']} texts, "
                f"{a['steps']} steps, loss {a['loss_first']:.3f} -> {a['loss_last']:.3f}, " +
                ("reused from the cache" if a.get("reused") else f"{a['seconds']:.0f} s on {a['device']}"))
        mapping = layer_map(len(student.arch.blocks), layers, cfg.pkd)
        record = fit(model, rows["train"], task.train.labels, pad_id, cfg, task.regression, targets, mapping,
                     desc=f"task {s['name']}", progress=progress, transfer=transfer, teacher=teacher)
        log(f"{s['name']}: {cfg.method} ({cfg.pkd} map {mapping}, {cfg.pkd_states} states, {start['head']} head), "
            f"{record['steps']} steps, {record['seconds']:.0f} s on {record['device']}")
        models.append({"name": s["name"], "kind": s["kind"], "module": model,
                       # Counted on the student taught, not taken from export.json: the same encoder today,
                       # and an option that changed it would otherwise report the exported one's count.
                       "info": {"params": _params(student), "budget_ms": s.get("budget_ms"),
                                "describe": s.get("describe"), "layer_map": mapping,
                                "start": start, "train": record}})

    if baselines:
        # PKD's student at every depth: what a user makes by hand of the teacher, whatever the budgets.
        for k in range(1, layers):
            torch.manual_seed(cfg.seed)
            model = bert_task_model(truncated_teacher(teacher.encoder, k), task.outputs)
            if hasattr(teacher, "head"):  # PKD: the student starts as the teacher's bottom, head included
                model.head.load_state_dict(teacher.head.state_dict())
            mapping = layer_map(k, layers, cfg.pkd)
            record = fit(model, rows["train"], task.train.labels, pad_id, cfg, task.regression, targets, mapping,
                         desc=f"task pkd_{k}", progress=progress, transfer=transfer, teacher=teacher)
            log(f"pkd_{k} (the fine-tuned teacher's first {k} layers): {record['steps']} steps")
            models.append({"name": f"pkd_{k}", "kind": "pkd", "module": model,
                           "info": {"params": _params(model.encoder),
                                    "describe": f"teacher's first {k} of {layers} layers", "layer_map": mapping,
                                    "train": record}})
    timed = measure(backend, out, models, log, int8)  # all together: one machine state for every ratio

    teacher_ms = timed["teacher"]["latency_ms"]
    reference: dict[str, dict[str, float]] = {}
    entries = []
    by_name = {m["name"]: m for m in models}
    for name, t in timed.items():
        m = by_name[t["model"]]
        out_fn = Outputs(Model(name, m["kind"], m["module"], t["onnx_path"]))
        entry = {"name": name, "kind": m["kind"], "precision": t["precision"], **m["info"],
                 "latency_ms": t["latency_ms"], "p50_ms": t["p50_ms"], "speedup": teacher_ms / t["latency_ms"],
                 "onnx_path": t["onnx_path"], "max_abs_diff": t["max_abs_diff"]}
        for split in ("dev", "test"):
            if split not in rows:
                entry[f"{split}_accuracy"] = None
                continue
            logits = predict(lambda ids, mask, f=out_fn: f(ids, mask), rows[split], pad_id)
            for k, v in scores(logits, getattr(task, split).labels, task.regression).items():
                entry[f"{split}_{k}"] = v
        if t["precision"] == "fp32":
            write_json_atomic(inside(out / "models", name, "task model name") / "task.json",
                              {"name": name, "kind": m["kind"], "task": task.name, "classes": task.classes,
                               "inputs": ["input_ids", "attention_mask"], "output": "logits",
                               "pooling": "mean over attention_mask", "dev_accuracy": entry.get("dev_accuracy")})
        if name == "teacher":
            reference = {k: v for k, v in entry.items() if k.startswith(("dev_", "test_")) and v is not None}
        entries.append(entry)
    for entry in entries:
        for k, v in reference.items():
            if entry.get(k) is not None and v:
                entry[f"{k}_kept"] = entry[k] / v
    report = {"task": task.describe(), "teacher": teacher_name, "device": backend.profile.name,
              "fingerprint": backend.fingerprint(), "statistic": STATISTIC, "config": asdict(cfg),
              "models": entries}
    return report


def measure(backend: Backend, out: Path, models: list[dict[str, Any]], log,
            int8: Int8Settings | None = None) -> dict[str, dict[str, Any]]:
    """Export every task model (and, with int8 settings, its int8 file), load each on the device (checked
    against PyTorch; an int8 file for gross errors only, the scores being its measure) and time them
    together. -> name (`<model>` or `<model>-int8`) -> its file, model, precision and latency."""
    p = backend.profile
    seq = p.seq_lens[0]
    vocab = models[0]["module"].encoder.config.vocab_size
    inputs = example_inputs(p.batch, seq, vocab)
    found: dict[str, dict[str, Any]] = {}
    with scratch_folder("task") as tmp, ExitStack() as stack:  # removed even when killed (host.py)
        runners = []
        for m in models:
            folder = inside(out / "models", m["name"], "task model name")
            files: list[tuple[str, Path | None, str]] = [(m["name"], None, "fp32")]
            if backend.onnx is not None:
                plain = export_onnx(m["module"].eval(), inputs, folder / "model.onnx", output_name="logits")
                onnx = optimize_onnx(plain, folder / "model.opt.onnx") if backend.onnx == "onnxruntime" else plain
                files = [(m["name"], onnx, "fp32")]
                if int8 is not None:
                    files.append((f"{m['name']}-int8", quantize_int8(plain, folder / "model.int8.onnx", int8), "int8"))
            for name, path, precision in files:
                runner = backend.load(m["module"], inputs, tmp / name, what=f"task model {name}", onnx_path=path,
                                      precision="int8-scored" if precision == "int8" else None)
                runners.append(stack.enter_context(runner))
                found[name] = {"model": m["name"], "precision": precision, "onnx_path": str(path) if path else None,
                               "max_abs_diff": runner.max_abs_diff}
        latencies = measure_runners(runners, p)
    for f, lat in zip(found.values(), latencies, strict=True):
        f.update(latency_ms=lat.robust_ms, p50_ms=lat.as_dict().get("p50_ms"))
    log("timed " + ", ".join(f"{n} {f['latency_ms']:.3f} ms" for n, f in found.items()))
    return found


def load_task(train: str | None = None, dev: str | None = None, test: str | None = None,
              dataset: str | None = None, cols=None, quick: bool = False, unlabeled: str | None = None) -> Task:
    """The task the user named: files, a `datasets` name, or (neither) the offline WordNet task (with its
    unlabelled glosses); `unlabeled`: a file of the task's text without labels (the transfer set)."""
    from pipeline.task.data import Columns, load_dataset, load_files, load_unlabeled
    from pipeline.task.wordnet import SIZES, UNLABELED, wordnet_task

    cols = cols or Columns()
    if train and dataset:
        raise PipelineError("give --train (files) or --task-dataset, not both")
    if train:
        task = load_files(train, dev, test, cols)
    elif dev or test:
        raise PipelineError("--dev and --test need --train")
    elif dataset:
        task = load_dataset(dataset, cols)
    else:
        task = wordnet_task({k: v // 3 for k, v in SIZES.items()} if quick else None,
                            unlabeled=UNLABELED // 3 if quick else UNLABELED)
    if unlabeled:
        task = replace(task, unlabeled=load_unlabeled(unlabeled, cols))
    return task
