"""The trained supernet as the later stages see it: pools, weights, and chained students.

Reads what `train` wrote (OUT/train_summary.json, OUT/block_N/supernet.pt). A chained student is
the blocks of an architecture, each extracted from its supernet block, fed one into the next:
teacher embedding output Y[0] -> block 1 -> ... -> block N, compared with the teacher's Y[N]. Its
validation loss is the search's re-ranking signal (block losses alone ignore how errors compound).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.artifacts import short_hash
from pipeline.errors import PipelineError
from pipeline.space import Architecture, Frame
from pipeline.train.supernet import SuperBlock

SUMMARY = "train_summary.json"  # what `train` writes into its folder: pools, space, corpus, config


class Chain(nn.Module):
    """Standalone blocks in sequence: x [B, S, teacher_hidden], attention_mask [B, S] -> [B, S, teacher_hidden]."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, attention_mask)
        return x


class TrainedSupernet:
    def __init__(self, train_dir: str | Path):
        self.dir = Path(train_dir)
        path = self.dir / SUMMARY
        if not path.is_file():
            raise PipelineError(f"no trained supernet in {self.dir} ({SUMMARY} is missing); run `train` first")
        try:
            self.summary: dict[str, Any] = json.loads(path.read_text())
            space = self.summary["space"]
            self.frame = Frame(space["teacher_hidden"], space["embed_dim"], space["vocab_size"],
                               space["max_positions"])
            self.hidden_sizes = tuple(space["hidden_sizes"])
            self.layers_per_block = int(space["layers_per_block"])
            self.num_blocks = int(space["num_blocks"])
            self.teacher_shapes = (tuple(space.get("teacher_attention", ())), tuple(space.get("teacher_ffn", ())))
            blocks = sorted(self.summary["blocks"], key=lambda b: b["block"])
            self.pools = [b["pool"] for b in blocks]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise PipelineError(f"{path} is corrupt or from an older version ({type(e).__name__}: {e}); "
                                "train again with --force") from None
        if self.summary.get("missing_blocks"):
            raise PipelineError(f"blocks {self.summary['missing_blocks']} of {self.dir} are not trained yet; "
                                "run `train` for them (--block N) first")
        self._blocks: dict[int, SuperBlock] = {}

    @property
    def content_hash(self) -> str:
        """What the trained supernet is, without when it was written: keys the later stages' reuse."""
        return short_hash({k: v for k, v in self.summary.items() if k != "written"})

    @property
    def teacher(self) -> str:
        """Where the teacher was loaded from (a folder or a Hugging Face id)."""
        return self.summary["teacher"]

    # The teacher, its tokenizer and the corpus that trained the supernet, loaded once for every later
    # stage that needs them (search's re-rankers and read-out caps, export, benchmark).
    @cached_property
    def teacher_model(self):  # -> transformers.BertModel, in eval mode, on the CPU
        from pipeline.model.teacher import load_teacher

        return load_teacher(self.teacher)

    @cached_property
    def tokenizer(self):  # -> transformers.PreTrainedTokenizerBase
        from pipeline.model.teacher import load_tokenizer

        return load_tokenizer(self.teacher)

    @cached_property
    def corpus(self):  # -> pipeline.model.corpus.Corpus
        from pipeline.model.corpus import load_corpus

        c = self.summary["corpus"]
        return load_corpus(self.tokenizer, self.seq_len, c.get("corpus"), c.get("dataset"))

    @property
    def seq_len(self) -> int:
        return int(self.summary["config"]["seq_len"])

    def supernet_block(self, n: int) -> SuperBlock:
        """Block n (1-based) with its trained weights, in eval mode, on the CPU."""
        if n not in self._blocks:
            path = self.dir / f"block_{n}" / "supernet.pt"
            block = SuperBlock(self.frame.teacher_hidden, self.hidden_sizes, self.layers_per_block, 0.0,
                               *self.teacher_shapes)
            try:
                block.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
            except FileNotFoundError:
                raise PipelineError(f"{path} is missing; train block {n} again (--block {n} --force)") from None
            except Exception as e:
                raise PipelineError(f"{path} is corrupt ({type(e).__name__}); train block {n} again "
                                    f"(--block {n} --force)") from None
            self._blocks[n] = block.eval()
        return self._blocks[n]

    def chain(self, arch: Architecture) -> Chain:
        """The architecture's blocks extracted from the supernet, chained (weights copied)."""
        if len(arch.blocks) != self.num_blocks:
            raise PipelineError(f"architecture has {len(arch.blocks)} blocks, the supernet {self.num_blocks}")
        nets = []
        for n, block in enumerate(arch.blocks, 1):
            sb = self.supernet_block(n)
            sb.set(block)
            nets.append(sb.get())
        return Chain(nets).eval()
