"""Profile a device: time every part of the search space into a latency table.

Parts are timed where they run, on the device's own runtime, in context:
- an op is timed as a stack of `stack` copies with their own weights (a block's worth, so the
  weights are not all hot in cache and per-node scheduling is included), minus an empty model of
  the same width, divided by the copies;
- adapters and the embedding are timed alone, minus the same empty model;
- `calibration_archs` random students are timed end to end, and `predict` fits the parts to
  them (see latency.py).
Everything, empty models included, is timed together in rounds (timing.py), so a slow stretch
of the machine touches all rows alike; an interrupted profile resumes at the round it stopped in.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pipeline.artifacts import write_json_atomic
from pipeline.config import DeviceProfile
from pipeline.devices import Backend
from pipeline.devices.host import scratch_folder
from pipeline.devices.timing import STATISTIC, Latency, measure
from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable, describe_fingerprint, fingerprint_hash
from pipeline.model.ops import Sublayer, masks
from pipeline.model.student import Embeddings, Student, example_inputs
from pipeline.space import Architecture, SearchSpace

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


def probe_model(probe: Probe, space: SearchSpace, stack: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The torch module that times `probe`, and its inputs."""
    b, s = probe.batch, probe.seq
    torch.manual_seed(0)
    if probe.kind == "call":
        return Passthrough(), _hidden_input(b, s, probe.d_in)
    if probe.kind == "calibration":
        return Student(probe.arch), example_inputs(b, s, probe.arch.vocab_size)
    if probe.kind == "op":
        mask = example_inputs(b, s, 2)["attention_mask"]
        return OpStack(probe.name, probe.d_in, stack), {**_hidden_input(b, s, probe.d_in), "attention_mask": mask}
    if probe.kind == "embedding":
        ids = example_inputs(b, s, space.vocab_size)["input_ids"]
        return EmbeddingProbe(space.vocab_size, space.max_positions, space.embed_dim), {"input_ids": ids}
    if probe.kind == "linear":
        return nn.Linear(probe.d_in, probe.d_out), _hidden_input(b, s, probe.d_in)
    raise ValueError(probe.kind)


def base_width(probe: Probe, space: SearchSpace) -> int | None:
    """Width of the empty model whose cost is subtracted (None: keep the whole time)."""
    if probe.kind in ("call", "calibration"):
        return None
    return space.embed_dim if probe.kind == "embedding" else probe.d_in


def json_arch(arch: Architecture) -> str:
    return json.dumps(arch.to_dict(), separators=(",", ":"))


def part_stats(lat: Latency, base: dict[str, float] | None, divisor: int) -> dict[str, float]:
    """A part's own cost: (probe - empty model) / copies, statistic by statistic. Never below zero: an op
    that costs about nothing (the tiny spaces of the tests) can time below its empty model on a busy host,
    and a table holds costs (latency.py refuses a negative one as damage)."""
    def sub(ours: float, name: str) -> float:
        return max(0.0, (ours - (base[name] if base else 0.0)) / divisor)

    var = lat.std_ms ** 2 + (base["std_ms"] ** 2 if base else 0.0)
    return {"latency_ms": sub(lat.robust_ms, "latency_ms"), "p50_ms": sub(lat.p50_ms, "p50_ms"),
            "p90_ms": sub(lat.p90_ms, "p90_ms"), "p99_ms": sub(lat.p99_ms, "p99_ms"),
            "mean_ms": sub(lat.mean_ms, "mean_ms"), "std_ms": var ** 0.5 / divisor,
            "min_ms": sub(lat.min_ms, "min_ms"), "n": lat.n}


def _is_a_table(path: Path) -> bool:
    """Whether a file starts as a latency table does (however damaged the rest is)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline(4096)
    except OSError:
        return False
    return all(c in header for c in ("latency_ms", "fingerprint"))


def open_table(path: Path, fingerprint: dict[str, str], force: bool) -> LatencyTable:
    """The table to fill: the existing one (resume) if it was measured here, else a new one."""
    if force and path.is_file() and not _is_a_table(path):  # --force replaces a table, never a user's own file
        raise PipelineError(f"{path} is not a latency table (its first line names none of a table's columns); "
                            "--force only measures a table anew: give another --table path")
    if force or not path.exists():
        return LatencyTable.empty(fingerprint, path)
    table = LatencyTable.load(path)
    if table.fingerprint_hash != fingerprint_hash(fingerprint):
        raise PipelineError(
            f"{path} was measured on another machine ({table.fingerprint_hash}: "
            f"{describe_fingerprint(table.fingerprint)}); this one is {fingerprint_hash(fingerprint)}. "
            "Leave out --table to measure this machine's own table, pass --foreign-table to use it as it is "
            "(run, search, predict, benchmark), or --force to measure it anew"
        )
    return table


def check_fits(profile: DeviceProfile, space: SearchSpace) -> None:
    """A profile cannot measure sequences longer than the teacher's position embeddings."""
    if max(profile.seq_lens) > space.max_positions:
        raise PipelineError(f"device profile '{profile.name}' measures sequence {max(profile.seq_lens)}, longer than "
                            f"the teacher's {space.max_positions} positions; use a profile with shorter seq_lens")


