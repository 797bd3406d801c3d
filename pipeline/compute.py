"""Where training and fine-tuning compute runs (not the target device): one rule for every stage."""

from __future__ import annotations

import torch

from pipeline.errors import PipelineError

CHOICES = ("auto", "cpu", "gpu")  # --device of `train`, --finetune-device, DistillConfig.device


def compute_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """auto: this process's CUDA GPU when there is one, else the CPU; cpu; gpu (a one-line error without
    one). Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "gpu":
        from pipeline.devices.torch_cuda import require_cuda

        require_cuda("gpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    raise PipelineError(f"unknown compute device {name!r}; use {', '.join(CHOICES)}")
