"""Device backends and their registry: a profile's `backend` string names one of these."""

from __future__ import annotations

from pipeline.config import DeviceProfile
from pipeline.devices.base import Backend, Runner
from pipeline.devices.onnxruntime_cpu import OnnxRuntimeCPU
from pipeline.devices.tensorrt import TensorRT
from pipeline.devices.torch_cuda import TorchCUDA
from pipeline.errors import PipelineError

# Modules import their heavy runtimes (tensorrt, CUDA) lazily, so registering them is free.
BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (OnnxRuntimeCPU, TorchCUDA, TensorRT)}


def get_backend(profile: DeviceProfile, require_present: bool = True) -> Backend:
    """The backend a profile names; with require_present, raise DeviceUnavailable if absent."""
    if profile.backend not in BACKENDS:
        raise PipelineError(
            f"profile '{profile.name}' names unknown backend '{profile.backend}'; known: {', '.join(BACKENDS)}"
        )
    backend = BACKENDS[profile.backend](profile)
    if require_present:
        backend.check_available()
    return backend


__all__ = ["BACKENDS", "Backend", "Runner", "get_backend"]
