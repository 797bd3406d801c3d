"""What every model of the report keeps of the teacher, computed by the artifact that is deployed.

Two sources of text, neither ever read by training or search:
- the corpus's test split: chunks of the training domain, no padding;
- out of domain (texts.news_sentences): short sentences of another source, tokenised and padded in
  batches of `OOD_BATCH` as users send them.
On each: fidelity_cosine, similarity_spearman, neighbour_recall_at_10 (quality.py) against the
teacher's own sentence embeddings (PyTorch fp32, mean-pooled over real tokens, normalised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.benchmark.quality import embedding_quality, sentence_embeddings
from pipeline.finetune.distill import fidelity
from pipeline.onnxio import ort_session

OOD_TEXTS = 1500  # sentences: neighbours among 1,500 texts are a search, not a coin toss
OOD_BATCH = 32    # texts per padded batch, a typical encode() batch


@dataclass
class Model:
    name: str
    kind: str                         # teacher | searched | narrow | pkd | peer (int8 files: precision)
    module: nn.Module | None          # the fp32 PyTorch original every artifact is checked against
    onnx_path: Path | None = None     # the deployed file, for backends that run ONNX
    precision: str | None = None      # "int8" for a quantised file (scored, not held to fp32 tolerance)
    info: dict[str, Any] = field(default_factory=dict)  # budget, prediction, params, FLOPs, ...
    peer: Any = None                  # the model2vec StaticModel of the peer (peer.py), else None


class Outputs:
    """Final states [B, S, T] of a model's deployed artifact (its ONNX file where there is one)."""

    def __init__(self, m: Model):
        self.run = ort_session(m.onnx_path) if m.onnx_path is not None else None
        self.module = m.module

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.run is not None:
            return torch.from_numpy(self.run({"input_ids": ids, "attention_mask": mask})).float()
        return self.module.eval()(ids, mask).float()


@dataclass
class EvalTexts:
    """The two sources, tokenised, with the teacher's reference embeddings."""

    test: torch.Tensor                       # [N, S] chunks of the test split
    test_texts: list[str]                    # the same chunks as text (for the peer's own tokenizer)
    ood: list[str]                           # out-of-domain sentences
    ood_batches: list[tuple[torch.Tensor, torch.Tensor]]  # (ids [b, s], mask [b, s]) per padded batch
    ref_states: torch.Tensor                 # teacher's states on the test split [N, S, T]
    ref_test: torch.Tensor                   # teacher's sentence embeddings [N, T]
    ref_ood: torch.Tensor                    # [M, T]

    @classmethod
    def make(cls, teacher: nn.Module, tokenizer, test: torch.Tensor, ood: list[str]) -> EvalTexts:
        """teacher: (ids, mask) -> states [B, S, T] (model.teacher.Encoder)."""
        batches = []
        for i in range(0, len(ood), OOD_BATCH):
            enc = tokenizer(ood[i:i + OOD_BATCH], padding=True, truncation=True, max_length=test.shape[1],
                            return_tensors="pt")
            batches.append((enc["input_ids"], enc["attention_mask"]))
        ref = Model("teacher", "teacher", teacher)
        states = _chunk_states(Outputs(ref), test)
        texts = tokenizer.batch_decode(test[:, 1:-1])  # without [CLS] and [SEP]
        return cls(test, texts, ood, batches, states, sentence_embeddings(states), _ood_embeddings(Outputs(ref),
                                                                                                   batches))

    @property
    def ood_words(self) -> float:
        return sum(len(s.split()) for s in self.ood) / max(1, len(self.ood))


def _chunk_states(out: Outputs, ids: torch.Tensor, batch: int = 16) -> torch.Tensor:
    return torch.cat([out(b, torch.ones_like(b)) for b in ids.split(batch)])     # [N, S, T]


def _ood_embeddings(out: Outputs, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    return torch.cat([sentence_embeddings(out(ids, mask), mask) for ids, mask in batches])  # [M, T]


def evaluate(m: Model, texts: EvalTexts) -> dict[str, Any]:
    """The report's quality fields of one model: held out (no prefix) and out of domain (ood_)."""
    if m.peer is not None:
        from pipeline.benchmark.peer import peer_embeddings

        held = embedding_quality(peer_embeddings(m.peer, texts.test_texts), texts.ref_test)
        held.update(fidelity_token_cosine=None, fidelity_sentence_min=None)  # no token states
        ood = embedding_quality(peer_embeddings(m.peer, texts.ood), texts.ref_ood)
    else:
        out = Outputs(m)
        states = _chunk_states(out, texts.test)
        fid = fidelity(states, texts.ref_states)
        held = embedding_quality(sentence_embeddings(states), texts.ref_test)
        held.update(fidelity_cosine=fid["sentence"], fidelity_token_cosine=fid["token"],
                    fidelity_sentence_min=fid["sentence_min"])
        ood = embedding_quality(_ood_embeddings(out, texts.ood_batches), texts.ref_ood)
    return {**held, **{f"ood_{k}": v for k, v in ood.items()}}
