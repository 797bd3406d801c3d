"""Profile a device: time every part of the search space into a latency table.

Parts are timed where they run, on the device's own runtime, in context:
- an op is timed as a stack of `stack` copies with their own weights (a block's worth, so the
  weights are not all hot in cache and per-node scheduling is included), minus an empty model of
  the same width, divided by the copies; the two are timed interleaved, so drift cancels;
- adapters and the embedding are timed alone, minus the same empty model;
- then `calibration_archs` random students are measured end to end, and `predict` fits the
  sum of parts to them (see latency.py).
The table is saved after every row: an interrupted profile resumes where it stopped.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pipeline.devices import Backend
from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable, describe_fingerprint, fingerprint_hash
from pipeline.ops import Sublayer, masks
from pipeline.space import Architecture, SearchSpace
from pipeline.student import Embeddings, Student, example_inputs
from pipeline.timing import STATISTIC, Latency, measure

CALIBRATION_SEED = 0  # the same random students on every machine, so tables compare


class OpStack(nn.Module):
    """`copies` sub-layers of one op: x [B, S, H], attention_mask [B, S] -> [B, S, H]."""

    def __init__(self, op: str, hidden: int, copies: int):
        super().__init__()
        self.layers = nn.ModuleList(Sublayer(op, hidden) for _ in range(copies))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep, bias = masks(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, keep, bias)
        return x


class Passthrough(nn.Module):
    """The empty model: what one runtime call costs with a [B, S, H] tensor in and out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0  # a real node, so every runtime builds a graph for it


class EmbeddingProbe(nn.Module):
    def __init__(self, vocab_size: int, max_positions: int, dim: int):
        super().__init__()
        self.embeddings = Embeddings(vocab_size, max_positions, dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids)


@dataclass(frozen=True)
class Probe:
    """One row to measure."""

    kind: str
    name: str
    d_in: int
    d_out: int
    batch: int
    seq: int
    arch: Architecture | None = None  # calibration rows only

    @property
    def key(self) -> tuple:
        return (self.kind, self.name, self.d_in, self.d_out, self.batch, self.seq)

    def label(self) -> str:
        if self.kind == "op":
            return f"{self.name}@{self.d_in}"
        if self.kind == "calibration":
            return f"student {self.arch.describe()}"
        return f"{self.kind} {self.d_in}->{self.d_out}"


def plan(space: SearchSpace, batch: int, seq_lens: tuple[int, ...], calibration_archs: int) -> list[Probe]:
    """Every row a full table needs, in a fixed order (so resuming skips exactly what is done)."""
    widths = sorted({*space.hidden_sizes, space.embed_dim, space.teacher_hidden})
    rng = random.Random(CALIBRATION_SEED)
    archs = [space.sample(rng) for _ in range(calibration_archs)]
    probes: list[Probe] = []
    for s in seq_lens:
        probes += [Probe("call", "call", w, w, batch, s) for w in widths]
        probes += [Probe("op", op, h, h, batch, s) for op, h in space.ops()]
        probes.append(Probe("embedding", "embedding", space.vocab_size, space.embed_dim, batch, s))
        probes += [Probe("linear", "linear", i, o, batch, s) for i, o in space.linear_shapes()]
        probes += [Probe("calibration", a.key, 0, 0, batch, s, a) for a in archs]
    return probes


def _hidden_input(batch: int, seq: int, width: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"x": torch.randn(batch, seq, width, generator=g)}


def _models(probe: Probe, space: SearchSpace, stack: int) -> tuple[list[tuple[nn.Module, dict]], int]:
    """(module, inputs) pairs to time together, and the divisor; the first is the probe itself."""
    b, s = probe.batch, probe.seq
    torch.manual_seed(0)
    if probe.kind == "call":
        return [(Passthrough(), _hidden_input(b, s, probe.d_in))], 1
    if probe.kind == "calibration":
        return [(Student(probe.arch), example_inputs(b, s, probe.arch.vocab_size))], 1
    base = (Passthrough(), _hidden_input(b, s, probe.d_in))
    if probe.kind == "op":
        mask = example_inputs(b, s, 2)["attention_mask"]
        return [(OpStack(probe.name, probe.d_in, stack), {**_hidden_input(b, s, probe.d_in), "attention_mask": mask}),
                base], stack
    if probe.kind == "embedding":
        ids = example_inputs(b, s, space.vocab_size)["input_ids"]
        return [(EmbeddingProbe(space.vocab_size, space.max_positions, space.embed_dim), {"input_ids": ids}),
                (Passthrough(), _hidden_input(b, s, space.embed_dim))], 1
    if probe.kind == "linear":
        return [(nn.Linear(probe.d_in, probe.d_out), _hidden_input(b, s, probe.d_in)), base], 1
    raise ValueError(probe.kind)


