import shutil

import pytest

from pipeline.errors import PipelineError
from pipeline.profile.job import run_profile


def test_a_complete_table_is_reused_and_described(tiny_table, tiny_space, cpu_backend, tmp_path):
    path = tmp_path / "t.csv"
    shutil.copy(tiny_table, path)
    lines: list[str] = []
    table, added = run_profile(cpu_backend, tiny_space, path, progress=False, log=lines.append)
    assert added == 0 and len(table.df) > 0
    assert lines and lines[0].startswith("profiling device")  # nothing measured: no calibration lines
    assert not any(line.startswith("seq ") for line in lines)


def test_a_foreign_table_is_refused_before_any_work(tiny_table, tiny_space, cpu_backend, tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    shutil.copy(tiny_table, path)
    here = {**cpu_backend.fingerprint(), "cpu": "Another CPU"}
    monkeypatch.setattr(cpu_backend, "fingerprint", lambda: here)
    with pytest.raises(PipelineError, match="another machine"):
        run_profile(cpu_backend, tiny_space, path, progress=False, log=lambda _: None)
