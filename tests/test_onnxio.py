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


def test_int8_settings_follow_whether_the_cpus_int8_dot_product_saturates(tmp_path):
    from pipeline.onnxio import INT8, INT8_SATURATING, int8_for, quantize_int8

    assert int8_for("sse4_2 avx avx2 fma") == INT8_SATURATING and INT8_SATURATING.reduce_range  # Zen 3
    assert int8_for("avx2 avx512f avx512_vnni") == INT8 == int8_for("avx2 avx_vnni")          # Zen 4, Alder Lake
    assert int8_for("asimd asimddp i8mm") == INT8 == int8_for("none")                            # Arm, unknown
    assert "per channel" in INT8.describe() and "reduced range" in INT8_SATURATING.describe()
    # the file: MatMuls quantised, the (depthwise) convolutions left in fp32, and it runs at any shape
    import onnx

    space = SearchSpace.from_teacher(128, 4, vocab_size=500, max_positions=64)
    arch = next(a for a in (space.sample(random.Random(i)) for i in range(50))
                if any("conv" in op for b in a.blocks for op in b.layers))
    torch.manual_seed(0)
    model = Student(arch).eval()
    plain = export_onnx(model, example_inputs(1, 16, 500), tmp_path / "m.onnx")
    q = quantize_int8(plain, tmp_path / "m.int8.onnx", INT8)
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert "MatMulInteger" in ops and "ConvInteger" not in ops and "Conv" in ops
    inputs = example_inputs(2, 9, 500)
    got = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(
        None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        ref = model(**inputs).numpy()
    assert got.shape == ref.shape and np.isfinite(got).all()
