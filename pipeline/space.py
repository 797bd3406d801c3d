"""The NAS-BERT search space, scaled to the teacher, and the architecture JSON every stage shares.

An architecture is `{"teacher_hidden", "embed_dim", "blocks": [{"hidden", "layers": [op, ...]}]}`
(plus optional `vocab_size`, `max_positions`). Identities are moved to the end of their block on
load: that canonical form removes duplicate paths and means the same network.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifacts import short_hash, write_json_atomic
from pipeline.errors import PipelineError

# The op names and kernels live with the network code that student folders carry (pipeline.portable).
from pipeline.portable.opset import OPS, is_teacher_op, op_shape, teacher_block

NAS_BERT_HIDDEN = (128, 192, 256, 384, 512)  # one hidden size per block, from the paper
BERT_VOCAB, BERT_MAX_POSITIONS = 30522, 512  # defaults when an architecture does not say
EMBED_DIM = 256  # the factorised embeddings' rank (SearchSpace.embed_dim says why), capped at the teacher's width


@dataclass(frozen=True)
class Block:
    hidden: int
    layers: tuple[str, ...]

    @property
    def attention(self) -> int:
        """How many attention layers (NAS-BERT's mha and the teacher's own, pruned)."""
        return sum(op_shape(op, self.hidden).kind == "mha" for op in self.layers)


@dataclass(frozen=True)
class Architecture:
    teacher_hidden: int
    embed_dim: int
    blocks: tuple[Block, ...]
    vocab_size: int = BERT_VOCAB
    max_positions: int = BERT_MAX_POSITIONS

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher_hidden": self.teacher_hidden,
            "embed_dim": self.embed_dim,
            "vocab_size": self.vocab_size,
            "max_positions": self.max_positions,
            "blocks": [{"hidden": b.hidden, "layers": list(b.layers)} for b in self.blocks],
        }

    @property
    def key(self) -> str:
        """Short content hash: names artifacts and calibration rows."""
        return short_hash(self.to_dict())

    @property
    def attention_layers(self) -> int:
        """How many MHA layers: what the search's block losses cannot see (search.py)."""
        return sum(b.attention for b in self.blocks)

    def describe(self) -> str:
        """One line: `384:mha,ffn | 192:sepconv3 | 128:-`."""
        return " | ".join(
            f"{b.hidden}:{','.join(op for op in b.layers if op != 'identity') or '-'}" for b in self.blocks
        )


def _positive_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise PipelineError(f"{where} must be a positive integer, got {value!r}")
    return value


