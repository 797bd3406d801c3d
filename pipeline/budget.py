"""Latency budgets as users write them: `5ms`, `500us`, `0.01s`, or several: `5ms,8ms,12ms`."""

from __future__ import annotations

import math
import re

from pipeline.errors import PipelineError

UNITS_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|µs|s)\s*$")
HOW = "a budget is a positive number with a unit: 5ms, 500us or 0.01s (several: 5ms,8ms)"


def parse_budget(text: str) -> float:
    """One budget in milliseconds; anything else is a one-line error that shows the form."""
    m = _BUDGET.match(text or "")
    if not m:
        raise PipelineError(f"bad budget {text!r}: {HOW}")
    ms = float(m.group(1)) * UNITS_MS[m.group(2)]
    if not math.isfinite(ms) or ms <= 0:
        raise PipelineError(f"bad budget {text!r}: it must be above zero; {HOW}")
    return ms


def parse_budgets(text: str) -> list[float]:
    """Comma-separated budgets in milliseconds, sorted and without duplicates."""
    parts = [p for p in (text or "").split(",")]
    if not any(p.strip() for p in parts):
        raise PipelineError(f"no budget given: {HOW}")
    return sorted({parse_budget(p) for p in parts})


def format_ms(ms: float) -> str:
    """A budget as users write it, to 4 significant digits: 0.5 -> 500us, 2.25 -> 2.25ms."""
    return f"{ms * 1000:.4g}us" if ms < 1 else f"{ms:.4g}ms"


_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMbB]?)\s*$")


def parse_count(text: str) -> int:
    """A parameter count: 10M, 500k, 1.5B or a plain integer."""
    m = _COUNT.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise PipelineError(f"bad parameter count {text!r}: write a positive number, optionally with k, M or B "
                            "(10M, 500k)")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}[m.group(2).lower()])
