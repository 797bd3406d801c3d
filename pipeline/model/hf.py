"""A student as a Hugging Face-style folder: config.json, model.safetensors, tokenizer files.

    from pipeline.model.hf import load_student
    model, tokenizer = load_student("runs/cpu/export/arch_3ms/model")
    batch = tokenizer(["a sentence"], return_tensors="pt")
    states = model(batch["input_ids"], batch["attention_mask"])   # [B, S, teacher_hidden]

The model is a plain torch module (pipeline.model.student.Student), trainable as it is, so downstream
fine-tuning puts a head on its output states exactly as on the teacher's `last_hidden_state`.
config.json holds the architecture JSON plus where the student came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from pipeline.artifacts import write_atomic, write_json_atomic
from pipeline.errors import PipelineError
from pipeline.model.student import Student
from pipeline.space import architecture_from_dict

MODEL_TYPE = "nasbert-student"
WEIGHTS = "model.safetensors"


def save_student(student: Student, folder: str | Path, tokenizer=None, meta: dict[str, Any] | None = None) -> Path:
    """Write the folder (each file atomically); tokenizer is a transformers tokenizer or None."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in student.state_dict().items()}
    write_atomic(folder / WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    config = {
        "model_type": MODEL_TYPE,
        "architectures": ["pipeline.model.student.Student"],
        "loader": "pipeline.model.hf.load_student",
        "torch_dtype": "float32",
        "hidden_size": student.arch.teacher_hidden,  # of the output states, as the teacher's
        "vocab_size": student.arch.vocab_size,
        "max_position_embeddings": student.arch.max_positions,
        "architecture": student.arch.to_dict(),
        **(meta or {}),
    }
    write_json_atomic(folder / "config.json", config)
    return folder


def load_student(folder: str | Path, with_tokenizer: bool = True) -> tuple[Student, Any]:
    """(Student in eval mode, tokenizer or None) from a folder written by save_student."""
    folder = Path(folder)
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{folder} is not a student folder ({path.name} is missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PipelineError(f"{path} is corrupt (not JSON)") from None
    if config.get("model_type") != MODEL_TYPE:
        raise PipelineError(f"{folder} holds a {config.get('model_type')!r} model, not a {MODEL_TYPE}")
    student = Student(architecture_from_dict(config["architecture"], where=f"{path}"), dropout=0.0)
    try:
        state = load_file(str(folder / WEIGHTS))
    except FileNotFoundError:
        raise PipelineError(f"{folder / WEIGHTS} is missing") from None
    except Exception as e:
        raise PipelineError(f"{folder / WEIGHTS} is corrupt ({type(e).__name__})") from None
    try:
        student.load_state_dict(state)
    except RuntimeError as e:
        raise PipelineError(f"{folder / WEIGHTS} does not fit its config: {str(e).splitlines()[0]}") from None
    tokenizer = None
    if with_tokenizer and (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return student.eval(), tokenizer

