"""Device profiles: which runtime, precision and measurement protocol a device means.

`--device NAME` reads `profiles/NAME.yaml`; `--profile PATH` reads any file of the same form,
which is how new hardware is profiled (copy cpu.yaml, edit, run `profile --profile it.yaml`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError

# Shipped profiles live beside the package (repository root) so that users can read and copy them.
PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    backend: str                       # a key of pipeline.devices.BACKENDS
    precision: str = "fp32"            # fp32 or fp16; what the backend computes in
    threads: int = 0                   # 0 = all cores (resolved before use, so it is fingerprinted)
    batch: int = 1                     # NAS-BERT quotes latency at batch 1
    seq_lens: tuple[int, ...] = (128,)  # NAS-BERT quotes FLOPs at sequence 128
    warmup: int = 5                    # runs thrown away before each burst: a model that follows another runs cold
    rounds: int = 30                   # bursts per model, spread over the whole measurement (timing.py)
    runs_per_round: int = 10           # enough runs that a burst median ignores single hiccups
    min_round_s: float = 0.2           # pads short rounds so one model's bursts still span seconds
    stack: int = 4                     # op copies timed together: one block's worth of context
    calibration_archs: int = 10        # whole students measured to calibrate the sum of parts
    source: str = field(default="", compare=False)  # the YAML it came from, for messages

    @property
    def resolved_threads(self) -> int:
        return self.threads if self.threads > 0 else (os.cpu_count() or 1)


_INT_FIELDS = ("threads", "batch", "warmup", "rounds", "runs_per_round", "stack", "calibration_archs")


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate a profile YAML; every problem is a one-line PipelineError."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"profile file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise PipelineError(f"profile {path} is not a text file (YAML); copy a shipped one from {PROFILES_DIR}") \
            from None
    except yaml.YAMLError as e:
        raise PipelineError(f"profile {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"profile {path} must be a YAML mapping of settings")
    known = {f.name for f in dataclasses.fields(DeviceProfile)} - {"source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PipelineError(
            f"profile {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    for key in ("name", "backend"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise PipelineError(f"profile {path}: '{key}' must be a non-empty string")
    if not re.fullmatch(r"[\w][\w.-]*", raw["name"]):  # it names the folder of its tables: never ../ or /abs
        raise PipelineError(f"profile {path}: 'name' must be a plain name (letters, digits, . _ -), got "
                            f"{raw['name']!r}")
    kwargs: dict[str, Any] = dict(raw)
    for key in _INT_FIELDS:
        if key in kwargs and (not isinstance(kwargs[key], int) or isinstance(kwargs[key], bool) or kwargs[key] < 0):
            raise PipelineError(f"profile {path}: '{key}' must be a non-negative integer, got {kwargs[key]!r}")
    if not isinstance(kwargs.get("min_round_s", 0.0), int | float) or kwargs.get("min_round_s", 0.0) < 0:
        raise PipelineError(f"profile {path}: 'min_round_s' must be a non-negative number of seconds")
    for key in ("batch", "rounds", "runs_per_round", "stack"):
        if key in kwargs and kwargs[key] < 1:
            raise PipelineError(f"profile {path}: '{key}' must be at least 1")
    seq = kwargs.get("seq_lens", [128])
    if isinstance(seq, int):
        seq = [seq]
    if not isinstance(seq, list | tuple) or not seq or not all(isinstance(s, int) and s > 0 for s in seq):
        raise PipelineError(f"profile {path}: 'seq_lens' must be a list of positive integers, got {seq!r}")
    kwargs["seq_lens"] = tuple(seq)
    if kwargs.get("precision", "fp32") not in ("fp32", "fp16"):
        raise PipelineError(f"profile {path}: 'precision' must be fp32 or fp16, got {kwargs['precision']!r}")
    return DeviceProfile(**kwargs, source=str(path))


def shipped_devices() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def resolve_profile(device: str | None, profile: str | None) -> DeviceProfile:
    """`--device NAME` -> profiles/NAME.yaml; `--profile PATH` -> that file; default cpu."""
    if device and profile:
        raise PipelineError("give either --device or --profile, not both")
    if profile:
        return load_profile(profile)
    name = device or "cpu"
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise PipelineError(
            f"unknown device '{name}'; shipped devices: {', '.join(shipped_devices())} "
            f"(or --profile PATH for new hardware)"
        )
    return load_profile(path)
