"""benchmarks/device_check.sh where it can run: without a CUDA GPU it skips every step and says why."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script runs for real (minutes)")
def test_device_check_without_a_gpu_skips_every_step_and_says_why(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "SKIPPED gpu tests, run --device gpu --budget 4x --quick, distill_speed on CUDA: no CUDA GPU" in summary
    assert "torch " in summary  # which torch it found
    assert not list((tmp_path / "out").glob("*.log"))  # no step ran
