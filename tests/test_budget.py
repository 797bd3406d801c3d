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
