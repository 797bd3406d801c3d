"""Blocks trained alone: the yardstick of the supernet's shared weights.

A block's validation loss (`mean_loss`), and one path trained standalone on the same batches as every
other (`train_standalone`), for a spread of the pool's members (`tau_selection`): the Kendall tau
between their shared-weight and standalone losses (shrinking.kendall_tau) says whether the supernet
ranks paths as training them alone would, which is what the search relies on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from pipeline.compute import adamw

if TYPE_CHECKING:
    from pipeline.train.blockwise import TrainConfig


@dataclass
class BlockData:
    """The teacher's states around one block: inputs x and targets y, [N, S, teacher_hidden] each."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@torch.no_grad()
def mean_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Mean squared error over all of x [N, S, T] -> y, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for s in range(0, x.shape[0], batch_size):
        xb, yb = x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)
        mask = torch.ones(xb.shape[:2], dtype=torch.int64, device=device)
        total += F.mse_loss(model(xb, mask), yb, reduction="sum").item()
        count += yb.numel()
    model.train(was_training)
    return total / count


def tau_selection(pool: list[dict[str, Any]], k: int, rng: random.Random) -> list[int]:
    """k pool indices spread over the bins (round robin, a random member each time), so that the
    rank correlation covers the whole cost range the search chooses from."""
    by_bin: dict[int, list[int]] = {}
    for i, e in enumerate(pool):
        by_bin.setdefault(e["bin"], []).append(i)
    queues = [rng.sample(members, len(members)) for _, members in sorted(by_bin.items())]
    picked: list[int] = []
    while len(picked) < min(k, len(pool)):
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop())
    return sorted(picked)


def train_standalone(block_net: torch.nn.Module, data: BlockData, cfg: TrainConfig, seed: int) -> float:
    """Train a standalone block for tau_steps on the same batches for every path; its validation loss."""
    device = next(block_net.parameters()).device
    opt = adamw(block_net.parameters(), cfg.tau_lr, cfg.weight_decay)
    g = torch.Generator().manual_seed(seed)
    block_net.train()
    for _ in range(cfg.tau_steps):
        idx = torch.randint(0, data.x_train.shape[0], (cfg.batch_size,), generator=g)
        x, y = data.x_train[idx].to(device), data.y_train[idx].to(device)
        mask = torch.ones(x.shape[:2], dtype=torch.int64, device=device)
        loss = F.mse_loss(block_net(x, mask), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return mean_loss(block_net, data.x_val, data.y_val, cfg.batch_size)
