"""Blocks trained alone: the yardstick of the shared weights."""

import random

import pytest
import torch
from torch import nn

from pipeline.train.blockwise import TrainConfig
from pipeline.train.standalone import BlockData, mean_loss, tau_selection, train_standalone


class Scale(nn.Module):
    """x [B, S, T] -> w * x: a block whose loss and training are easy to predict."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.w * x


def test_tau_paths_are_spread_over_every_bin():
    pool = [{"bin": b} for b in range(4) for _ in range(5)]
    picked = tau_selection(pool, 8, random.Random(0))
    assert len(set(picked)) == 8 and picked == sorted(picked)
    assert sorted(pool[i]["bin"] for i in picked) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(tau_selection(pool[:3], 8, random.Random(0))) == 3  # never more than the pool


def test_a_block_trained_alone_learns_and_its_loss_is_the_validation_mse():
    x = torch.randn(64, 4, 8)
    data = BlockData(x[:48], 2 * x[:48], x[48:], 2 * x[48:])
    block = Scale()
    assert abs(mean_loss(block, data.x_val, data.y_val, 5) - float((2 * data.x_val).pow(2).mean())) < 1e-5
    cfg = TrainConfig(batch_size=8, tau_steps=100, tau_lr=0.05, weight_decay=0.0)
    loss = train_standalone(block, data, cfg, seed=0)
    assert loss < 0.5 * float((2 * data.x_val).pow(2).mean())
    assert loss == pytest.approx(mean_loss(block, data.x_val, data.y_val, 16), rel=1e-5)
