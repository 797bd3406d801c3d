"""Latency budgets as users write them: `5ms`, `500us`, `0.01s`, a speed-up over the teacher on the
device (`4x`: a quarter of its measured latency), or several: `5ms,8ms,12ms` or `3x,4x`.

A speed-up is resolved into milliseconds by whoever can time the teacher (`run`, `search`:
benchmark/teacher.py); every stage below them only ever sees milliseconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pipeline.errors import PipelineError

UNITS_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|µs|s)\s*$")
_SPEEDUP = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*[xX]\s*$")
HOW = ("a budget is a positive number with a unit: 5ms, 500us or 0.01s, or a speed-up over the teacher: 4x "
       "(several: 5ms,8ms)")


def parse_budget(text: str) -> float:
    """One budget in milliseconds; anything else is a one-line error that shows the form."""
    m = _BUDGET.match(text or "")
    if not m:
        raise PipelineError(f"bad budget {text!r}: {HOW}")
    ms = float(m.group(1)) * UNITS_MS[m.group(2)]
    if not math.isfinite(ms) or ms <= 0:
        raise PipelineError(f"bad budget {text!r}: it must be above zero; {HOW}")
    return ms


@dataclass(frozen=True)
class Budgets:
    """Budgets as asked: in milliseconds, and as speed-ups over the teacher still to be resolved."""

    ms: tuple[float, ...] = ()
    speedups: tuple[float, ...] = ()

    def resolve(self, teacher_ms: float | None) -> list[float]:
        """Every budget in milliseconds, sorted and without duplicates; speed-ups divide teacher_ms."""
        return sorted({*self.ms, *self.speedup_ms(teacher_ms).values()})

    def speedup_ms(self, teacher_ms: float | None) -> dict[float, float]:
        """Each speed-up -> its budget in milliseconds: teacher_ms / speed-up."""
        if self.speedups and teacher_ms is None:
            raise PipelineError(f"a speed-up budget ({format_speedup(self.speedups[0])}) needs the teacher's latency "
                                "on the device")
        # Rounded to the 4 digits budgets are shown and named with (format_ms), so that arch_6.45ms holds 6.45.
        return {s: float(f"{teacher_ms / s:.4g}") for s in self.speedups}

    def describe(self) -> str:
        return ",".join([*(format_ms(b) for b in self.ms), *(format_speedup(s) for s in self.speedups)])


def parse_budget_list(text: str) -> Budgets:
    """Comma-separated budgets, each in milliseconds or a speed-up (`4x`)."""
    parts = [p for p in (text or "").split(",")]
    if not any(p.strip() for p in parts):
        raise PipelineError(f"no budget given: {HOW}")
    ms, speedups = set(), set()
    for p in parts:
        m = _SPEEDUP.match(p)
        if m is None:
            ms.add(parse_budget(p))
            continue
        s = float(m.group(1))
        if not math.isfinite(s) or s <= 0:
            raise PipelineError(f"bad budget {p!r}: a speed-up must be above zero; {HOW}")
        speedups.add(s)
    return Budgets(tuple(sorted(ms)), tuple(sorted(speedups)))


def parse_budgets(text: str) -> list[float]:
    """Comma-separated budgets in milliseconds, sorted and without duplicates (no speed-ups: nothing
    here times the teacher)."""
    return parse_budget_list(text).resolve(None)


def format_speedup(s: float) -> str:
    return f"{s:g}x"


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
    count = round(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}[m.group(2).lower()])
    if count < 1:  # 0.5 once truncated to 0, which the search read as no cap at all
        raise PipelineError(f"bad parameter count {text!r}: less than one parameter; write a count such as 500k "
                            "or 10M")
    return count
