"""The op vocabulary of the search space: op names and the shapes they imply.

It lives here rather than in pipeline.space (which re-exports it) because the network code that a
student folder carries needs it too and must not import the pipeline package.
"""

from __future__ import annotations

OPS = ("mha", "ffn", "sepconv3", "sepconv5", "sepconv7", "identity")
HEAD_DIM = 64  # MHA uses H/64 heads of size 64
CONV_KERNELS = {"sepconv3": 3, "sepconv5": 5, "sepconv7": 7}


def num_heads(hidden: int) -> int:
    """H/64 heads, never fewer than two."""
    return max(2, hidden // HEAD_DIM)
