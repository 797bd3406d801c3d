"""export.json as `task` and `benchmark` read it (issue 46): not a list of students, or students without what
they need, is one line naming the file and the fix, the same for both; a student's name that would leave the
output folder is refused before any work."""

import json

import pytest
from conftest import summary_only_train_dir

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.export import EXPORT, read_export
from pipeline.task.job import exported_students, run_task

# Every field benchmark and task read of a student, as export writes them.
STUDENT = {"name": "arch_a", "key": "k", "model_dir": "/nowhere/model", "describe": "d", "params": 1, "flops": 1,
           "search": {}, "finetune": {"steps": 0}, "artifacts": [], "onnx_path": "/nowhere/a.onnx",
           "onnx_plain_path": "/nowhere/b.onnx"}
DAMAGED = {"empty object": {}, "a student of nothing": {"models": [{}]}, "not a list": {"models": "x"},
           "no students": {"models": []}, "a student that is not an object": {"models": [1]},
           "a student without its folder": {"models": [{"name": "a", "key": "k"}]}}


@pytest.fixture
def train_dir(tmp_path, tiny_space):
    return summary_only_train_dir(tmp_path / "train", tiny_space)


def export_dir(tmp_path, record, train_dir=None):
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    if train_dir is not None and isinstance(record, dict):
        record = {**record, "train_dir": str(train_dir)}
    (folder / EXPORT).write_text(json.dumps(record))
    return folder


@pytest.fixture
def task_files(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f"example number {i},{'ab'[i % 2]}\n" for i in range(40)))
    return path


def one_error_line(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    (line,) = [x for x in err.strip().splitlines() if x.startswith("error: ")]
    return line


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_task_and_benchmark_refuse_a_damaged_export_record_alike(case, tmp_path, task_files, tiny_profile_path,
                                                                  train_dir, capsys):
    folder = export_dir(tmp_path, DAMAGED[case], train_dir)
    with pytest.raises(PipelineError) as e:
        exported_students(folder)
    msg = str(e.value)
    assert str(folder / EXPORT) in msg and "run `export` again" in msg and "\n" not in msg, msg
    task = one_error_line(capsys, ["task", "--export-dir", str(folder), "--train", str(task_files),
                                   "--profile", str(tiny_profile_path), "--out", str(tmp_path / "t")])
    bench = one_error_line(capsys, ["benchmark", "--export-dir", str(folder), "--profile", str(tiny_profile_path),
                                    "--out", str(tmp_path / "b"), "--no-baselines", "--json"])
    assert task == f"error: {msg}"
    # benchmark reads more of each student, so it may name more missing fields: otherwise the same line
    assert bench.split(" (")[0] == task.split(" (")[0] and bench.endswith("; run `export` again"), bench


def test_a_sound_export_record_reads(tmp_path):
    folder = export_dir(tmp_path, {"models": [STUDENT]})
    assert read_export(folder)["models"] == [STUDENT]
    assert [s["name"] for s in exported_students(folder)] == ["arch_a"]


def test_student_names_that_leave_the_output_folder_are_refused_before_any_work(tmp_path, cpu_backend,
                                                                               monkeypatch):
    import pipeline.model.teacher as teacher

    def work(*a, **k):
        raise AssertionError("work started before the names were checked")

    monkeypatch.setattr(teacher, "load_teacher", work)
    for name in ("../escape", "/abs", "a/../../b"):
        folder = export_dir(tmp_path, {"models": [{**STUDENT, "name": name}]})
        with pytest.raises(PipelineError, match="leaves its folder|not a file name") as e:
            run_task(None, exported_students(folder), cpu_backend, tmp_path / "task", None)
        assert str(folder / EXPORT) in str(e.value) and "model name" in str(e.value)


def test_benchmark_refuses_student_names_that_leave_its_folder(tmp_path, cpu_backend, train_dir):
    from pipeline.benchmark.job import Bench

    folder = export_dir(tmp_path, {"models": [{**STUDENT, "name": "../../escape"}]}, train_dir)
    with pytest.raises(PipelineError, match="leaves its folder") as e:
        Bench(folder, cpu_backend, tmp_path / "bench", None)
    assert str(folder / EXPORT) in str(e.value)


@pytest.mark.parametrize("names", [["teacher"], ["pkd_2"], ["a", "a"], ["."], ["a b/"]])
def test_student_names_that_are_not_their_own_are_refused_before_any_work(tmp_path, cpu_backend, monkeypatch,
                                                                          names):
    """A student named "teacher" shared the teacher's folder and timing, and the report said to deploy it."""
    import pipeline.model.teacher as teacher

    monkeypatch.setattr(teacher, "load_teacher", lambda *a, **k: pytest.fail("work started before the check"))
    folder = export_dir(tmp_path, {"models": [{**STUDENT, "name": n} for n in names]})
    with pytest.raises(PipelineError, match="not a name of its own|leaves its folder"):
        run_task(None, exported_students(folder), cpu_backend, tmp_path / "task", None)


def test_a_missing_student_folder_is_named_before_any_work(tmp_path, cpu_backend, monkeypatch):
    import pipeline.model.teacher as teacher

    monkeypatch.setattr(teacher, "load_teacher", lambda *a, **k: pytest.fail("work started before the check"))
    folder = export_dir(tmp_path, {"models": [STUDENT]})
    with pytest.raises(PipelineError, match="/nowhere/model, is missing"):
        run_task(None, exported_students(folder), cpu_backend, tmp_path / "task", None)
