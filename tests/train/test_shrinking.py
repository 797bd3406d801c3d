import random

import pytest

from pipeline.train.shrinking import done, kendall_tau, make_bins, ranks, shrink_step


def test_ranks_average_ties():
    assert ranks([3, 1, 2]).tolist() == [1.0, 0.0, 0.5]
    assert ranks([1, 1, 2]).tolist() == [0.25, 0.25, 1.0]


def test_bins_are_equal_count_and_ordered_by_cost():
    params = list(range(100))
    latency = [p * 2.0 for p in params]
    bins = make_bins(params, latency, 10)
    assert [len(b) for b in bins] == [10] * 10
    assert bins[0] == list(range(10)) and bins[-1] == list(range(90, 100))
    # latency counts: same params, opposite latency order -> all costs tie, bins by index
    flat = make_bins([1] * 10, list(range(10, 0, -1)), 2)
    assert flat == [[9, 8, 7, 6, 5], [4, 3, 2, 1, 0]]


@pytest.mark.parametrize("samples", [2000, 16])
def test_shrinking_ends_with_exactly_m_per_bin_keeping_the_best(samples):
    bins = make_bins(list(range(300)), None, 5)  # 60 per bin
    rng = random.Random(0)
    score = lambda i: (i * 37) % 101  # noqa: E731 - a fixed pseudo-loss per candidate
    steps = 0
    while not done(bins, 4):
        bins = shrink_step(bins, score, rng, samples, keep=4)
        steps += 1
        assert steps < 20
    assert [len(b) for b in bins] == [4] * 5
    if samples >= 60:  # every candidate is scored: the survivors are each bin's best
        for b, full in zip(bins, make_bins(list(range(300)), None, 5), strict=True):
            assert sorted(b, key=score) == sorted(full, key=score)[:4]


def test_shrink_leaves_small_bins_alone():
    assert shrink_step([[1, 2], [3, 4, 5, 6, 7]], lambda i: -i, random.Random(0), 100, keep=2) == [[1, 2], [6, 7]]


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        kendall_tau([1], [1])
