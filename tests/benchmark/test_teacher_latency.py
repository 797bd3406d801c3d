"""The teacher timed alone on the device (speed-up budgets): measured once, then kept."""

import json

import pytest

from pipeline.benchmark import teacher as teacher_timing
from pipeline.benchmark.teacher import TEACHER_LATENCY, teacher_latency
from pipeline.model.teacher import load_teacher


def test_the_teacher_is_timed_once_then_reused(tiny_teacher, cpu_backend, tmp_path, monkeypatch):
    teacher = load_teacher(str(tiny_teacher))
    first = teacher_latency(teacher, cpu_backend, tmp_path, log=lambda _m: None)
    assert first["latency_ms"] > 0 and first["device"] == cpu_backend.profile.name
    assert first["latency_ms_p50"] >= first["latency_ms"]  # the minimum is the table's statistic
    assert json.loads((tmp_path / TEACHER_LATENCY).read_text()) == first
    assert (tmp_path / "teacher" / "teacher.opt.onnx").is_file()  # deployed as the benchmark deploys it

    def no_timing(*_a, **_k):
        raise AssertionError("the kept measurement should have been reused")

    monkeypatch.setattr(teacher_timing, "measure_models", no_timing)
    assert teacher_latency(teacher, cpu_backend, tmp_path, log=lambda _m: None) == first
    # another teacher (other weights) is another measurement
    other = load_teacher(str(tiny_teacher))
    with __import__("torch").no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(AssertionError, match="reused"):
        teacher_latency(other, cpu_backend, tmp_path, log=lambda _m: None)
