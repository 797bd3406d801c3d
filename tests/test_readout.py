import pytest
import torch

from pipeline.readout import readout_caps, wide_enough


def low_rank_states(rank: int, t: int = 32) -> torch.Tensor:
    """[N, S, T] states in a rank-`rank` affine subspace: a shared mean plus rank directions."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(20, 8, rank, generator=g) * torch.linspace(3, 1, rank)  # decreasing variance
    return codes @ torch.randn(rank, t, generator=g) + torch.randn(t, generator=g)


def test_the_cap_is_exact_at_the_states_rank_and_grows_with_width():
    caps = readout_caps(low_rank_states(6), [2, 4, 6, 8, 64])
    assert caps[6] == pytest.approx(1.0, abs=1e-9) and caps[8] == pytest.approx(1.0, abs=1e-9)
    assert caps[64] == pytest.approx(1.0, abs=1e-9)  # wider than the states: everything
    assert caps[2] < caps[4] < caps[6]
    assert caps[2] < 0.99


def test_wide_enough_keeps_the_widths_above_the_floor():
    caps = {128: 0.88, 192: 0.936, 256: 0.972, 384: 1.0}
    assert wide_enough(caps) == {256, 384}
    assert wide_enough(caps, 0.9) == {192, 256, 384}
    assert wide_enough(caps, 0.0) == set(caps)
