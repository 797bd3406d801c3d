"""Encoders with a task head: (input_ids, attention_mask) [B, S] -> logits [B, C].

The head reads the mean of the encoder's final states over the real tokens (the pooling of the
default teacher's sentence-transformers modules, so a student starts from the embedding it was
distilled to produce), through dropout and one linear layer. `features` also returns the [CLS]
states (or, `pool="mean"`, the mean states; `pool="tokens"`, every token's) of the encoder's intermediate
layers, for PKD's patient term:
- a searched or narrow student (`Student`): its block outputs (each block is a run of teacher
  layers, so block boundaries are its natural intermediate layers), each projected from the
  block's width H_i to the teacher's (a linear map that only training uses, as TinyBERT's);
- a BERT (the teacher, or the teacher's first k layers: PKD's own student): its layer outputs.
`forward` is what is exported and deployed; the projections are not part of it.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.student import Student
from pipeline.model.teacher import NO_REMOTE_CODE

DROPOUT = 0.1  # BERT's classifier dropout


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """states [B, S, T], mask [B, S] -> [B, T] mean over the real tokens."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1)


POOLS = ("cls", "mean", "tokens")


def pool_states(states: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
    """states [B, S, H], mask [B, S] -> [B, H]: the [CLS] state (PKD's) or the mean over the real tokens;
    or (tokens) every token's state, [B, S, H] as it is."""
    if pool == "cls":
        return states[:, 0]
    if pool == "mean":
        return mean_pool(states, mask)
    if pool == "tokens":
        return states
    raise ValueError(f"unknown pooling {pool!r}; use cls, mean or tokens")


class TaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, hidden: int, outputs: int, teacher_hidden: int | None = None):
        """encoder: a Student, or a Hugging Face BERT (BertModel). hidden: width of its final states."""
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(DROPOUT)
        self.head = nn.Linear(hidden, outputs)
        self.is_student = isinstance(encoder, Student)
        self.projections = nn.ModuleList()
        if self.is_student:
            widths = [b.hidden for b in encoder.arch.blocks[:-1]]
            self.projections = nn.ModuleList(nn.Linear(h, teacher_hidden or hidden) for h in widths)

    @property
    def intermediate_layers(self) -> int:
        """How many layers `features` returns states of (all but the last)."""
        if self.is_student:
            return len(self.encoder.arch.blocks) - 1
        return self.encoder.config.num_hidden_layers - 1

    def _states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, list]:
        if self.is_student:
            outs = self.encoder.block_outputs(input_ids, attention_mask)  # blocks 1..n, then the final states
            return outs[-1], outs[:-2]
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.last_hidden_state, list(out.hidden_states[1:-1])  # [0] is the embeddings' output

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.is_student:
            final = self.encoder(input_ids, attention_mask)
        else:
            final = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(self.dropout(mean_pool(final, attention_mask)))    # [B, C]

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: list[int] | None = None,
                 pool: str = "cls") -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits [B, C], pooled states [B, T] ([B, S, T] for tokens) of the given 1-based intermediate
        layers, default all)."""
        final, inner = self._states(input_ids, attention_mask)
        logits = self.head(self.dropout(mean_pool(final, attention_mask)))
        layers = layers if layers is not None else list(range(1, len(inner) + 1))
        pooled = []
        for k in layers:
            state = pool_states(inner[k - 1], attention_mask, pool)            # [B, H_k]
            # the projection is linear: projecting the mean is the mean of the projected states
            pooled.append(self.projections[k - 1](state) if self.is_student else state)
        return logits, pooled


def student_task_model(student: Student, outputs: int, dropout: float = 0.0) -> TaskModel:
    """The student with a head; `dropout` inside its layers while it trains (export runs in eval mode)."""
    for m in student.modules():
        if isinstance(m, nn.Dropout):
            m.p = dropout
    return TaskModel(student, student.arch.teacher_hidden, outputs, student.arch.teacher_hidden)


def bert_task_model(bert, outputs: int) -> TaskModel:
    """bert: a transformers BertModel (the teacher, or its first k layers)."""
    return TaskModel(bert, bert.config.hidden_size, outputs)


class HeadedTeacher(nn.Module):
    """A teacher that has a head for the task already (BertForSequenceClassification), used as trained:
    its pooler and classifier on [CLS]; `features` as TaskModel's."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.encoder = model.bert

    @property
    def intermediate_layers(self) -> int:
        return self.encoder.config.num_hidden_layers - 1

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: list[int] | None = None,
                 pool: str = "cls") -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        inner = out.hidden_states[1:-1]
        layers = layers if layers is not None else list(range(1, len(inner) + 1))
        return out.logits, [pool_states(inner[k - 1], attention_mask, pool) for k in layers]


def headed_teacher(name: str, classes: list[str] | None, outputs: int) -> tuple[HeadedTeacher | None, str]:
    """The teacher as a classifier of this task if its folder has a sequence-classification head with as
    many outputs (its classes reordered to the task's where its label names are the task's); else
    (None, why not)."""
    from transformers import AutoConfig, BertForSequenceClassification

    config = AutoConfig.from_pretrained(name, **NO_REMOTE_CODE)
    if not any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])):
        return None, "it has no sequence-classification head"
    if config.num_labels != outputs:
        return None, f"its head has {config.num_labels} outputs, the task {outputs}"
    model = BertForSequenceClassification.from_pretrained(name, **NO_REMOTE_CODE).eval()
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    if classes and sorted(names) == sorted(classes) and names != classes:
        order = [names.index(c) for c in classes]              # row i of the head: the task's class i
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight[order])
            model.classifier.bias.copy_(model.classifier.bias[order])
        return HeadedTeacher(model), "its head's classes reordered to the task's"
    return HeadedTeacher(model), "its head's outputs taken in the task's class order"
