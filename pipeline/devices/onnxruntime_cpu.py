"""ONNX Runtime on the CPU (CPUExecutionProvider), fp32, perf_counter around session.run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.devices.base import Backend, Runner, cpu_model
from pipeline.errors import DeviceUnavailable
from pipeline.export import export_onnx


class OrtRunner(Runner):
    def __init__(self, session, feeds: dict[str, np.ndarray]):
        self.session = session
        # Export prunes inputs a graph does not use (an FFN-only probe ignores the mask).
        names = {i.name for i in session.get_inputs()}
        self.feeds = {k: v for k, v in feeds.items() if k in names}

    def run(self) -> np.ndarray:
        return self.session.run(None, self.feeds)[0].astype(np.float32)

    def timed_run(self) -> float:
        t0 = time.perf_counter()
        self.session.run(None, self.feeds)
        return (time.perf_counter() - t0) * 1e3

    def close(self) -> None:
        # Drop the session now: each holds a thread pool, and a profile opens dozens.
        self.session = None


class OnnxRuntimeCPU(Backend):
    name = "onnxruntime-cpu"
    requires = "onnxruntime with CPUExecutionProvider"

    def check_available(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeviceUnavailable(f"device '{self.profile.name}' needs onnxruntime, which is not installed") from None
        if "CPUExecutionProvider" not in ort.get_available_providers():
            raise DeviceUnavailable(f"device '{self.profile.name}': onnxruntime has no CPUExecutionProvider")
        if self.profile.precision != "fp32":
            raise DeviceUnavailable(
                f"device '{self.profile.name}': {self.name} runs fp32 only, the profile asks {self.profile.precision}"
            )

    def fingerprint(self) -> dict[str, str]:
        import onnxruntime as ort

        return {
            **self.base_fingerprint(),
            "cpu": cpu_model(),
            "cores": str(os.cpu_count()),
            "threads": str(self.profile.resolved_threads),
            "onnxruntime": ort.__version__,
        }

    def session_options(self):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.profile.resolved_threads
        so.inter_op_num_threads = 1  # sequential graph: no second pool fighting for 2 cores
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return so

    def open_onnx(self, path: Path, inputs: dict[str, torch.Tensor]) -> OrtRunner:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), self.session_options(), providers=["CPUExecutionProvider"])
        return OrtRunner(session, {k: v.numpy() for k, v in inputs.items()})

    def _open(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path) -> Runner:
        return self.open_onnx(export_onnx(module, inputs, Path(workdir) / "model.onnx"), inputs)