def canonical_layers(layers: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Move identities to the end of a block (same network, one spelling). Not in a block that holds
    the teacher's own sub-layers: there a position says which teacher layer's weights it starts from
    (sub-layer p of a block that stands for teacher layers lo, lo+1, ... starts from layer lo + p // 2)."""
    if any(is_teacher_op(op) for op in layers):
        return tuple(layers)
    real = [op for op in layers if op != "identity"]
    return tuple(real + ["identity"] * (len(layers) - len(real)))


@dataclass(frozen=True)
class Frame:
    """The fixed parts of every student of the space: what the search combines blocks within."""

    teacher_hidden: int
    embed_dim: int
    vocab_size: int
    max_positions: int


def architecture_from_dict(d: Any, where: str = "architecture") -> Architecture:
    """Validate the JSON structure and op names; errors name the offending field."""
    if not isinstance(d, dict):
        raise PipelineError(f"{where}: expected a JSON object, got {type(d).__name__}")
    for key in ("teacher_hidden", "embed_dim", "blocks"):
        if key not in d:
            raise PipelineError(f"{where}: missing key '{key}'")
    unknown = sorted(set(d) - {"teacher_hidden", "embed_dim", "blocks", "vocab_size", "max_positions"})
    if unknown:
        raise PipelineError(f"{where}: unknown key(s) {', '.join(unknown)}")
    teacher_hidden = _positive_int(d["teacher_hidden"], f"{where}: teacher_hidden")
    embed_dim = _positive_int(d["embed_dim"], f"{where}: embed_dim")
    vocab = _positive_int(d.get("vocab_size", BERT_VOCAB), f"{where}: vocab_size")
    max_pos = _positive_int(d.get("max_positions", BERT_MAX_POSITIONS), f"{where}: max_positions")
    if not isinstance(d["blocks"], list) or not d["blocks"]:
        raise PipelineError(f"{where}: 'blocks' must be a non-empty list")
    blocks = []
    for i, b in enumerate(d["blocks"], 1):
        bw = f"{where}: block {i}"
        if not isinstance(b, dict) or set(b) != {"hidden", "layers"}:
            raise PipelineError(f"{bw} must be an object with exactly 'hidden' and 'layers'")
        hidden = _positive_int(b["hidden"], f"{bw} hidden")
        if hidden not in NAS_BERT_HIDDEN:
            raise PipelineError(f"{bw}: hidden size {hidden} is not in the space {list(NAS_BERT_HIDDEN)}")
        if hidden > teacher_hidden:
            raise PipelineError(f"{bw}: hidden size {hidden} is above the teacher's {teacher_hidden}")
        layers = b["layers"]
        if not isinstance(layers, list) or not layers:
            raise PipelineError(f"{bw}: 'layers' must be a non-empty list of op names")
        for op in layers:
            try:
                op_shape(op, hidden)
            except (ValueError, TypeError) as e:
                raise PipelineError(f"{bw}: {e}") from None
        blocks.append(Block(hidden, canonical_layers(layers)))
    return Architecture(teacher_hidden, embed_dim, tuple(blocks), vocab, max_pos)


def load_architecture(path: str | Path) -> Architecture:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"architecture file not found: {path}")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"architecture {path} is not valid JSON: {e}") from None
    return architecture_from_dict(d, where=f"architecture {path}")


def save_architecture(arch: Architecture, path: str | Path) -> Path:
    return write_json_atomic(path, arch.to_dict())


def teacher_layers_per_block(num_layers: int) -> int:
    """NAS-BERT splits BERT-base's 12 layers into 4 blocks of 3; smaller teachers use 2 per block."""
    if num_layers >= 12 and num_layers % 3 == 0:
        return 3
    return 2 if num_layers % 2 == 0 else 1


