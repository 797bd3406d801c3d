"""Stage 4: searched architectures -> deployable students, each artifact checked against PyTorch.

Per architecture, in OUT/<name>/:

    model/              Hugging Face-style folder: config.json, model.safetensors, tokenizer files, the
                        network's source (AutoModel/SentenceTransformer with trust_remote_code=True)
    model.onnx          fp32, dynamic batch and sequence
    model.opt.onnx      ONNX Runtime's graph optimisations applied offline
    model.int8.onnx     dynamic int8 quantisation (ONNX Runtime devices, unless --no-int8)
    device/             what the device's own runtime built (a TensorRT engine for `tensorrt`)
    export.json         the architecture, the fine-tuning, every artifact with its max |diff|

The student is built by finetune/builder.py: assembled from the supernet, its factorised embeddings
fitted to the teacher's, and optionally finished by end-to-end distillation. Every ONNX file is run
by ONNX Runtime at two shapes (the profile's, and a padded odd one that proves the dynamic axes)
and compared with the PyTorch student; the device's runner is compared too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.artifacts import (
    content_key,
    read_json,
    remove_stale_temps,
    reusable,
    write_folder_atomic,
    write_json_atomic,
)
from pipeline.devices import Backend
from pipeline.errors import PipelineError
from pipeline.export import EXPORT
from pipeline.finetune.builder import BuildConfig, StudentBuilder
from pipeline.finetune.distill import DistillConfig
from pipeline.model.hf import load_student, save_student, sentence_modules_folder
from pipeline.model.student import Student, example_inputs
from pipeline.onnxio import Int8Settings, check_close, export_onnx, optimize_onnx, ort_outputs, quantize_int8
from pipeline.space import Architecture, count_flops, count_params, load_architecture
from pipeline.train.trained import TrainedSupernet

FORMAT = 2  # 2: model/ carries the network's source and the teacher's sentence modules


@dataclass(frozen=True)
class ExportConfig:
    finetune: DistillConfig = field(default_factory=DistillConfig)  # end-to-end steps after assembly
    embed_steps: int = BuildConfig.embed_steps  # fitting the factorised embeddings to the teacher's
    # On ONNX Runtime devices int8 is what a user tries first (the teacher ran 2.26x faster in it on a 2-vCPU
    # EPYC): every student gets its file, and the report scores it. Not part of the key: it is derived from
    # the fp32 graph, so asking for it later adds the file without distilling again.
    int8: bool = True
    seed: int = 0

    @property
    def build(self) -> BuildConfig:
        """How each student is built (what search and benchmark build with too)."""
        return BuildConfig(self.finetune, self.embed_steps, self.seed)


@dataclass(frozen=True)
class Target:
    """One architecture to export, with what the search said of it."""
    name: str
    arch: Architecture
    search: dict[str, Any] = field(default_factory=dict)


def targets_from_search(search_dir: Path) -> list[Target]:
    path = Path(search_dir) / "search.json"
    if not path.is_file():
        raise PipelineError(f"no search result in {search_dir} (search.json is missing); run `search` first")
    try:
        choices = read_json(path, "run `search` again")["choices"]
        return [Target(Path(c["arch_path"]).stem, load_architecture(c["arch_path"]),
                       {k: c[k] for k in ("budget_ms", "predicted_ms", "est_loss", "true_loss") if k in c})
                for c in choices]
    except (KeyError, TypeError) as e:
        raise PipelineError(f"{path} is corrupt ({type(e).__name__}: {e}); run `search` again") from None


def check_onnx(path: Path, student: Student, shapes: list[tuple[int, int]], precision: str) -> float:
    """Largest |diff| of the file against the PyTorch student over the shapes; raises past tolerance."""
    worst = 0.0
    for batch, seq in shapes:
        inputs = example_inputs(batch, seq, student.arch.vocab_size, seed=batch * 1000 + seq)
        with torch.inference_mode():
            ref = student(*inputs.values()).numpy()
        diff = check_close(ort_outputs(path, inputs), ref, precision, f"{path.name} at batch {batch}, seq {seq}")
        worst = max(worst, diff)
    return worst


def _key(target: Target, trained: TrainedSupernet, cfg: ExportConfig, backend: Backend) -> str:
    settings = {k: v for k, v in asdict(cfg).items() if k != "int8"}
    return content_key("export", FORMAT, arch=target.arch.to_dict(), train=trained.content_hash, cfg=settings,
                       device=[backend.profile.name, backend.profile.backend, backend.profile.precision])


def _files_there(record: dict[str, Any]) -> bool:
    paths = [a["path"] for a in record.get("artifacts", []) if isinstance(a, dict) and "path" in a]
    return bool(paths) and all(Path(p).exists() for p in paths)


def export_one(target: Target, builder: StudentBuilder | Callable[[], StudentBuilder], backend: Backend, out: Path,
               key: str, int8: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build, save and check one student. OUT/<name> is written as a whole folder (atomic: a killed
    re-export leaves the old folder whole or none, never new weights beside old graphs), export.json last."""
    ex = builder if isinstance(builder, StudentBuilder) else builder()
    folder = out / target.name
    student, finetune = ex.student(target.arch, target.name)  # the long part, before any file is written
    # The teacher's sentence-transformers modules (pooling, normalisation) go with the student, so that
    # SentenceTransformer(folder) encodes as the teacher does; a Hugging Face id's come from the hub cache.
    modules = sentence_modules_folder(ex.trained.teacher)
    if modules is None and not Path(ex.trained.teacher).is_dir():
        log(f"{ex.trained.teacher}: no sentence-transformers modules found in the hub cache or on the hub; "
            "SentenceTransformer(folder) will mean-pool without normalising")
    record: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        record.update(_write_artifacts(tmp, folder, target, ex, student, finetune, modules, backend, key, int8))

    write_folder_atomic(folder, write, replace=True)
    worst = max(a["max_abs_diff"] for a in record["artifacts"] if a["kind"] != "onnx-int8")
    log(f"exported {target.name} ({target.arch.describe()}): {len(record['artifacts'])} artifacts, "
        f"fp32 max |diff| {worst:.2g}"
        + (f", fine-tuned {finetune['steps']} steps (loss {finetune['loss_first']:.4f} -> {finetune['loss_last']:.4f})"
           if finetune["steps"] else ""))
    return record


