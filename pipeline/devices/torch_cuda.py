"""PyTorch on CUDA in inference mode (fp16 by default), timed with synchronised CUDA events."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.devices.base import Backend, Runner
from pipeline.devices.host import cpu_model
from pipeline.errors import DeviceUnavailable

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def gpu_fingerprint() -> dict[str, str]:
    """The GPU fields of a fingerprint (torch-cuda and tensorrt), each with why it changes latency."""
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "unknown"
    return {
        "gpu": props.name,                                          # the chip and its clocks
        "gpu_sms": str(props.multi_processor_count),               # a MIG slice has fewer SMs under one name
        "gpu_memory_gib": f"{props.total_memory / 2**30:.0f}",      # SKUs of one chip differ in memory bandwidth
        "compute_capability": f"{props.major}.{props.minor}",      # which kernels exist (tensor-core generations)
        "driver": driver,                                           # launch overhead and JIT differ by driver
        "cuda": str(torch.version.cuda),                            # the CUDA libraries' kernels (cuBLAS, cuDNN)
        # At batch 1 a small student is bound by kernel launches, which the host CPU issues.
        "host_cpu": cpu_model(),
    }


def require_cuda(device_name: str) -> None:
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise DeviceUnavailable(
            f"device '{device_name}' needs a CUDA GPU, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, {build})"
        )


class CudaRunner(Runner):
    def __init__(self, module: nn.Module, inputs: dict[str, torch.Tensor]):
        self.module, self.inputs = module, list(inputs.values())
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def run(self) -> np.ndarray:
        with torch.inference_mode():
            return self.module(*self.inputs).float().cpu().numpy()

    def timed_run(self) -> float:
        with torch.inference_mode():
            self.start.record()
            self.module(*self.inputs)
            self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end)

    def close(self) -> None:
        del self.module, self.inputs
        torch.cuda.empty_cache()


class TorchCUDA(Backend):
    name = "torch-cuda"
    requires = "a CUDA GPU visible to torch"

    def check_available(self) -> None:
        require_cuda(self.profile.name)

    def fingerprint(self) -> dict[str, str]:
        # torch's own kernels run the model here, so its version is part of the latency.
        return {**self.base_fingerprint(), **gpu_fingerprint(), "torch": torch.__version__}

    def _open(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
              onnx_path: Path | None = None) -> Runner:
        dtype = DTYPES[self.profile.precision]
        gpu_module = copy.deepcopy(module).to("cuda", dtype).eval()
        # Float inputs follow the precision; token ids and masks stay integer.
        gpu_inputs = {k: (v.to("cuda", dtype) if v.is_floating_point() else v.to("cuda")) for k, v in inputs.items()}
        return CudaRunner(gpu_module, gpu_inputs)

    def peak_memory_mb(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
                       onnx_path: Path | None = None) -> float | None:
        """Peak CUDA memory allocated by torch while the model is loaded and run once."""
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with self._open(module, inputs, workdir) as runner:
            runner.run()
            peak = torch.cuda.max_memory_allocated()
        return (peak - before) / 2**20