@dataclass(frozen=True)
class SearchSpace:
    teacher_hidden: int
    teacher_layers: int
    vocab_size: int = BERT_VOCAB
    max_positions: int = BERT_MAX_POSITIONS
    # Factorised embeddings (vocab x E, then E -> H1), as NAS-BERT's. Not NAS-BERT's 128: on MiniLM
    # rank 128 caps even the teacher's own layers at 0.88 spearman out of domain, rank 256 at 0.98
    # (benchmarks/embedding_rank.py); E only sizes the table and the first adapter, never a block.
    embed_dim: int = EMBED_DIM
    hidden_sizes: tuple[int, ...] = NAS_BERT_HIDDEN  # filtered to <= teacher_hidden in from_teacher
    # The teacher's own sub-layers, pruned (opset: att<h>x<d>, ffn<n>), at the teacher's width only:
    # attention ops at the even positions of a block, FFNs at the odd ones, as the teacher's layers
    # alternate. Empty: NAS-BERT's space alone. `teacher_shapes` gives the grid.
    teacher_attention: tuple[str, ...] = ()
    teacher_ffn: tuple[str, ...] = ()

    @classmethod
    def from_teacher(cls, hidden: int, layers: int, vocab_size: int = BERT_VOCAB,
                     max_positions: int = BERT_MAX_POSITIONS, embed_dim: int = EMBED_DIM,
                     heads: int | None = None, inner: int | None = None) -> SearchSpace:
        """NAS-BERT's space for this teacher; with its heads and FFN size, its pruned sub-layers too."""
        if layers < 1:  # no block to form: every student would be empty (an IndexError while sampling)
            raise PipelineError(f"the teacher has {layers} layers, so no block to search: give a BERT teacher with "
                                "at least 1 layer (num_hidden_layers in its config.json)")
        sizes = tuple(h for h in NAS_BERT_HIDDEN if h <= hidden)
        if not sizes:
            raise PipelineError(f"teacher hidden size {hidden} is below the smallest block size {NAS_BERT_HIDDEN[0]}")
        att, ffn = teacher_shapes(hidden, heads, inner) if heads and inner else ((), ())
        return cls(hidden, layers, vocab_size, max_positions, min(embed_dim, hidden), sizes, att, ffn)

    @property
    def teacher_ops(self) -> tuple[str, ...]:
        return self.teacher_attention + self.teacher_ffn

    @property
    def num_blocks(self) -> int:
        return self.teacher_layers // teacher_layers_per_block(self.teacher_layers)

    @property
    def layers_per_block(self) -> int:
        return 2 * teacher_layers_per_block(self.teacher_layers)  # an MHA and an FFN sub-layer each

    def ops(self) -> list[tuple[str, int]]:
        """Every (op, hidden) candidate except identity: what a latency table must hold."""
        nas = [(op, h) for h in self.hidden_sizes for op in OPS if op != "identity"]
        return nas + [(op, self.teacher_hidden) for op in self.teacher_ops]

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(d_in, d_out) of every adapter a student can contain: embed->H, H->H', H->teacher."""
        shapes = {(self.embed_dim, h) for h in self.hidden_sizes}
        shapes |= {(a, b) for a in self.hidden_sizes for b in self.hidden_sizes}
        shapes |= {(h, self.teacher_hidden) for h in self.hidden_sizes}
        return sorted(shapes)

    def check(self, arch: Architecture) -> None:
        """Raise if `arch` is not a member of this space."""
        if arch.teacher_hidden != self.teacher_hidden:
            raise PipelineError(
                f"architecture is for teacher hidden {arch.teacher_hidden}, space has {self.teacher_hidden}"
            )
        if len(arch.blocks) != self.num_blocks:
            raise PipelineError(f"architecture has {len(arch.blocks)} blocks, space has {self.num_blocks}")
        for i, b in enumerate(arch.blocks, 1):
            if b.hidden not in self.hidden_sizes:
                raise PipelineError(f"block {i}: hidden size {b.hidden} is not in the space {list(self.hidden_sizes)}")
            if len(b.layers) != self.layers_per_block:
                raise PipelineError(f"block {i} has {len(b.layers)} layers, space has {self.layers_per_block}")
            for p, op in enumerate(b.layers):
                if not is_teacher_op(op):
                    continue
                allowed = self.teacher_attention if p % 2 == 0 else self.teacher_ffn
                if b.hidden != self.teacher_hidden or op not in allowed:
                    kind = "attention" if p % 2 == 0 else "FFN"
                    grid = ", ".join(allowed) or "none in this space"
                    raise PipelineError(f"block {i} layer {p + 1}: {op} is not one of the teacher's {kind} shapes "
                                        f"at width {self.teacher_hidden} ({grid})")

    def teacher_block(self, rng: random.Random) -> Block:
        """A random block of the teacher's own sub-layers: each position pruned to a shape of the grid or
        dropped (identity)."""
        return Block(self.teacher_hidden, tuple(
            rng.choice(("identity", *(self.teacher_attention if p % 2 == 0 else self.teacher_ffn)))
            for p in range(self.layers_per_block)))

    def sample(self, rng: random.Random) -> Architecture:
        """Uniform op per layer and hidden size per block (once-for-all's sample_active_subnet); where the
        space holds the teacher's shapes, half the blocks are drawn from them."""
        blocks = []
        for _ in range(self.num_blocks):
            if self.teacher_ops and rng.random() < 0.5:
                blocks.append(self.teacher_block(rng))
                continue
            blocks.append(Block(rng.choice(self.hidden_sizes),
                                canonical_layers([rng.choice(OPS) for _ in range(self.layers_per_block)])))
        return Architecture(self.teacher_hidden, self.embed_dim, tuple(blocks), self.vocab_size, self.max_positions)


