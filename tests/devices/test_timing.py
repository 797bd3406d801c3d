import time

import pytest

from pipeline.devices.timing import Latency, measure


def test_statistics_from_bursts():
    lat = Latency.from_bursts([[2.0, 2.2, 2.1], [1.9, 2.0, 50.0]])
    assert lat.robust_ms == 1.9  # the minimum of all runs
    assert lat.n == 6 and lat.n_trimmed == 1  # 50 ms is a far outlier: out of mean and std
    assert lat.mean_ms == pytest.approx((2.0 + 2.2 + 2.1 + 1.9 + 2.0) / 5)
    assert lat.p50_ms == pytest.approx(2.05)
    assert lat.p99_ms > 40  # percentiles keep the tail for users
    with pytest.raises(ValueError):
        Latency.from_bursts([])


def test_rounds_give_every_model_a_warm_burst():
    calls = []

    def runner(name, ms):
        def run():
            calls.append(name)
            return ms
        return run

    lats = measure([runner("a", 1.0), runner("b", 3.0)], warmup=2, rounds=4, runs_per_round=5)
    assert [lat.n for lat in lats] == [20, 20]
    assert [lat.robust_ms for lat in lats] == [1.0, 3.0]
    assert len(calls) == 2 * 4 * (2 + 5)
    first = calls[:7]  # a round: one model's warm-up and burst, then the other's
    assert first == [first[0]] * 7


def test_resume_and_round_padding():
    seen = []
    samples = [[[1.0, 1.0]]]  # one round already measured
    lats = measure([lambda: 2.0], warmup=0, rounds=3, runs_per_round=2, samples=samples,
                   on_round=lambda r, s: seen.append(r))
    assert seen == [1, 2] and lats[0].n == 6 and lats[0].robust_ms == 1.0
    t0 = time.perf_counter()
    measure([lambda: 0.0], warmup=0, rounds=3, runs_per_round=1, min_round_s=0.05)
    assert time.perf_counter() - t0 >= 0.1  # two pauses between three rounds
