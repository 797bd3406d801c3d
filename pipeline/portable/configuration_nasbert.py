"""The Hugging Face configuration of a student folder (config.json as save_student writes it).

Copied verbatim into every student folder (see pipeline/portable/__init__.py): transformers only.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig  # PreTrainedConfig in transformers 5, this alias in 4 and 5

MODEL_TYPE = "nasbert-student"


class NasBertStudentConfig(PretrainedConfig):
    """`architecture` is the architecture JSON; the other fields are what tools read of a BERT-like
    encoder (hidden_size: of the output states, the teacher's)."""

    model_type = MODEL_TYPE

    def __init__(self, architecture: dict[str, Any] | None = None, hidden_size: int | None = None,
                 vocab_size: int | None = None, max_position_embeddings: int | None = None, **kwargs: Any):
        self.architecture = architecture
        arch = architecture or {}
        self.hidden_size = hidden_size if hidden_size is not None else arch.get("teacher_hidden")
        self.vocab_size = vocab_size if vocab_size is not None else arch.get("vocab_size")
        self.max_position_embeddings = (max_position_embeddings if max_position_embeddings is not None
                                        else arch.get("max_positions"))
        super().__init__(**kwargs)
