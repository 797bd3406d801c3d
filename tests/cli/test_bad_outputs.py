"""An output folder the stage cannot write (an existing file, a read-only folder, a path under /proc) is a
one-line error naming it, given before any work (issue 46: export failed after 20 s, profile after 33 s)."""

import os
import random

import pytest
from conftest import summary_only_train_dir

from pipeline.cli import main
from pipeline.space import save_architecture


def bad_folder(tmp_path, how):
    """A folder no stage can write into."""
    if how == "file":
        path = tmp_path / "taken"
        path.write_text("mine")
        return path
    if how == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        path = tmp_path / "locked"
        path.mkdir()
        path.chmod(0o555)
        return path
    return "/proc/pipeline-out"


@pytest.fixture
def argv_for(tmp_path, tiny_teacher, tiny_space, tiny_profile_path):
    """The command of a stage, writing into `out`."""
    from pipeline.model.hf import save_student
    from pipeline.model.student import Student

    arch = save_architecture(tiny_space.sample(random.Random(0)), tmp_path / "arch.json")
    profile, train = str(tiny_profile_path), str(summary_only_train_dir(tmp_path / "train", tiny_space))
    student = save_student(Student(tiny_space.sample(random.Random(0))), tmp_path / "student")
    examples = tmp_path / "task.csv"
    examples.write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))

    def argv(stage, out):
        return {
            "space": ["space", "--teacher", str(tiny_teacher), "--sample", "1", "--out", str(out)],
            "search": ["search", "--profile", profile, "--budget", "5ms", "--train-dir", train, "--out", str(out),
                       "--quiet"],
            "export": ["export", "--profile", profile, "--arch", str(arch), "--train-dir", train, "--out", str(out),
                       "--quiet"],
            "profile": ["profile", "--profile", profile, "--teacher", str(tiny_teacher), "--table",
                        f"{out}/t.csv", "--quiet"],
            "bundle": ["bundle", f"{out}/bundle"],
            "run": ["run", "--profile", profile, "--teacher", str(tiny_teacher), "--budget", "5ms", "--table",
                    str(tmp_path / "t.csv"), "--out", str(out), "--quiet"],
            "train": ["train", "--teacher", str(tiny_teacher), "--quick", "--out", str(out), "--quiet"],
            "benchmark": ["benchmark", "--profile", profile, "--export-dir", str(tmp_path), "--out", str(out)],
            "task": ["task", "--profile", profile, "--student", str(student), "--train", str(examples),
                     "--out", str(out), "--quiet"],
        }[stage]
    return argv


@pytest.mark.parametrize("how", ["file", "read-only", "proc"])
@pytest.mark.parametrize("stage", ["space", "search", "export", "profile", "bundle", "run", "train", "benchmark",
                                   "task"])
def test_an_unwritable_output_is_a_one_line_error_before_any_work(stage, how, tmp_path, argv_for, capsys,
                                                                   monkeypatch):
    import pipeline.model.teacher as teacher
    import pipeline.profile.job as profile_job
    import pipeline.profile.probes as probes

    def work(*a, **k):
        raise AssertionError("work started before the output folder was checked")

    if stage == "bundle":  # the bundle's first work: finding the teacher to copy
        monkeypatch.setattr(teacher, "resolve_teacher", work)
    import pipeline.benchmark.job as benchmark_job
    import pipeline.task.job as task_job
    import pipeline.train.job as train_job

    monkeypatch.setattr(train_job, "run_train", work)
    monkeypatch.setattr(benchmark_job, "run_benchmark", work)
    monkeypatch.setattr(task_job, "run_task", work)
    monkeypatch.setattr(profile_job, "profile_device", work)  # profile's and run's first work: measuring
    monkeypatch.setattr(probes, "profile_device", work)
    bad = bad_folder(tmp_path, how)
    code = main(argv_for(stage, bad))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    *notes, line = err.strip().splitlines()  # train may note first that this machine has no table yet
    assert all(n.startswith("note: ") for n in notes), err
    assert line.startswith("error: ") and str(bad) in line and "give another path" in line, err


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS", "EACCES"])
def test_a_full_disk_mid_stage_is_one_line(code, monkeypatch, capsys, tmp_path):
    """What the machine refuses half-way (the disk fills while a stage writes) is one line, not a traceback."""
    import errno

    from pipeline.cli.commands import COMMANDS

    def full(_args):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(tmp_path / "model.onnx"))

    monkeypatch.setitem(COMMANDS, "space", full)
    assert main(["space"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {os.strerror(getattr(errno, code))} writing {tmp_path / 'model.onnx'}")


def test_an_oserror_that_is_a_bug_keeps_its_traceback(monkeypatch):
    from pipeline.cli.commands import COMMANDS

    def bug(_args):
        raise FileNotFoundError(2, "No such file or directory", "a-path-the-code-got-wrong")

    monkeypatch.setitem(COMMANDS, "space", bug)
    with pytest.raises(FileNotFoundError):
        main(["space"])
