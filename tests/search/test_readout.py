import pytest
import torch

from pipeline.search.readout import readout_caps, wide_enough


def low_rank_states(rank: int, t: int = 32, seed: int = 0) -> torch.Tensor:
    """[N, S, T] states in a rank-`rank` affine subspace (the same for every seed): a shared mean
    plus rank directions."""
    g = torch.Generator().manual_seed(0)
    directions, mean = torch.randn(rank, t, generator=g), torch.randn(t, generator=g)
    codes = torch.randn(20, 8, rank, generator=torch.Generator().manual_seed(seed + 1)) * torch.linspace(3, 1, rank)
    return codes @ directions + mean


def test_the_cap_is_exact_at_the_states_rank_and_grows_with_width():
    states = low_rank_states(6)
    caps = readout_caps(low_rank_states(6, seed=1), states, [2, 4, 6, 8, 64])  # other text, same subspace
    assert caps[6] == pytest.approx(1.0, abs=1e-9) and caps[8] == pytest.approx(1.0, abs=1e-9)
    assert caps[64] == pytest.approx(1.0, abs=1e-9)  # wider than the states: everything
    assert caps[2] < caps[4] < caps[6]
    assert caps[2] < 0.99


def test_wide_enough_keeps_the_widths_above_the_floor():
    caps = {128: 0.88, 192: 0.936, 256: 0.972, 384: 1.0}
    assert wide_enough(caps) == {256, 384}
    assert wide_enough(caps, 0.9) == {192, 256, 384}
    assert wide_enough(caps, 0.0) == set(caps)


def test_directions_the_training_text_lacks_lower_the_cap():
    fit = low_rank_states(6)
    held_out = low_rank_states(6, seed=1)
    held_out = held_out + 0.5 * torch.randn(held_out.shape, generator=torch.Generator().manual_seed(9))
    caps = readout_caps(fit, held_out, [6, 32])
    assert caps[6] < 0.999 and caps[32] == pytest.approx(1.0, abs=1e-9)  # full width reads out everything
    assert readout_caps(held_out, held_out, [6])[6] > caps[6]  # fit on the text itself: optimistic
