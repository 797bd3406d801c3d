"""The Hugging Face model of a student folder: what AutoModel (trust_remote_code=True) and
sentence-transformers build from it.

Copied verbatim into every student folder (see pipeline/portable/__init__.py): torch, transformers
and the flat relative imports only.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

# Every file of the folder is imported from here, not only through network: older transformers
# (5.3.0, tested) copy only the modeling file's own relative imports into their module cache and
# then fail on network's; newer ones follow the chain.
from .configuration_nasbert import NasBertStudentConfig
from .network import Spec, Student
from .ops import masks  # noqa: F401
from .opset import OPS  # noqa: F401


class NasBertStudentModel(PreTrainedModel):
    """forward(input_ids, attention_mask) -> BaseModelOutput(last_hidden_state [B, S, teacher_hidden])."""

    config_class = NasBertStudentConfig
    main_input_name = "input_ids"

    def __init__(self, config: NasBertStudentConfig):
        super().__init__(config)
        if not config.architecture:
            raise ValueError("the config has no 'architecture': not a folder written by save_student")
        net = Student(Spec.from_dict(config.architecture), dropout=0.0)
        # Adopt the network's children as this model's own, so that parameter names are exactly
        # Student.state_dict()'s: model.safetensors loads with no key mapping, and save_pretrained
        # writes what pipeline.model.hf.load_student reads.
        for name, child in net.named_children():
            self.add_module(name, child)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # torch's own initialisation, as a freshly built Student has; from_pretrained then loads every weight.
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, return_dict: bool | None = None,
                ) -> BaseModelOutput | tuple[torch.Tensor]:
        """token_type_ids are accepted (BERT tokenizers return them) and ignored: the student has no
        segment embeddings."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = Student.forward(self, input_ids, attention_mask)  # the same forward, over the adopted children
        if return_dict is False:
            return (states,)
        return BaseModelOutput(last_hidden_state=states)