def measure_probe(backend: Backend, probe: Probe, space: SearchSpace, workdir: Path) -> tuple[dict, dict]:
    """Time one probe; return (stats for the row, extra columns)."""
    p = backend.profile
    models, divisor = _models(probe, space, p.stack)
    with ExitStack() as stack:
        runners = [stack.enter_context(backend.load(m, inp, workdir / f"m{i}", what=probe.label()))
                   for i, (m, inp) in enumerate(models)]
        lats = measure([r.timed_run for r in runners], p.warmup, p.bursts, p.runs_per_burst)
    stats = part_stats(lats[0], lats[1] if len(lats) > 1 else None, divisor)
    extra = {"stack": divisor, "statistic": STATISTIC, "profile": p.name,
             "arch": probe.arch and json_arch(probe.arch), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return stats, extra


def json_arch(arch: Architecture) -> str:
    return json.dumps(arch.to_dict(), separators=(",", ":"))


def part_stats(probe: Latency, base: Latency | None, divisor: int) -> dict[str, float]:
    """A part's own cost: (probe - empty model) / copies, statistic by statistic."""
    def sub(name: str) -> float:
        return (getattr(probe, name) - (getattr(base, name) if base else 0.0)) / divisor

    var = probe.std_ms ** 2 + (base.std_ms ** 2 if base else 0.0)
    return {"latency_ms": sub("robust_ms"), "p50_ms": sub("p50_ms"), "p90_ms": sub("p90_ms"),
            "p99_ms": sub("p99_ms"), "mean_ms": sub("mean_ms"), "std_ms": var ** 0.5 / divisor,
            "min_ms": sub("min_ms"), "n": probe.n}


def open_table(path: Path, fingerprint: dict[str, str], force: bool) -> LatencyTable:
    """The table to fill: the existing one (resume) if it was measured here, else a new one."""
    if force or not path.exists():
        return LatencyTable.empty(fingerprint, path)
    table = LatencyTable.load(path)
    if table.fingerprint_hash != fingerprint_hash(fingerprint):
        raise PipelineError(
            f"{path} was measured on another fingerprint ({table.fingerprint_hash}: "
            f"{describe_fingerprint(table.fingerprint)}); this device is {fingerprint_hash(fingerprint)}. "
            "Pass --table NEW.csv, or --force to replace it"
        )
    return table


def profile_device(backend: Backend, space: SearchSpace, path: str | Path, force: bool = False,
                   progress: bool = True, on_row: Callable[[Probe], None] | None = None) -> LatencyTable:
    """Measure every missing row of the plan into the table at `path`, saving after each row."""
    p = backend.profile
    path = Path(path)
    table = open_table(path, backend.fingerprint(), force)
    probes = plan(space, p.batch, p.seq_lens, p.calibration_archs)
    done = table.keys()
    todo = [pr for pr in probes if tuple(map(str, pr.key)) not in done]
    bar = tqdm(total=len(probes), initial=len(probes) - len(todo), disable=not progress,
               desc=f"profile {p.name}", unit="part", dynamic_ncols=True)
    with bar, tempfile.TemporaryDirectory(prefix="pipeline-profile-") as tmp:
        for probe in todo:
            bar.set_postfix_str(probe.label()[:40])
            stats, extra = measure_probe(backend, probe, space, Path(tmp) / str(len(table.df)))
            table.add(probe.key, stats, extra)
            table.save(path)
            if on_row:
                on_row(probe)
            bar.update()
    return table
