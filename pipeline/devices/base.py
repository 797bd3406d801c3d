"""What every device backend provides: availability, fingerprint, and runners with one lifecycle.

A runner is opened on a torch module (each backend turns it into what its runtime eats: an ONNX
session, a CUDA fp16 module, a TensorRT engine), checked once against the PyTorch model, then
timed by `pipeline.devices.timing.measure` through `timed_run`. The base never branches on a backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from pipeline.config import DeviceProfile
from pipeline.onnxio import Int8Settings, check_close, int8_for


class Runner(ABC):
    """One model loaded on a device, with inputs bound. Use as `with backend.load(...) as r:`."""

    max_abs_diff: float | None = None  # against the fp32 PyTorch model, set by Backend.load

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def run(self) -> np.ndarray:
        """Run once on the bound inputs; return the output as a float32 host array."""

    @abstractmethod
    def timed_run(self) -> float:
        """Run once; return the run's latency in ms on the device's own clock."""

    @abstractmethod
    def close(self) -> None:
        """Release the model and its runtime (sessions, thread pools, device memory) now."""


class Backend(ABC):
    name: ClassVar[str]
    requires: ClassVar[str]  # what must be present, for messages
    # Which ONNX files the runtime deploys: "onnxruntime" (ONNX Runtime-optimised graphs, contrib ops
    # and int8 included), "plain" (a standard-ops export the runtime optimises itself), or None (it
    # runs the PyTorch module).
    onnx: ClassVar[str | None] = None

    def __init__(self, profile: DeviceProfile):
        self.profile = profile

    @property
    def runs_int8(self) -> bool:
        """Whether ONNX Runtime's dynamically quantised int8 files run here (what export and benchmark
        quantise by default): only where the runtime is ONNX Runtime itself."""
        return self.onnx == "onnxruntime"

    @cached_property
    def int8(self) -> Int8Settings:
        """The int8 settings for this machine's CPU (onnxio.int8_for: 7-bit weights where the int8 dot
        product saturates); read once per backend, not once per model quantised."""
        from pipeline.devices.host import cpu_fingerprint

        return int8_for(cpu_fingerprint()["isa"])

    @abstractmethod
    def check_available(self) -> None:
        """Raise DeviceUnavailable naming what is missing."""

    @abstractmethod
    def fingerprint(self) -> dict[str, str]:
        """Hardware and software that latencies depend on; tables from different ones never mix."""

    @abstractmethod
    def _open(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
              onnx_path: Path | None = None) -> Runner:
        """Turn the module into this runtime's model, with `inputs` bound for every run. Backends
        that eat ONNX use `onnx_path` when given (an exported, optimised or quantised file) instead
        of exporting the module themselves; the others ignore it."""

    def load(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
             what: str = "model", onnx_path: Path | None = None, precision: str | None = None) -> Runner:
        """Open a runner and check its output against the fp32 PyTorch module on the same inputs;
        the runner's `max_abs_diff` keeps the difference. `precision` overrides the profile's
        tolerance (an int8 file on an fp32 device)."""
        module = module.eval()
        with torch.inference_mode():
            ref = module(*inputs.values()).float().numpy()
        runner = self._open(module, inputs, workdir, onnx_path)
        try:
            runner.max_abs_diff = check_close(runner.run(), ref, precision or self.profile.precision,
                                              f"{what} on {self.name}")
        except BaseException:
            runner.close()
            raise
        return runner

    def peak_memory_mb(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
                       onnx_path: Path | None = None) -> float | None:
        """Memory the model takes to load and run once on this runtime (MiB), or None where the
        backend cannot tell."""
        return None

    def base_fingerprint(self) -> dict[str, str]:
        """What every table of this backend records; each backend adds what its latencies depend on."""
        return {
            "backend": self.name,            # another runtime is another table
            "precision": self.profile.precision,  # fp16 and fp32 kernels are different kernels
        }
