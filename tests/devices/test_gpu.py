"""GPU paths: run only where CUDA (and TensorRT) are present; skipped on the CPU CI machine."""

import importlib.util
import random

import pytest
import torch

from pipeline.config import resolve_profile
from pipeline.devices import get_backend
from pipeline.devices.timing import measure
from pipeline.model.student import Student, example_inputs
from pipeline.space import SearchSpace

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
trt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
                         reason="needs TensorRT and a CUDA GPU")


def _student():
    space = SearchSpace.from_teacher(384, 6, vocab_size=1000, max_positions=128)
    torch.manual_seed(0)
    return Student(space.sample(random.Random(0))).eval(), example_inputs(2, 32, 1000)


@pytest.mark.gpu
@cuda
def test_torch_cuda_fp16_student(tmp_path):
    backend = get_backend(resolve_profile("gpu", None))
    model, inputs = _student()
    with backend.load(model, inputs, tmp_path) as runner:  # fp16 checked against fp32 PyTorch
        assert runner.run().shape == (2, 32, 384)
        lat = measure([runner.timed_run], warmup=3, rounds=2, runs_per_round=5)[0]
        assert 0 < lat.robust_ms < 1000
    assert backend.fingerprint()["gpu"]


@pytest.mark.tensorrt
@trt
def test_tensorrt_engine_student(tmp_path, monkeypatch):
    from pipeline.devices.tensorrt import timing_cache_path

    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    backend = get_backend(resolve_profile("tensorrt", None))
    model, inputs = _student()
    with backend.load(model, inputs, tmp_path) as runner:
        assert runner.run().shape == (2, 32, 384)
        assert runner.timed_run() > 0
    assert (tmp_path / "model.engine").stat().st_size > 0
    assert timing_cache_path("tensorrt").stat().st_size > 0
