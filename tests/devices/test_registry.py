import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import resolve_profile
from pipeline.devices import BACKENDS, Runner, get_backend
from pipeline.devices.onnxruntime_cpu import OnnxRuntimeCPU
from pipeline.errors import DeviceUnavailable, ExportMismatch, PipelineError

HAS_CUDA = torch.cuda.is_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_registry_holds_the_three_backends():
    assert set(BACKENDS) == {"onnxruntime-cpu", "torch-cuda", "tensorrt"}
    assert get_backend(resolve_profile("cpu", None)).name == "onnxruntime-cpu"


def test_unknown_backend_is_an_error():
    p = dataclasses.replace(resolve_profile("cpu", None), backend="vulkan")
    with pytest.raises(PipelineError, match="unknown backend 'vulkan'"):
        get_backend(p)


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present here")
def test_gpu_absent_names_what_is_missing():
    with pytest.raises(DeviceUnavailable, match="needs a CUDA GPU.*is_available"):
        get_backend(resolve_profile("gpu", None))
    # predict-style use: the backend exists but reports itself absent
    with pytest.raises(DeviceUnavailable):
        get_backend(resolve_profile("gpu", None), require_present=False).check_available()


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is importable here")
def test_tensorrt_absent_names_what_is_missing():
    with pytest.raises(DeviceUnavailable, match="TensorRT Python package"):
        get_backend(resolve_profile("tensorrt", None))


class _Wrong(Runner):
    """A runner whose numbers are off, as a broken export's would be."""

    def run(self) -> np.ndarray:
        return np.zeros((1, 8, 4), dtype=np.float32)

    def timed_run(self) -> float:
        return 0.0

    def close(self) -> None:
        self.closed = True


class _Broken(OnnxRuntimeCPU):
    def _open(self, module, inputs, workdir: Path, onnx_path=None) -> Runner:
        return _Wrong()


def test_every_runner_is_checked_against_pytorch(tmp_path):
    backend = _Broken(resolve_profile("cpu", None))
    module = torch.nn.Linear(4, 4)
    with pytest.raises(ExportMismatch, match="against PyTorch"):
        backend.load(module, {"x": torch.randn(1, 8, 4) + 5}, tmp_path)
