"""Stage 4: searched architectures -> deployable students, each artifact checked against PyTorch.

Per architecture, in OUT/<name>/:

    model/              Hugging Face-style folder: config.json, model.safetensors, tokenizer files
    model.onnx          fp32, dynamic batch and sequence
    model.opt.onnx      ONNX Runtime's graph optimisations applied offline
    model.int8.onnx     dynamic int8 quantisation (--int8, ONNX Runtime devices)
    device/             what the device's own runtime built (a TensorRT engine for `tensorrt`)
    export.json         the architecture, the fine-tuning, every artifact with its max |diff|

The student is assembled from the supernet (extract.py), its factorised embeddings fitted to the
teacher's, and optionally finished by end-to-end distillation (distill.py). Every ONNX file is run
by ONNX Runtime at two shapes (the profile's, and a padded odd one that proves the dynamic axes)
and compared with the PyTorch student; the device's runner is compared too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.artifacts import read_json, short_hash, write_json_atomic
from pipeline.devices import Backend
from pipeline.distill import DistillConfig, distill
from pipeline.errors import PipelineError
from pipeline.export import check_close, export_onnx, optimize_onnx, ort_session_of, quantize_int8
from pipeline.hf import load_student, save_student
from pipeline.space import Architecture, count_flops, count_params, load_architecture
from pipeline.student import Student, example_inputs
from pipeline.trained import TrainedSupernet

EXPORT = "export.json"
FORMAT = 1
MIN_DISTILL_CHUNKS = 8192  # chunks that fine-tuning draws from even when its steps would read fewer (variety)


@dataclass(frozen=True)
class ExportConfig:
    finetune: DistillConfig = field(default_factory=DistillConfig)  # end-to-end steps after assembly
    embed_steps: int = 300        # fitting the factorised embeddings to the teacher's: ~10 s on a CPU
    int8: bool = False            # dynamic int8 on ONNX Runtime devices; costs fidelity, so opt-in
    seed: int = 0


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
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise PipelineError(f"{path} is corrupt ({type(e).__name__}: {e}); run `search` again") from None


def ort_session(path: Path) -> Callable[[dict[str, torch.Tensor]], np.ndarray]:
    """An ONNX file on ONNX Runtime CPU (whatever the device), default settings: inputs -> output."""
    session = ort_session_of(path)
    names = {i.name for i in session.get_inputs()}  # export drops inputs a graph does not use
    return lambda inputs: session.run(None, {k: v.numpy() for k, v in inputs.items() if k in names})[0]


def ort_outputs(path: Path, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """Run an ONNX file once on ONNX Runtime CPU."""
    return ort_session(path)(inputs)


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


class Exporter:
    """What every architecture of one export shares: teacher, corpus, fitted embeddings, targets."""

    def __init__(self, trained: TrainedSupernet, cfg: ExportConfig, progress: bool = False,
                 log: Callable[[str], None] = print, teacher=None):
        from pipeline.augment import text_views, views_for
        from pipeline.data import load_corpus
        from pipeline.extract import fitted_embedding
        from pipeline.teacher import (
            cached_teacher_states,
            chunks_for_states,
            load_teacher,
            load_tokenizer,
            max_state_chunks,
            sample_chunks,
        )

        self.trained, self.cfg, self.progress = trained, cfg, progress
        corpus = trained.summary["corpus"]
        self.tokenizer = load_tokenizer(trained.teacher)
        self.data = load_corpus(self.tokenizer, trained.seq_len, corpus.get("corpus"), corpus.get("dataset"))
        teacher = teacher if teacher is not None else load_teacher(trained.teacher)
        torch.manual_seed(cfg.seed)
        self.embedding, self.embed_loss = fitted_embedding(teacher, trained.frame.embed_dim, self.data.train,
                                                           cfg.embed_steps, cfg.seed, progress)
        log(f"fitted the factorised embeddings (E={trained.frame.embed_dim}) to the teacher's: "
            f"MSE {self.embed_loss:.4f} after {cfg.embed_steps} steps")
        self.targets, self.train_ids, self.views = None, self.data.train, 0
        if cfg.finetune.steps:
            last = trained.summary["space"]["teacher_layers"]
            ft = cfg.finetune
            reads, shape = ft.steps * ft.batch_size, (trained.seq_len, trained.frame.teacher_hidden, 1)
            n = chunks_for_states(max(reads, MIN_DISTILL_CHUNKS), *shape)
            self.train_ids = sample_chunks(self.data.train, n, cfg.seed)
            self.targets = cached_teacher_states(teacher, self.train_ids, last, progress)  # [N, S, T]
            n = self.train_ids.shape[0]
            views = views_for(reads, n, ft.views, max_state_chunks(*shape))
            if views:
                extra = text_views(self.train_ids, views, ft.replace, cfg.seed)   # [V * (N - 1), S]
                log(f"fine-tuning reads the training text {reads // n} times: {views} augmented views of it "
                    f"({extra.shape[0]} chunks), labelled by the teacher")
                self.train_ids = torch.cat([self.train_ids, extra])
                self.targets = torch.cat([self.targets, cached_teacher_states(teacher, extra, last, progress)])
            self.views = views

    def student(self, arch: Architecture, name: str) -> tuple[Student, dict[str, Any]]:
        from pipeline.extract import assemble

        student = assemble(arch, self.trained, self.embedding)
        record = {"steps": 0}
        if self.targets is not None:
            student.train()
            record = distill(student, self.train_ids, self.targets, self.cfg.finetune, desc=f"finetune {name}",
                             progress=self.progress)
            record.update(views=self.views, chunks=int(self.train_ids.shape[0]))
        return student.eval(), record


def _key(target: Target, trained: TrainedSupernet, cfg: ExportConfig, backend: Backend) -> str:
    return short_hash({"arch": target.arch.to_dict(), "train": trained.content_hash, "cfg": asdict(cfg),
                       "device": [backend.profile.name, backend.profile.backend, backend.profile.precision],
                       "format": FORMAT})


def _reusable(folder: Path, key: str) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / EXPORT).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if record.get("key") != key:
        return None
    paths = [a["path"] for a in record.get("artifacts", [])]
    return record if paths and all(Path(p).exists() for p in paths) else None


def export_one(target: Target, exporter: Exporter | Callable[[], Exporter], backend: Backend, out: Path,
               key: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    ex = exporter if isinstance(exporter, Exporter) else exporter()
    folder = out / target.name
    p = backend.profile
    seq = p.seq_lens[0]
    student, finetune = ex.student(target.arch, target.name)
    meta = {"pipeline": {"teacher": ex.trained.teacher, "train_dir": str(ex.trained.dir), "search": target.search,
                         "finetune": finetune}}
    save_student(student, folder / "model", ex.tokenizer, meta)
    reloaded, _ = load_student(folder / "model", with_tokenizer=False)
    artifacts: list[dict[str, Any]] = [{"kind": "hf", "path": str(folder / "model"),
                                        "max_abs_diff": _compare_students(reloaded, student),
                                        "checked": "reloaded with pipeline.hf.load_student"}]
    shapes = [(p.batch, seq), (2, 37)]
    inputs = example_inputs(p.batch, seq, target.arch.vocab_size)
    onnx = export_onnx(student, inputs, folder / "model.onnx")
    artifacts.append({"kind": "onnx", "path": str(onnx), "max_abs_diff": check_onnx(onnx, student, shapes, "fp32"),
                      "checked": f"onnxruntime cpu at (batch, seq) {shapes}"})
    opt = optimize_onnx(onnx, folder / "model.opt.onnx")
    artifacts.append({"kind": "onnx-optimized", "path": str(opt),
                      "max_abs_diff": check_onnx(opt, student, shapes, "fp32"),
                      "checked": f"onnxruntime cpu at (batch, seq) {shapes}"})
    if ex.cfg.int8:
        q = quantize_int8(onnx, folder / "model.int8.onnx")
        artifacts.append({"kind": "onnx-int8", "path": str(q), "max_abs_diff": check_onnx(q, student, shapes, "int8"),
                          "checked": f"onnxruntime cpu at (batch, seq) {shapes}, int8 tolerance"})
    device_dir = folder / "device"
    deployed = {"onnxruntime": opt, "plain": onnx}.get(backend.onnx)
    with backend.load(student, inputs, device_dir, what=f"student {target.name}", onnx_path=deployed) as runner:
        engine = device_dir / "model.engine"
        artifacts.append({"kind": f"device:{backend.name}", "path": str(engine if engine.exists() else opt),
                          "max_abs_diff": runner.max_abs_diff,
                          "checked": f"{backend.name} ({p.precision}) at batch {p.batch}, seq {seq}"})
    record = {
        "name": target.name, "key": key, "format": FORMAT, "device": p.name, "arch": target.arch.to_dict(),
        "describe": target.arch.describe(), "params": count_params(target.arch),
        "flops": count_flops(target.arch, seq, p.batch), "search": target.search, "finetune": finetune,
        "embedding_fit_mse": ex.embed_loss, "artifacts": artifacts,
        "onnx_path": str(opt), "onnx_plain_path": str(onnx), "model_dir": str(folder / "model"),
    }
    write_json_atomic(folder / EXPORT, record)
    worst = max(a["max_abs_diff"] for a in artifacts if a["kind"] != "onnx-int8")
    log(f"exported {target.name} ({target.arch.describe()}): {len(artifacts)} artifacts, fp32 max |diff| {worst:.2g}"
        + (f", fine-tuned {finetune['steps']} steps (loss {finetune['loss_first']:.4f} -> {finetune['loss_last']:.4f})"
           if finetune["steps"] else ""))
    return record


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
    trained = TrainedSupernet(train_dir)
    if not targets:
        raise PipelineError("nothing to export: no architectures given")
    cached: list[Exporter] = []

    def exporter() -> Exporter:  # the teacher and corpus load only if something needs exporting
        if not cached:
            cached.append(Exporter(trained, cfg, progress, log))
        return cached[0]

    records = []
    done: dict[str, dict[str, Any]] = {}  # arch key -> its record: budgets that pick one student export it once
    for target in targets:
        if target.arch.key in done:
            first = done[target.arch.key]
            log(f"{target.name} is the same architecture as {first['name']}: sharing its artifacts")
            record = {**first, "name": target.name, "search": target.search, "same_as": first["name"]}
            write_json_atomic(out / target.name / EXPORT, record)
            records.append(record)
            continue
        key = _key(target, trained, cfg, backend)
        old = None if force else _reusable(out / target.name, key)
        if old is not None:
            log(f"reusing {out / target.name} (same architecture, supernet and settings; --force re-exports)")
            records.append(old)
        else:
            records.append(export_one(target, exporter, backend, out, key, log))
        done[target.arch.key] = records[-1]
    write_json_atomic(out / EXPORT, {"device": backend.profile.name, "train_dir": str(train_dir),
                                     "config": asdict(cfg), "models": records})
    return records
