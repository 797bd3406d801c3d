import random

import numpy as np
import onnxruntime as ort
import pytest
import torch

from pipeline.errors import ExportMismatch
from pipeline.model.student import Student, example_inputs
from pipeline.onnxio import check_close, export_onnx
from pipeline.space import SearchSpace


@pytest.mark.parametrize("seed", range(3))
def test_onnx_matches_pytorch_at_other_batch_and_sequence(tmp_path, seed):
    space = SearchSpace.from_teacher(384, 6, vocab_size=1000, max_positions=64)
    torch.manual_seed(seed)
    model = Student(space.sample(random.Random(seed))).eval()
    path = export_onnx(model, example_inputs(2, 16, 1000), tmp_path / "s.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = example_inputs(3, 40, 1000, seed=5)  # dynamic axes: not the export shape
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        ref = model(**inputs).numpy()
    assert got.shape == (3, 40, 384)
    assert check_close(got, ref, "fp32", "student") < 1e-4


def test_check_close_refuses_a_mismatch():
    ref = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ExportMismatch, match="exceeds"):
        check_close(ref + 0.1, ref, "fp32", "x")
    with pytest.raises(ExportMismatch, match="shape"):
        check_close(ref[:1], ref, "fp32", "x")
    assert check_close(ref + 0.005, ref, "fp16", "x") == pytest.approx(0.005, rel=1e-3)


def test_fp16_students_pass_the_fp16_check():
    """What GPU runners face on load: a half-precision student against the fp32 one (CPU half here)."""
    from pipeline.space import Architecture, Block

    deepest = Architecture(384, 128, tuple(Block(384, ("ffn", "mha", "ffn", "mha")) for _ in range(3)), 1000, 128)
    torch.manual_seed(0)
    model = Student(deepest).eval()
    inputs = example_inputs(2, 64, 1000)
    with torch.no_grad():
        ref = model(**inputs).numpy()
        half = model.half()(**inputs).float().numpy()
    check_close(half, ref, "fp16", "fp16 student")


def test_fp16_graph_export_for_strongly_typed_tensorrt(tmp_path):
    import onnx

    space = SearchSpace.from_teacher(256, 4, vocab_size=1000, max_positions=64)
    model = Student(space.sample(random.Random(0))).eval().half()
    path = export_onnx(model, example_inputs(1, 16, 1000), tmp_path / "half.onnx")
    graph = onnx.load(str(path)).graph
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "sequence"]
