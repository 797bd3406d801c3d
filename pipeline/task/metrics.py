"""Task scores from logits: accuracy (and F1 of the second class for two classes) or Spearman."""

from __future__ import annotations

import torch

from pipeline.benchmark.quality import spearman


def scores(logits: torch.Tensor, labels: list, regression: bool) -> dict[str, float]:
    """logits [N, C] ([N, 1] for a regression) against labels -> {accuracy | spearman, f1?}.
    For a regression `accuracy` is the Spearman correlation, so every report has one headline score."""
    if regression:
        rho = spearman(logits.squeeze(-1).double(), torch.tensor(labels, dtype=torch.float64))
        return {"accuracy": rho, "spearman": rho}
    y = torch.tensor(labels)
    pred = logits.argmax(-1)
    out = {"accuracy": float((pred == y).double().mean())}
    if logits.shape[1] == 2:  # F1 of class 1, as GLUE scores MRPC and QQP
        tp = float(((pred == 1) & (y == 1)).sum())
        fp, fn = float(((pred == 1) & (y == 0)).sum()), float(((pred == 0) & (y == 1)).sum())
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return out