SHAPE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of the teacher's heads and FFN neurons: DynaBERT's width multipliers


def teacher_shapes(hidden: int, heads: int, inner: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The grid of pruned teacher sub-layers: (attention ops, FFN ops) at SHAPE_FRACTIONS of the
    teacher's heads and neurons (at least one of each), e.g. MiniLM (12 heads of 32, 1536 neurons):
    att3x32 .. att12x32 and ffn384 .. ffn1536."""
    head_dim = hidden // heads
    hs = sorted({max(1, round(f * heads)) for f in SHAPE_FRACTIONS})
    ns = sorted({max(1, round(f * inner)) for f in SHAPE_FRACTIONS})
    return tuple(f"att{h}x{head_dim}" for h in hs), tuple(f"ffn{n}" for n in ns)


# ---- parameter and FLOP counts (analytic, so the search can score thousands of candidates) ----
# FLOPs are 2 x multiply-adds of matmuls and convolutions at one sequence; elementwise work is
# ignored (the convention of NAS-BERT and torch.utils.flop_counter).

def op_params(op: str, h: int) -> int:
    s, ln = op_shape(op, h), 2 * h
    if s.kind == "mha":
        inner = s.heads * s.head_dim
        return 4 * h * inner + 3 * inner + h + ln  # q,k,v (+bias), out (+bias), LN
    if s.kind == "ffn":
        return 2 * h * s.inner + s.inner + h + ln
    if s.kind == "sepconv":
        return h * s.kernel + h + h * h + h + ln  # depthwise (+bias), pointwise (+bias), LN
    return 0


def op_flops(op: str, h: int, seq: int) -> int:
    s = op_shape(op, h)
    if s.kind == "mha":
        inner = s.heads * s.head_dim
        return 2 * seq * h * 4 * inner + 2 * 2 * seq * seq * inner  # q,k,v,out projections; scores and mix
    if s.kind == "ffn":
        return 2 * 2 * seq * h * s.inner
    if s.kind == "sepconv":
        return 2 * seq * h * s.kernel + 2 * seq * h * h
    return 0


def linear_params(d_in: int, d_out: int) -> int:
    return d_in * d_out + d_out


def adapter_shapes(arch: Architecture) -> list[tuple[int, int]]:
    """(d_in, d_out) of the student's linears in order: embed -> H1, H_i -> H_i+1, H_last -> teacher; none
    between two blocks of the teacher's own layers nor after the last (opset.teacher_block)."""
    hs = [b.hidden for b in arch.blocks]
    own = [teacher_block(b.hidden, b.layers, arch.teacher_hidden) for b in arch.blocks]
    links = [(a, b) for a, b, ka, kb in zip(hs, hs[1:], own, own[1:], strict=False) if not (ka and kb)]
    return [(arch.embed_dim, hs[0]), *links, *([] if own[-1] else [(hs[-1], arch.teacher_hidden)])]


def count_params(arch: Architecture) -> int:
    emb = arch.vocab_size * arch.embed_dim + arch.max_positions * arch.embed_dim + 2 * arch.embed_dim
    ops = sum(op_params(op, b.hidden) for b in arch.blocks for op in b.layers)
    return emb + ops + sum(linear_params(a, b) for a, b in adapter_shapes(arch))


def count_flops(arch: Architecture, seq: int = 128, batch: int = 1) -> int:
    ops = sum(op_flops(op, b.hidden, seq) for b in arch.blocks for op in b.layers)
    return batch * (ops + sum(2 * seq * a * b for a, b in adapter_shapes(arch)))
