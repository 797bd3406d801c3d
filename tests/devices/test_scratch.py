"""Scratch folders of the models a stage loads (a profile's exceed 1 GB): removed on any exception, and, for a
process killed with -9, by the next run of the same kind (issue 46)."""

import os
import subprocess
import sys
import tempfile

import pytest

from pipeline.devices.host import remove_stale, scratch_folder


def dead_pid() -> int:
    """The id of a process that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_only_the_folders_of_dead_processes_are_removed(tmp_path):
    dead = dead_pid()
    stale = tmp_path / f"pipeline-profile-{dead}-abc123"
    (stale / "0").mkdir(parents=True)
    (stale / "0" / "model.onnx").write_bytes(b"x" * 1000)
    mine = tmp_path / f"pipeline-profile-{os.getpid()}-abc123"    # this process: alive
    older = tmp_path / "pipeline-profile-12345678"                  # made before the pid was in the name
    other = tmp_path / f"pipeline-bench-{dead}-abc123"             # another kind: its own runs clean it
    for folder in (mine, older, other):
        folder.mkdir()
    a_file = tmp_path / f"pipeline-profile-{dead}-file"
    a_file.write_text("not ours to remove")
    assert remove_stale("profile", tmp_path) == [stale]
    assert not stale.exists() and mine.is_dir() and older.is_dir() and other.is_dir() and a_file.is_file()


def test_a_scratch_folder_names_its_process_and_is_removed_on_any_exception(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"pipeline-profile-{dead_pid()}-abc123"
    stale.mkdir()
    with pytest.raises(RuntimeError), scratch_folder("profile") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f"pipeline-profile-{os.getpid()}-")
        assert not stale.exists()  # the last killed run's, removed as this one starts
        (tmp / "model.onnx").write_bytes(b"x")
        raise RuntimeError("SIGTERM, as the command line raises it")
    assert list(tmp_path.iterdir()) == []


def test_the_folder_of_a_killed_profile_is_removed_by_the_next(tmp_path):
    code = ("import time\nfrom pipeline.devices.host import scratch_folder\n"
            "with scratch_folder('profile') as tmp:\n    print(tmp, flush=True)\n    time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        folder = tmp_path / os.path.basename(p.stdout.readline().strip())
    finally:
        p.kill()  # -9: no finally, no atexit
        p.wait()
    assert folder.is_dir() and folder.name.startswith(f"pipeline-profile-{p.pid}-")
    assert remove_stale("profile", tmp_path) == [folder] and not folder.exists()


def test_profile_measures_in_a_scratch_folder(tmp_path, monkeypatch, cpu_backend, tiny_space):
    from pipeline.profile.probes import profile_device

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    seen = []

    def load(module, inputs, folder, **kw):
        seen.append(folder)
        raise KeyboardInterrupt  # the user's Ctrl-C while the models load

    monkeypatch.setattr(cpu_backend, "load", load)
    with pytest.raises(KeyboardInterrupt):
        profile_device(cpu_backend, tiny_space, tmp_path / "t.csv", progress=False)
    assert seen[0].parent.name.startswith(f"pipeline-profile-{os.getpid()}-")
    assert list((tmp_path / "tmp").iterdir()) == []
