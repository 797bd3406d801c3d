import pytest
import torch

from pipeline.compute import compute_device
from pipeline.errors import DeviceUnavailable, PipelineError


def test_one_rule_for_where_compute_runs():
    assert compute_device("cpu") == torch.device("cpu")
    assert compute_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(PipelineError, match="unknown compute device 'tpu'"):
        compute_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="CUDA"):
            compute_device("gpu")
