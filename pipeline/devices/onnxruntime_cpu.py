"""ONNX Runtime on the CPU (CPUExecutionProvider), fp32, perf_counter around session.run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.devices.base import Backend, Runner
from pipeline.devices.host import cpu_fingerprint
from pipeline.errors import DeviceUnavailable
from pipeline.onnxio import export_onnx, ort_session_of

_MEMORY_PROBE = """
import json, sys
import numpy as np, onnxruntime as ort
def status_mb(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1024
path, threads, shapes = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
base = status_mb("VmRSS")
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
names = {i.name for i in s.get_inputs()}
s.run(None, {k: np.ones(v, dtype=np.int64) for k, v in shapes.items() if k in names})
print(json.dumps({"base_mb": base, "peak_mb": status_mb("VmHWM")}))
"""


def onnx_peak_memory_mb(path: Path, inputs: dict[str, torch.Tensor], threads: int) -> float | None:
    """Peak RSS growth of a fresh process that opens `path` and runs it once (Linux; None elsewhere)."""
    if not Path("/proc/self/status").exists():
        return None
    shapes = json.dumps({k: list(v.shape) for k, v in inputs.items()})
    try:
        out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path), str(threads), shapes],
                             capture_output=True, text=True, timeout=300, check=True).stdout
        probe = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return probe["peak_mb"] - probe["base_mb"]


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
    onnx = "onnxruntime"

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
        """Left out on purpose: the torch version (torch only writes the ONNX graph, at a fixed
        opset; ONNX Runtime runs it) and the number of cores (a session uses `threads` of them; the
        idle rest does not change its latency)."""
        import onnxruntime as ort

        return {
            **self.base_fingerprint(),
            **cpu_fingerprint(),
            # Intra-op threads of every session: 1 and 2 threads are different latencies.
            "threads": str(self.profile.resolved_threads),
            # Its kernels, graph fusions and thread pool change from release to release.
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
        session = ort_session_of(path, self.session_options())
        return OrtRunner(session, {k: v.numpy() for k, v in inputs.items()})

    def _open(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
              onnx_path: Path | None = None) -> Runner:
        if onnx_path is None:
            onnx_path = export_onnx(module, inputs, Path(workdir) / "model.onnx")
        return self.open_onnx(onnx_path, inputs)

    def peak_memory_mb(self, module: nn.Module, inputs: dict[str, torch.Tensor], workdir: Path,
                       onnx_path: Path | None = None) -> float | None:
        """Resident memory a fresh process gains by opening the session and running once (its peak
        RSS, VmHWM, minus its RSS with onnxruntime imported): ONNX Runtime allocates outside Python,
        so only the operating system sees it, and only a process of its own gives a clean peak.
        (Not getrusage's ru_maxrss: a child started by fork + exec inherits the parent's.)"""
        if onnx_path is None:
            onnx_path = export_onnx(module, inputs, Path(workdir) / "model.onnx")
        return onnx_peak_memory_mb(onnx_path, inputs, self.profile.resolved_threads)
