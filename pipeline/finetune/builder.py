"""Build a student from the trained supernet, the way search, export and benchmark all do.

Assembled from the supernet's blocks (assemble.py), its factorised embeddings fitted to the
teacher's, and optionally finished by end-to-end distillation (distill.py) on the teacher's final
states of the training text (and of augmented views of it, for long schedules) and of short spans of
it (spans.py). A builder loads the teacher, the corpus and the targets once and builds any number of
students from them; `distil` finishes any module the same way (the benchmark's baselines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pipeline.finetune.distill import DistillConfig, distill
from pipeline.finetune.spans import SpanSampler
from pipeline.model.student import Student
from pipeline.space import Architecture
from pipeline.train.trained import TrainedSupernet

MIN_DISTILL_CHUNKS = 8192  # chunks that fine-tuning draws from even when its steps would read fewer (variety)


@dataclass(frozen=True)
class BuildConfig:
    finetune: DistillConfig = field(default_factory=DistillConfig)  # end-to-end steps after assembly
    embed_steps: int = 300        # fitting the factorised embeddings to the teacher's: a small regression of
                                  # one matrix, cheap next to the students' fine-tuning
    seed: int = 0


class StudentBuilder:
    """What every architecture of one export shares: teacher, corpus, fitted embeddings, targets."""

    def __init__(self, trained: TrainedSupernet, cfg: BuildConfig, progress: bool = False,
                 log: Callable[[str], None] = print):
        from pipeline.finetune.assemble import fitted_embedding
        from pipeline.model.augment import text_views, views_for
        from pipeline.model.teacher import cached_teacher_states, chunks_for_states, max_state_chunks, sample_chunks

        self.trained, self.cfg, self.progress = trained, cfg, progress
        self.tokenizer, self.data, teacher = trained.tokenizer, trained.corpus, trained.teacher_model
        torch.manual_seed(cfg.seed)
        self.embedding, self.embed_loss = fitted_embedding(teacher, trained.frame.embed_dim, self.data.train,
                                                           cfg.embed_steps, cfg.seed, progress)
        log(f"fitted the factorised embeddings (E={trained.frame.embed_dim}) to the teacher's: "
            f"MSE {self.embed_loss:.4f} after {cfg.embed_steps} steps")
        self.targets, self.train_ids, self.views, self.spans = None, self.data.train, 0, None
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
            if ft.span_rows:
                from pipeline.model.teacher import Encoder, weights_hash

                tok = self.tokenizer
                pad = tok.pad_token_id if tok.pad_token_id is not None else 0
                # Spans of the whole training split, their teacher states cached in blocks of steps (labels.py)
                # and shared by every model distilled from this builder or another with the same teacher.
                self.spans = SpanSampler(self.data.train, Encoder(teacher), tok.cls_token_id, tok.sep_token_id, pad,
                                         ft.span_tokens, teacher_key=weights_hash(teacher))

    def student(self, arch: Architecture, name: str) -> tuple[Student, dict[str, Any]]:
        from pipeline.finetune.assemble import assemble

        student = assemble(arch, self.trained, self.embedding)
        return student.eval(), self.distil(student, f"finetune {name}")

    def distil(self, module: torch.nn.Module, desc: str) -> dict[str, Any]:
        """Fine-tune module (input_ids, attention_mask) -> [B, S, T] as every student is; its record."""
        if self.targets is None:
            return {"steps": 0}
        module.train()
        record = distill(module, self.train_ids, self.targets, self.cfg.finetune, desc=desc, progress=self.progress,
                         spans=self.spans)
        module.eval()
        return {**record, "views": self.views, "chunks": int(self.train_ids.shape[0])}
