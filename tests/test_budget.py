import pytest

from pipeline.budget import format_ms, parse_budget, parse_budgets
from pipeline.errors import PipelineError


@pytest.mark.parametrize("text, ms", [("10ms", 10.0), ("500us", 0.5), ("0.01s", 10.0), (" 2.5 ms ", 2.5),
                                      ("1e1ms", 10.0), ("750µs", 0.75)])
def test_good_budgets(text, ms):
    assert parse_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["10", "-3ms", "fast", "0ms", "0us", "ms", "", "10 m s", "3ms5", "inf ms", "nanms"])
def test_bad_budgets_say_what_a_budget_looks_like(text):
    with pytest.raises(PipelineError, match="5ms, 500us or 0.01s"):
        parse_budget(text)


def test_several_budgets():
    assert parse_budgets("8ms,5ms,5ms,0.012s") == [5.0, 8.0, 12.0]
    with pytest.raises(PipelineError, match="no budget"):
        parse_budgets(" , ")
    with pytest.raises(PipelineError, match="bad budget 'x'"):
        parse_budgets("5ms,x")
    assert format_ms(0.5) == "500us" and format_ms(5.0) == "5ms" and format_ms(0.0051234) == "5.123us"


def test_parameter_counts():
    from pipeline.budget import parse_count

    assert parse_count("10M") == 10_000_000 and parse_count("500k") == 500_000 and parse_count("1234") == 1234
    for bad in ("", "ten", "-5M", "0", "5G"):
        with pytest.raises(PipelineError, match="parameter count"):
            parse_count(bad)


def test_speedups_over_the_teacher_become_milliseconds_once_it_is_timed():
    from pipeline.budget import parse_budget_list

    b = parse_budget_list("4x, 5ms,2.5X,4x")
    assert b.ms == (5.0,) and b.speedups == (2.5, 4.0) and b.describe() == "5ms,2.5x,4x"
    # to the 4 digits budgets are named with: a quarter of 25.8 ms, 25.8 / 2.5 = 10.32
    assert b.resolve(25.8) == [5.0, 6.45, 10.32] and b.resolve(25.812)[1] == 6.453
    with pytest.raises(PipelineError, match=r"speed-up budget \(2.5x\) needs the teacher's latency"):
        b.resolve(None)
    with pytest.raises(PipelineError, match="speed-up budget"):
        parse_budgets("4x")  # nothing there times the teacher
    for bad in ("0x", "-2x", "4xx", "x", "inf x"):
        with pytest.raises(PipelineError, match="or a speed-up over the teacher: 4x"):
            parse_budget_list(bad)
