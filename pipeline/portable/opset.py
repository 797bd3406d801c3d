"""The op vocabulary of the search space: op names and the shapes they imply.

NAS-BERT's ops (OPS) take their shapes from the block's hidden size. The teacher's own sub-layers,
pruned, name their shapes themselves, so that an architecture JSON says what it holds:
- `att{h}x{d}`: attention with h heads of size d (the teacher's head size: `att6x32` is 6 of MiniLM's
  12 heads of 32), projections hidden -> h*d -> hidden;
- `ffn{n}`: the feed-forward with n inner neurons (`ffn768`: half of MiniLM's 1536).
It lives here rather than in pipeline.space (which re-exports it) because the network code that a
student folder carries needs it too and must not import the pipeline package.
"""

from __future__ import annotations

import re
from typing import NamedTuple

OPS = ("mha", "ffn", "sepconv3", "sepconv5", "sepconv7", "identity")
HEAD_DIM = 64  # MHA uses H/64 heads of size 64
CONV_KERNELS = {"sepconv3": 3, "sepconv5": 5, "sepconv7": 7}


def num_heads(hidden: int) -> int:
    """H/64 heads, never fewer than two."""
    return max(2, hidden // HEAD_DIM)


_TEACHER_OP = re.compile(r"^(?:att(\d+)x(\d+)|ffn(\d+))$")


class OpShape(NamedTuple):
    kind: str            # mha | ffn | sepconv | identity
    heads: int = 0       # attention: heads and their size
    head_dim: int = 0
    inner: int = 0       # ffn: inner neurons
    kernel: int = 0      # sepconv: kernel size


def op_shape(op: str, hidden: int) -> OpShape:
    """What an op computes at a block of width `hidden`; ValueError for a name that is not an op."""
    if op == "mha":
        return OpShape("mha", num_heads(hidden), hidden // num_heads(hidden))
    if op == "ffn":
        return OpShape("ffn", inner=4 * hidden)
    if op in CONV_KERNELS:
        return OpShape("sepconv", kernel=CONV_KERNELS[op])
    if op == "identity":
        return OpShape("identity")
    m = _TEACHER_OP.match(op)
    if m is None or any(g is not None and int(g) == 0 for g in m.groups()):
        raise ValueError(f"unknown op {op!r}; ops are {', '.join(OPS)}, att<heads>x<size> and ffn<neurons>")
    if m.group(3) is not None:
        return OpShape("ffn", inner=int(m.group(3)))
    return OpShape("mha", int(m.group(1)), int(m.group(2)))


def is_teacher_op(op: str) -> bool:
    """A pruned teacher sub-layer (att<h>x<d>, ffn<n>) rather than one of NAS-BERT's ops."""
    return op not in OPS and _TEACHER_OP.match(op) is not None


def teacher_block(hidden: int, layers: tuple[str, ...] | list[str], teacher_hidden: int) -> bool:
    """A block of the teacher's own sub-layers (pruned or dropped) at its width: it reads and writes the
    teacher's hidden states as they are, so no adapter stands before it when another such block (or
    nothing) precedes it, nor after it when it is the last (network.Student)."""
    return (hidden == teacher_hidden and any(is_teacher_op(op) for op in layers)
            and all(op == "identity" or is_teacher_op(op) for op in layers))
