"""Measure one architecture end to end on a device, beside the table's prediction.

(The full teacher-versus-students report of DESIGN.md stage 5 builds on this.)
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.devices import Backend
from pipeline.latency import Predictor
from pipeline.space import Architecture, count_flops, count_params
from pipeline.student import Student, example_inputs
from pipeline.timing import STATISTIC, Latency, measure


@dataclass(frozen=True)
class ArchBenchmark:
    arch: Architecture
    latency: Latency
    predicted_ms: float | None
    batch: int
    seq: int

    @property
    def measured_ms(self) -> float:
        return self.latency.robust_ms

    @property
    def error_pct(self) -> float | None:
        if self.predicted_ms is None:
            return None
        return (self.predicted_ms / self.measured_ms - 1) * 100

    def as_dict(self) -> dict:
        return {
            "arch": self.arch.to_dict(), "arch_key": self.arch.key, "batch": self.batch, "seq": self.seq,
            "statistic": STATISTIC, "measured_ms": self.measured_ms, "predicted_ms": self.predicted_ms,
            "error_pct": self.error_pct, "params": count_params(self.arch),
            "flops": count_flops(self.arch, self.seq, self.batch),
            **{k: v for k, v in self.latency.as_dict().items() if k != "robust_ms"},
        }


def measure_architecture(backend: Backend, arch: Architecture, seq: int, seed: int = 0) -> Latency:
    """Build the student (random weights), load it on the device (checked against PyTorch), time it."""
    p = backend.profile
    torch.manual_seed(seed)
    student = Student(arch)
    inputs = example_inputs(p.batch, seq, arch.vocab_size)
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        with backend.load(student, inputs, Path(tmp), what=f"student {arch.key}") as runner:
            return measure([runner.timed_run], p.warmup, p.bursts, p.runs_per_burst)[0]


def benchmark_architecture(backend: Backend, arch: Architecture, predictor: Predictor | None,
                           seq: int) -> ArchBenchmark:
    latency = measure_architecture(backend, arch, seq)
    predicted = predictor(arch) if predictor else None
    return ArchBenchmark(arch, latency, predicted, backend.profile.batch, seq)
