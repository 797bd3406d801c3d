import pytest

from pipeline.schedule import COSINE_FLOOR, warmup_cosine, warmup_linear


@pytest.mark.parametrize("schedule", [warmup_cosine, warmup_linear])
def test_the_warm_up_rises_linearly_to_the_peak(schedule):
    rates = [schedule(s, 100, 1e-3, 10) for s in range(10)]
    assert rates == pytest.approx([1e-4 * (s + 1) for s in range(10)])
    assert schedule(10, 100, 1e-3, 10) == pytest.approx(1e-3)  # the first step after it is the peak


def test_the_cosine_falls_monotonically_to_its_floor_and_stays_there():
    rates = [warmup_cosine(s, 100, 1e-3, 10) for s in range(10, 130)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[90] == pytest.approx(COSINE_FLOOR * 1e-3) and rates[-1] == pytest.approx(COSINE_FLOOR * 1e-3)
    assert warmup_cosine(55, 100, 1e-3, 10) == pytest.approx(1e-3 * (COSINE_FLOOR + (1 - COSINE_FLOOR) / 2))


def test_the_linear_decay_reaches_zero_at_the_last_step_and_never_goes_below():
    assert warmup_linear(55, 100, 1e-3, 10) == pytest.approx(0.5e-3)
    assert warmup_linear(100, 100, 1e-3, 10) == 0.0 and warmup_linear(150, 100, 1e-3, 10) == 0.0


def test_no_warm_up_asked_is_one_step_of_it_not_a_division_by_zero():
    assert warmup_cosine(0, 10, 1.0, 0) == pytest.approx(1.0) and warmup_linear(0, 10, 1.0, 0) == pytest.approx(1.0)
