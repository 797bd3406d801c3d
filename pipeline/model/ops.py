"""The candidate ops of the search space as torch modules (see pipeline.portable.ops).

The implementation lives in pipeline.portable, whose files every student folder carries, so that
the supernet, the profiler and an exported student all run one source; this name stays for the
stages that import the ops from the model layer.
"""

from pipeline.portable.ops import FeedForward, MultiHeadAttention, SepConv, Sublayer, make_op, masks

__all__ = ["FeedForward", "MultiHeadAttention", "SepConv", "Sublayer", "make_op", "masks"]