def partial_path(table_path: Path) -> Path:
    return table_path.with_name(table_path.name + ".partial.json")


def _load_partial(path: Path, header: dict) -> list[list[list[float]]] | None:
    """Raw bursts of an interrupted profile, if it measured the same things the same way."""
    try:
        state = json.loads(path.read_bytes().decode("utf-8"))
        samples = state["samples"]
        # per model, per round, per run: as many models as the header, only numbers
        fits = (isinstance(samples, list) and len(samples) == len(header["keys"])
                and all(isinstance(rounds, list) and all(isinstance(burst, list) and
                        all(isinstance(ms, int | float) for ms in burst) for burst in rounds) for rounds in samples))
        if fits and {k: state[k] for k in header} == header:
            return samples
    except (OSError, ValueError, KeyError, TypeError):  # damaged: measured again from the first round
        pass
    return None


def profile_device(backend: Backend, space: SearchSpace, path: str | Path, force: bool = False,
                   progress: bool = True, on_round: Callable[[int], None] | None = None) -> LatencyTable:
    """Measure every missing row of the plan into the table at `path`.

    All missing parts are loaded at once and timed in rounds (timing.measure); the raw bursts
    are saved to `<table>.partial.json` after every round, so an interrupted profile resumes at
    the round it stopped in, and the rows are written when the measurement is complete.
    """
    p = backend.profile
    path = Path(path)
    check_fits(p, space)
    table = open_table(path, backend.fingerprint(), force)
    done = table.keys()
    todo = [pr for pr in plan(space, p.batch, p.seq_lens, p.calibration_archs) if tuple(map(str, pr.key)) not in done]
    if not todo:
        return table
    # Every subtraction needs its empty model measured in the same rounds.
    calls = {(pr.d_in, pr.batch, pr.seq) for pr in todo if pr.kind == "call"}
    for pr in list(todo):
        w = base_width(pr, space)
        if w is not None and (w, pr.batch, pr.seq) not in calls:
            todo.insert(0, Probe("call", "call", w, w, pr.batch, pr.seq))
            calls.add((w, pr.batch, pr.seq))
    header = {"fingerprint": table.fingerprint_hash, "keys": [list(map(str, pr.key)) for pr in todo],
              "settings": [p.warmup, p.rounds, p.runs_per_round, p.stack]}
    ppath = partial_path(path)
    samples = _load_partial(ppath, header) if not force else None
    with ExitStack() as stack, scratch_folder("profile") as tmp:  # removed even when killed (host.py)
        runners = []
        for i, pr in enumerate(tqdm(todo, desc=f"load {p.name}", unit="model", disable=not progress,
                                    dynamic_ncols=True)):
            module, inputs = probe_model(pr, space, p.stack)
            runners.append(stack.enter_context(backend.load(module, inputs, tmp / str(i), what=pr.label())))
        bar = stack.enter_context(tqdm(total=p.rounds, initial=len(samples[0]) if samples else 0,
                                       desc=f"measure {len(todo)} models", unit="round",
                                       disable=not progress, dynamic_ncols=True))

        def saved(r: int, s: list) -> None:
            write_json_atomic(ppath, {**header, "samples": s})
            bar.update()
            if on_round:
                on_round(r)

        lats = measure([r.timed_run for r in runners], p.warmup, p.rounds, p.runs_per_round,
                       on_round=saved, samples=samples)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    by_key = {pr.key: part_stats(lat, None, 1) for pr, lat in zip(todo, lats, strict=True) if pr.kind == "call"}
    for pr, lat in zip(todo, lats, strict=True):
        if tuple(map(str, pr.key)) in done:  # an empty model re-timed only as a base
            continue
        w = base_width(pr, space)
        base = by_key[("call", "call", w, w, pr.batch, pr.seq)] if w is not None else None
        divisor = p.stack if pr.kind == "op" else 1
        table.add(pr.key, part_stats(lat, base, divisor),
                  {"stack": divisor, "statistic": STATISTIC, "profile": p.name,
                   "arch": json_arch(pr.arch) if pr.arch else None, "measured_at": stamp})
    table.save(path)
    ppath.unlink(missing_ok=True)
    return table
