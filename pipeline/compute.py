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


# How the training arithmetic runs (DistillConfig's loop, supernet training, the task stage): bf16 only where
# the hardware does bf16 arithmetic. On a CPU without it (AVX2, AVX-512 without BF16) PyTorch emulates bf16
# with conversions around fp32 kernels, which is slower than fp32 itself.
PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_ISA = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16, Sapphire Rapids' AMX, Arm's BF16


def bf16_native(device: torch.device) -> bool:
    """Whether `device` does bf16 arithmetic in hardware: a CUDA GPU from Ampere on, or a CPU with one of
    BF16_CPU_ISA (read from /proc/cpuinfo, devices/host.py)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from pipeline.devices.host import cpu_fingerprint

    return any(f in cpu_fingerprint()["isa"].split() for f in BF16_CPU_ISA)


def train_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of `precision` on `device`: auto is bf16 where bf16_native, fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise PipelineError(f"unknown training precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.bfloat16 if bf16_native(device) else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):  # -> a context manager
    """Forward passes under `dtype` (matmuls and convolutions in bf16, reductions and losses in fp32 by
    autocast's own lists); master weights and optimiser states stay fp32. A no-op for fp32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def adamw(params, lr: float, weight_decay: float, fused: bool = True) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the parameters' device (CPU and CUDA since torch
    2.4): one pass over every tensor instead of a Python loop of a dozen ops per tensor, the same update up to
    rounding. The per-tensor loop where the fused kernel is missing or refused."""
    params = list(params)
    if fused:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
