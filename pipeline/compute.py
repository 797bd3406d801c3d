"""Where training and fine-tuning compute runs (not the target device): one rule for every stage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

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


@contextmanager
def placed(device: torch.device, *modules: nn.Module) -> Iterator[None]:
    """The modules on `device` inside the block and back on the CPU after it, even when it fails: the stages
    keep their models on the CPU (export, timing and scoring read them there) and train them where asked."""
    for m in modules:
        m.to(device)
    try:
        yield
    finally:
        for m in modules:
            m.to("cpu")
