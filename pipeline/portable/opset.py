"""The op vocabulary of the search space: op names and the shapes they imply.

It lives here rather than in pipeline.space (which re-exports it) because the network code that a
student folder carries needs it too and must not import the pipeline package.
"""

from __future__ import annotations

OPS = ("mha", "ffn", "sepconv3", "sepconv5", "sepconv7", "identity")
# NAS-BERT's heads are 64 wide; a space follows its teacher's head size instead where that divides
# every block width (MiniLM: 32), so that the teacher's attention fits a path exactly (train/inherit.py).
HEAD_DIM = 64
CONV_KERNELS = {"sepconv3": 3, "sepconv5": 5, "sepconv7": 7}


def num_heads(hidden: int, head_dim: int = HEAD_DIM) -> int:
    """H/head_dim heads, never fewer than two."""
    return max(2, hidden // head_dim)