def _write_artifacts(tmp: Path, folder: Path, target: Target, ex: StudentBuilder, student: Student,
                     finetune: dict[str, Any], modules: Path | None, backend: Backend, key: str,
                     int8: bool) -> dict[str, Any]:
    """Every artifact of one student into `tmp`, each checked; the record (paths as they will be, under
    `folder`) written last, as tmp/export.json."""
    p = backend.profile
    seq = p.seq_lens[0]

    def final(path: Path) -> str:  # where a file in tmp will be once the folder is renamed into place
        return str(folder / Path(path).relative_to(tmp))

    meta = {"pipeline": {"teacher": ex.trained.teacher, "train_dir": str(ex.trained.dir), "search": target.search,
                         "finetune": finetune}}
    save_student(student, tmp / "model", ex.tokenizer, meta, modules)
    reloaded, _ = load_student(tmp / "model", with_tokenizer=False)
    artifacts: list[dict[str, Any]] = [{"kind": "hf", "path": final(tmp / "model"),
                                        "max_abs_diff": _compare_students(reloaded, student),
                                        "checked": "reloaded with pipeline.model.hf.load_student"}]
    shapes = [(p.batch, seq), (2, 37)]
    inputs = example_inputs(p.batch, seq, target.arch.vocab_size)
    onnx = export_onnx(student, inputs, tmp / "model.onnx")
    artifacts.append({"kind": "onnx", "path": final(onnx), "max_abs_diff": check_onnx(onnx, student, shapes, "fp32"),
                      "checked": f"onnxruntime cpu at (batch, seq) {shapes}"})
    opt = optimize_onnx(onnx, tmp / "model.opt.onnx")
    artifacts.append({"kind": "onnx-optimized", "path": final(opt),
                      "max_abs_diff": check_onnx(opt, student, shapes, "fp32"),
                      "checked": f"onnxruntime cpu at (batch, seq) {shapes}"})
    if int8 and backend.runs_int8:
        artifacts.append(int8_artifact(onnx, tmp / "model.int8.onnx", student, shapes, backend.int8, final))
    device_dir = tmp / "device"
    deployed = {"onnxruntime": opt, "plain": onnx}.get(backend.onnx)
    with backend.load(student, inputs, device_dir, what=f"student {target.name}", onnx_path=deployed) as runner:
        engine = device_dir / "model.engine"
        artifacts.append({"kind": f"device:{backend.name}", "path": final(engine if engine.exists() else opt),
                          "max_abs_diff": runner.max_abs_diff,
                          "checked": f"{backend.name} ({p.precision}) at batch {p.batch}, seq {seq}"})
    record = {
        "name": target.name, "key": key, "format": FORMAT, "device": p.name, "arch": target.arch.to_dict(),
        "describe": target.arch.describe(), "params": count_params(target.arch),
        "flops": count_flops(target.arch, seq, p.batch), "search": target.search, "finetune": finetune,
        "embedding_fit_mse": ex.embed_loss, "artifacts": artifacts,
        "onnx_path": final(opt), "onnx_plain_path": final(onnx), "model_dir": final(tmp / "model"),
    }
    write_json_atomic(tmp / EXPORT, record)  # last: the key that says the folder is whole
    return record


