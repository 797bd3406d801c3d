import random

import torch

from pipeline.model.student import Student, example_inputs
from pipeline.space import SearchSpace


def test_load_run_and_time_a_student(cpu_backend, tmp_path):
    space = SearchSpace.from_teacher(256, 4, vocab_size=1000, max_positions=64)
    torch.manual_seed(0)
    student = Student(space.sample(random.Random(2))).eval()
    inputs = example_inputs(2, 16, 1000)
    with cpu_backend.load(student, inputs, tmp_path) as runner:  # checked against PyTorch on load
        out = runner.run()
        assert out.shape == (2, 16, 256)
        assert runner.timed_run() > 0
    assert (tmp_path / "model.onnx").is_file()


def test_fingerprint_names_the_hardware_and_software(cpu_backend):
    fp = cpu_backend.fingerprint()
    assert fp["backend"] == "onnxruntime-cpu" and fp["threads"] == "1"
    assert {"cpu", "cpu_vendor", "cpu_id", "isa", "cache", "onnxruntime", "precision"} <= set(fp)
    # what ONNX Runtime inference does not depend on stays out, so that it never makes a table foreign
    assert not {"torch", "cores"} & set(fp)
