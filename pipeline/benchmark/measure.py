"""Measure one architecture end to end on a device, beside the table's prediction.

(The full teacher-versus-students report, benchmark/job.py, builds on this.)
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import DeviceProfile
from pipeline.devices import Backend, Runner
from pipeline.devices.host import scratch_folder
from pipeline.devices.timing import STATISTIC, Latency, measure
from pipeline.latency import Predictor
from pipeline.model.student import Student, example_inputs
from pipeline.space import Architecture, count_flops, count_params


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


def measure_architectures(backend: Backend, archs: list[Architecture], seq: int, seed: int = 0,
                          progress: bool = False) -> list[Latency]:
    """Build each student (random weights), load it on the device (checked against PyTorch), and
    time them all together in rounds, so that they see the same machine (timing.measure)."""
    p = backend.profile
    with scratch_folder("bench") as tmp, ExitStack() as stack:  # removed even when killed (host.py)
        runners = []
        for i, arch in enumerate(tqdm(archs, desc="load", unit="model", disable=not progress)):
            torch.manual_seed(seed)
            inputs = example_inputs(p.batch, seq, arch.vocab_size)
            runner = backend.load(Student(arch), inputs, tmp / str(i), what=f"student {arch.key}")
            runners.append(stack.enter_context(runner))
        return measure_runners(runners, p, progress=progress)


def measure_runners(runners: list[Runner], p: DeviceProfile, rounds: int | None = None,
                    progress: bool = False) -> list[Latency]:
    """Time loaded runners together with the profile's protocol (timing.measure), a bar per round."""
    n = rounds or p.rounds
    with tqdm(total=n, desc="measure", unit="round", disable=not progress) as bar:
        return measure([r.timed_run for r in runners], p.warmup, n, p.runs_per_round, min_round_s=p.min_round_s,
                       on_round=lambda r, s: bar.update())


def benchmark_architecture(backend: Backend, arch: Architecture, predictor: Predictor | None,
                           seq: int, progress: bool = False) -> ArchBenchmark:
    latency = measure_architectures(backend, [arch], seq, progress=progress)[0]
    predicted = predictor(arch) if predictor else None
    return ArchBenchmark(arch, latency, predicted, backend.profile.batch, seq)


def drift_of(measured_ms: list[float], table_ms: list[float]) -> dict[str, Any] | None:
    """The median ratio of latencies measured now to the table's for the same students, or None."""
    if not measured_ms:
        return None
    ratio = float(np.median([m / t for m, t in zip(measured_ms, table_ms, strict=True)]))
    return {"ratio": ratio, "percent": round(100 * (ratio - 1), 2), "students": len(measured_ms)}
