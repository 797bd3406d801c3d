"""What a user makes by hand in five minutes, built for the report beside the searched students.

- PKD's students: the teacher's first k layers, at every depth k = 1 .. L-1, distilled with the same
  steps and recipe as the searched students (finetune/builder.py), cached by content: a second report,
  or a second run on the same teacher and corpus, loads them instead of distilling again.
- The narrowed BERT matched to each searched student's predicted latency (baselines.py).
- int8 of any model that runs on ONNX Runtime: ONNX Runtime's dynamic quantisation of its graph
  (onnxio.quantize_int8), what optimum's quantizer does.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pipeline.artifacts import disk_cached
from pipeline.benchmark import baselines as bl
from pipeline.benchmark.evaluate import Model
from pipeline.finetune.builder import StudentBuilder
from pipeline.model.teacher import Encoder, chunks_hash, weights_hash
from pipeline.onnxio import Int8Settings, export_onnx, optimize_onnx, quantize_int8

PKD_FORMAT = 1  # bump when a cached PKD student would no longer be what the recipe makes


def int8_of(m: Model, source: Path, dst: Path, settings: Int8Settings) -> Model:
    """m as `name-int8`: its ONNX graph `source` quantised into dst, scored and timed like any model."""
    q = quantize_int8(source, dst, settings)
    info = {**m.info, "predicted_ms": None, "onnx_path": str(q), "int8": settings.describe()}
    return Model(f"{m.name}-int8", m.kind, m.module, q, "int8", info=info)



def pkd_key(ex: StudentBuilder, teacher, k: int) -> dict[str, Any]:
    """Everything a distilled PKD student depends on: the teacher, k, the text and targets it reads, the recipe."""
    spans = chunks_hash(ex.data.train) if ex.spans is not None else None  # spans are drawn from the whole split
    return {"format": PKD_FORMAT, "teacher": weights_hash(teacher), "layers": k, "finetune": asdict(ex.cfg.finetune),
            "seed": ex.cfg.seed, "reads": chunks_hash(ex.train_ids), "spans": spans}


def pkd_student(ex: StudentBuilder, teacher, k: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The teacher's first k layers (an Encoder), distilled as the searched students are; cached by content."""
    module = bl.build_pkd(teacher, k)
    if ex.targets is None:  # no fine-tuning steps: the truncated teacher as it is
        return module, {"steps": 0}
    record: dict[str, Any] = {}

    def distil() -> dict[str, Any]:
        record.update(ex.distil(module, f"distil pkd_{k}"))
        return {"state": {n: t.detach().clone() for n, t in module.state_dict().items()},
                "record": {n: v for n, v in record.items() if isinstance(v, (int, float, str))}}

    entry = disk_cached("pkd-student", pkd_key(ex, teacher, k), distil,
                        valid=lambda e: isinstance(e, dict) and "state" in e and "record" in e)
    if not record:
        module.load_state_dict(entry["state"])
        record = {**entry["record"], "reused": True}
    return module.eval(), record


def onnx_files(module: torch.nn.Module, inputs: dict[str, torch.Tensor], folder: Path, onnx: str | None
               ) -> tuple[Path | None, Path | None]:
    """(the file the device runs, the plain export) of a baseline, for a backend that runs ONNX."""
    if onnx is None:
        return None, None
    plain = export_onnx(module, inputs, folder / "model.onnx")
    return (optimize_onnx(plain, folder / "model.opt.onnx") if onnx == "onnxruntime" else plain), plain


def pkd_info(module: torch.nn.Module, teacher_layers: int, k: int, seq: int, batch: int) -> dict[str, Any]:
    c = module.bert.config
    return {"arch": f"teacher's first {k} of {teacher_layers} layers ({c.hidden_size} wide)",
            "params": sum(p.numel() for p in module.parameters()),
            "flops": bl.teacher_flops(c.hidden_size, k, seq, batch), "predicted_ms": None}


def teacher_depths(teacher) -> list[int]:
    """PKD's depths: every k from 1 to one less than the teacher's."""
    return list(range(1, teacher.config.num_hidden_layers))


def save_pkd_folder(module: Encoder, tokenizer, folder: Path) -> Path:
    """The PKD student as a Hugging Face BERT folder (AutoModel, or SentenceTransformer with mean pooling)."""
    from pipeline.artifacts import write_folder_atomic

    def write(tmp: Path) -> None:
        module.bert.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return write_folder_atomic(folder, write, replace=True)
