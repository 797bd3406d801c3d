"""More text for long end-to-end distillation: views of the training chunks, labelled by the teacher.

A view cuts the training token stream at new chunk boundaries (shifted by a fraction of a chunk) and
replaces a share of its tokens by tokens drawn from the same text (its unigram distribution), as
TinyBERT's augmentation does with a simpler replacement rule. The teacher's states for every view are
computed once, like the plain chunks', so a step costs the same; only the text the student sees grows.

Why: the default corpus's training split is 3,324 chunks, and a long schedule reads each of them
dozens of times (6000 steps of 16: 29 times). The 3.5 ms student of `run --quick`, fine-tuned 6000
steps from the supernet, then fits the training text far better than held-out text: 0.921 sentence
cosine on training chunks against 0.857 on the test split (both began at 0.56-0.58). With 3 views at
15% replaced: 0.895 on training chunks and 0.864 on the test split (token cosine 0.831 against 0.824),
better than 10000 plain steps (0.861). Early in a schedule the views cost (2000 of those 6000 steps:
0.806 against 0.818), so they are only made for schedules that read every chunk at least
2 * READS_PER_VIEW times: not for run's default 2000 steps, 3 views from 6000.
"""

from __future__ import annotations

import torch

# One view per 6 passes over the text, less one: a schedule that reads the text fewer than 12 times does
# not overfit it and gets none, a long one gets several (views_for).
READS_PER_VIEW = 6


def views_for(reads: int, chunks: int, max_views: int, max_chunks: int) -> int:
    """How many views a schedule of `reads` chunk reads over `chunks` training chunks gets:
    passes // READS_PER_VIEW - 1 (none below 2 * READS_PER_VIEW passes), at most max_views, and never
    so many that the chunks and their views pass max_chunks (the memory for their teacher states)."""
    if chunks < 2:
        return 0
    passes = reads // chunks
    return max(0, min(max_views, passes // READS_PER_VIEW - 1, max_chunks // chunks - 1))


def text_views(ids: torch.Tensor, views: int, replace: float, seed: int) -> torch.Tensor:
    """chunks ids [N, S] ([CLS] body [SEP]) -> views * (N - 1) new chunks [views * (N - 1), S].

    View k reads the bodies of consecutive chunks as one stream, starts it (k + 1) / (views + 1) of a
    body in, and replaces each body token with probability `replace` by a token drawn uniformly from
    the stream (so, by the text's own unigram frequencies). The first and last columns are kept."""
    if not 0 <= replace < 1:
        raise ValueError(f"replace must be in [0, 1), got {replace}")
    n, s = ids.shape
    if views <= 0 or n < 2:
        return ids.new_empty(0, s)
    body = ids[:, 1:-1].reshape(-1)                                   # [N * (S - 2)]
    length = s - 2
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(views):
        start = (k + 1) * length // (views + 1)
        v = body[start:start + (n - 1) * length].view(n - 1, length).clone()  # [N - 1, S - 2]
        hit = torch.rand(v.shape, generator=g) < replace
        v[hit] = body[torch.randint(0, body.numel(), (int(hit.sum()),), generator=g)]
        out.append(torch.cat([ids[:-1, :1], v, ids[:-1, -1:]], dim=1))
    return torch.cat(out)
