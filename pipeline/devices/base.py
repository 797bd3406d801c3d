"""What every device backend provides: availability, fingerprint, and runners with one lifecycle.

A runner is opened on a torch module (each backend turns it into what its runtime eats: an ONNX
session, a CUDA fp16 module, a TensorRT engine), checked once against the PyTorch model, then
timed by `pipeline.timing.measure` through `timed_run`. The base never branches on a backend.
"""

from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from pipeline.config import DeviceProfile
from pipeline.export import check_close


class Runner(ABC):
    """One model loaded on a device, with inputs bound. Use as `with backend.load(...) as r:`."""

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

    def __init__(self, profile: DeviceProfile):
        self.profile = profile

    @abstractmethod
    def check_available(self) -> None:
        """Raise DeviceUnavailable naming what is missing."""

    @abstractmethod
    def fingerprint(self) -> dict[str, str]:
        """Hardware and software that latencies depend on; tables from different ones never mix."""

    @abstractmethod
    def _open(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path) -> Runner:
        """Turn the module into this runtime's model, with `inputs` bound for every run."""

    def load(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
             what: str = "model") -> Runner:
        """Open a runner and check its output against the fp32 PyTorch module on the same inputs."""
        module = module.eval()
        with torch.inference_mode():
            ref = module(*inputs.values()).float().numpy()
        runner = self._open(module, inputs, workdir)
        try:
            check_close(runner.run(), ref, self.profile.precision, f"{what} on {self.name}")
        except BaseException:
            runner.close()
            raise
        return runner

    def base_fingerprint(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "precision": self.profile.precision,
            "machine": platform.machine(),
            "torch": torch.__version__,
        }


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
