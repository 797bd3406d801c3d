"""ONNX export with dynamic batch and sequence axes, and numerical checks against PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import ExportMismatch

OPSET = 17  # LayerNormalization is a native op from 17; every ORT and TensorRT 10 reads it

# Tolerances of an artifact against the fp32 PyTorch model: |a - b| <= atol + rtol * max|ref|.
TOLERANCE = {"fp32": (1e-4, 1e-4), "fp16": (1e-2, 1e-2)}


def export_onnx(module: nn.Module, inputs: dict[str, torch.Tensor], path: str | Path,
                output_name: str = "last_hidden_state") -> Path:
    """Export `module(**inputs)` with every input's and the output's dims 0, 1 dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "sequence"}
    dynamic = {name: axes for name in [*inputs, output_name]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: 0.1 s a model against ~2 s for dynamo, and profiling exports dozens.
        torch.onnx.export(
            module.eval(), tuple(inputs.values()), str(path), input_names=list(inputs),
            output_names=[output_name], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
        )
    return path


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def check_close(got: np.ndarray, ref: np.ndarray, precision: str, what: str) -> float:
    """Raise ExportMismatch unless got matches ref within the precision's tolerance; return the diff."""
    if got.shape != ref.shape:
        raise ExportMismatch(f"{what}: output shape {got.shape} differs from PyTorch's {ref.shape}")
    atol, rtol = TOLERANCE[precision]
    diff = max_abs_diff(got, ref)
    limit = atol + rtol * float(np.max(np.abs(ref)))
    if not np.isfinite(diff) or diff > limit:
        raise ExportMismatch(f"{what}: max |diff| {diff:.3g} against PyTorch exceeds {limit:.3g} ({precision})")
    return diff
