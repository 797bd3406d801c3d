import pytest
from conftest import write_profile

from pipeline.config import load_profile, resolve_profile, shipped_devices
from pipeline.errors import PipelineError


def test_shipped_devices_resolve():
    assert {"cpu", "gpu", "tensorrt"} <= set(shipped_devices())
    cpu = resolve_profile("cpu", None)
    assert (cpu.backend, cpu.precision, cpu.batch, cpu.seq_lens) == ("onnxruntime-cpu", "fp32", 1, (128,))
    assert resolve_profile("gpu", None).precision == "fp16"
    assert resolve_profile("tensorrt", None).backend == "tensorrt"
    assert resolve_profile(None, None).name == "cpu"


def test_profile_path(tmp_path):
    p = load_profile(write_profile(tmp_path / "board.yaml", name="arm-board", seq_lens=64))
    assert p.name == "arm-board" and p.seq_lens == (64,)
    assert resolve_profile(None, str(tmp_path / "board.yaml")).name == "arm-board"


@pytest.mark.parametrize("overrides, message", [
    ({"rounds": 0}, "'rounds' must be at least 1"),
    ({"warmup": -1}, "non-negative integer"),
    ({"seq_lens": []}, "seq_lens"),
    ({"precision": "int4"}, "fp32 or fp16"),
    ({"colour": "red"}, "unknown setting"),
    ({"backend": ""}, "'backend' must be a non-empty string"),
    ({"min_round_s": "soon"}, "min_round_s"),
    ({"name": "../../escape"}, "'name' must be a plain name"),  # it names the folder of its tables
    ({"name": "/tmp/abs"}, "'name' must be a plain name"),
])
def test_bad_profiles(tmp_path, overrides, message):
    with pytest.raises(PipelineError, match=message):
        load_profile(write_profile(tmp_path / "p.yaml", **overrides))


def test_unknown_device_and_files(tmp_path):
    with pytest.raises(PipelineError, match="unknown device 'tpu'.*cpu, gpu, tensorrt"):
        resolve_profile("tpu", None)
    with pytest.raises(PipelineError, match="not found"):
        resolve_profile(None, str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_profile(tmp_path / "bad.yaml")
    with pytest.raises(PipelineError, match="not both"):
        resolve_profile("cpu", str(tmp_path / "bad.yaml"))