def int8_artifact(onnx: Path, dst: Path, student: Student, shapes: list[tuple[int, int]], settings: Int8Settings,
                  final: Callable[[Path], str] = str) -> dict[str, Any]:
    """The student's plain graph quantised with the device's settings (Backend.int8), checked for gross errors
    (its cost in quality is what the benchmark scores); its record, with the settings that made it."""
    q = quantize_int8(onnx, dst, settings)
    return {"kind": "onnx-int8", "path": final(q), "max_abs_diff": check_onnx(q, student, shapes, "int8-scored"),
            "checked": f"onnxruntime cpu at (batch, seq) {shapes}: finite, the right shape",
            "settings": settings.describe()}


def add_int8(record: dict[str, Any], folder: Path, backend: Backend) -> dict[str, Any]:
    """A reused export asked for int8 that has none with today's settings: the file added from the student's
    plain graph, the record rewritten after it (a kill between leaves the older record, which asks again)."""
    kept = [a for a in record["artifacts"] if a["kind"] != "onnx-int8"]
    student, _ = load_student(record["model_dir"], with_tokenizer=False)
    shapes = [(backend.profile.batch, backend.profile.seq_lens[0]), (2, 37)]
    new = {**record, "artifacts": [*kept, int8_artifact(Path(record["onnx_plain_path"]), folder / "model.int8.onnx",
                                                        student, shapes, backend.int8)]}
    write_json_atomic(folder / EXPORT, new)
    return new


@torch.inference_mode()
def _compare_students(a: Student, b: Student) -> float:
    """Largest |diff| between two PyTorch students on the same padded batch."""
    inputs = example_inputs(2, 24, a.arch.vocab_size)
    diff = (a(*inputs.values()) - b(*inputs.values())).abs().max().item()
    if diff > 1e-6:
        raise PipelineError(f"the saved student differs from the exported one by {diff:.3g}")
    return diff


def run_export(train_dir: Path, targets: list[Target], out: Path, backend: Backend, cfg: ExportConfig,
               force: bool = False, progress: bool = False, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Export every target (reusing those already exported with the same inputs); write OUT/export.json."""
    # Absolute: the records are read from other folders (task and benchmark run where the user is).
    out, train_dir = Path(out).absolute(), Path(train_dir).absolute()
    trained = TrainedSupernet(train_dir)
    if not targets:
        raise PipelineError("nothing to export: no architectures given")
    cached: list[StudentBuilder] = []

    def builder() -> StudentBuilder:  # the teacher and corpus load only if something needs exporting
        if not cached:
            cached.append(StudentBuilder(trained, cfg.build, progress, log))
        return cached[0]

    records = []
    done: dict[str, dict[str, Any]] = {}  # arch key -> its record: budgets that pick one student export it once
    for target in targets:
        if target.arch.key in done:
            first = done[target.arch.key]
            log(f"{target.name} is the same architecture as {first['name']}: sharing its artifacts")
            record = {**first, "name": target.name, "search": target.search, "same_as": first["name"]}
            # A folder of its own holding only the record (an older export's files there would mislead).
            write_folder_atomic(out / target.name, lambda tmp, r=record: write_json_atomic(tmp / EXPORT, r),
                                replace=True)
            records.append(record)
            continue
        key = _key(target, trained, cfg, backend)
        old = None if force else reusable(out / target.name / EXPORT, key, also=_files_there)
        if old is not None:
            remove_stale_temps(out / target.name)  # a killed re-export's half folder, never trusted, is only waste
            log(f"reusing {out / target.name} (same architecture, supernet and settings; --force re-exports)")
            if cfg.int8 and backend.runs_int8 and not any(a["kind"] == "onnx-int8" and a.get("settings") ==
                                                           backend.int8.describe() for a in old["artifacts"]):
                log(f"adding {target.name}'s int8 file ({backend.int8.describe()})")
                old = add_int8(old, out / target.name, backend)
            records.append(old)
        else:
            records.append(export_one(target, builder, backend, out, key, cfg.int8, log))
        done[target.arch.key] = records[-1]
    write_json_atomic(out / EXPORT, {"device": backend.profile.name, "train_dir": str(train_dir),
                                     "teacher": trained.teacher,  # what `task --export-dir` distils from
                                     "config": asdict(cfg), "models": records})
    return records
