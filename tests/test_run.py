"""`run` end to end on the tiny teacher: every stage, the summary, and reuse on a second run."""

import json

import pytest

from pipeline.cli import main
from pipeline.run import RunOptions, run_all, summary_lines


@pytest.mark.slow
def test_run_end_to_end_then_reuse(tiny_teacher_tok, tiny_corpus, tiny_table, cpu_backend, tmp_path):
    from conftest import TINY_TRAIN

    out = tmp_path / "run"
    o = RunOptions((40.0,), str(tiny_teacher_tok), str(tiny_corpus), finetune_steps=2, top_t=2, rerank_steps=3,
                   train=TINY_TRAIN)
    logs = []
    report = run_all(cpu_backend, tiny_table, out, o, progress=False, log=logs.append)
    for name in ("report.json", "report.md", "report.csv", "pareto.png", "run.json", "search/search.json",
                 "export/export.json", "train/train_summary.json"):
        assert (out / name).is_file(), name
    (student,) = [s for s in report["students"] if s["precision"] == "fp32"]
    assert student["budget_ms"] == 40.0 and student["predicted_ms"] <= 40.0
    lines = summary_lines(report, out)
    assert len(lines) == 2 and lines[0].startswith("budget 40ms: deploy ") and "faster than the teacher" in lines[0]
    (pick,) = [d["deploy"] for d in report["decisions"]]
    assert f"deploy {pick} (" in lines[0]
    assert lines[1].startswith("budget 40ms met: measured ")
    assert "over the teacher" in lines[1] and "fidelity" in lines[1]
    first = json.loads((out / "run.json").read_text())["stages"]
    assert [s["stage"] for s in first] == ["profile", "train", "search", "export", "benchmark"]

    logs.clear()
    again = run_all(cpu_backend, tiny_table, out, o, progress=False, log=logs.append)
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert [s["reused"] for s in stages if s["stage"] in ("train", "search", "benchmark")] == [True, True, True]
    assert not first[1]["reused"]  # the first run trained its blocks
    assert any("reusing" in line for line in logs)  # the export
    assert sum(s["seconds"] for s in stages) < 0.5 * sum(s["seconds"] for s in first)
    assert again["students"] == report["students"]

    # the task stage appended: every earlier stage reused, the task run on the exported student
    from pipeline.task.train import TaskConfig

    task = tmp_path / "task.jsonl"
    rows = [{"text": f"{w} is a word of the {c} kind", "label": c} for c in ("first", "second") for w in
            ("time", "class", "list", "type", "value", "name", "file", "loop", "call", "test")]
    task.write_text("\n".join(json.dumps(r) for r in rows))
    with_task = RunOptions(**{**o.__dict__, "task_train": str(task),
                              "task_config": TaskConfig(steps=5, teacher_steps=5, adapt_steps=5)})
    report = run_all(cpu_backend, tiny_table, out, with_task, progress=False, log=logs.append)
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert [s["stage"] for s in stages][-1] == "task" and stages[-2]["reused"]
    assert (out / "task" / "task_report.md").is_file()
    kinds = [m["kind"] for m in report["task"]["models"] if m["precision"] == "fp32"]
    assert kinds[:2] == ["teacher", "searched"] and "narrow" in kinds and "pkd" in kinds  # the same baselines
    said = summary_lines(report, out)
    assert any(line.startswith("task task: ") for line in said)
    assert any(line.startswith("task: within ") and "deploy" in line for line in said)  # what to deploy there


@pytest.mark.slow
def test_a_newcomer_runs_from_nothing_without_flags(tiny_teacher_tok, tiny_corpus, tiny_profile_path, tmp_path,
                                                     monkeypatch, capsys):
    """`run --quick` as a user types it, on a machine with no table of its own: it profiles the table
    into the tables folder under <profile>/<fingerprint>.csv, trains with latency bins from it, searches, exports
    and reports; a second run reuses the table."""
    from conftest import TINY_TRAIN

    from pipeline.train.blockwise import TrainConfig

    tables = tmp_path / "tables"
    monkeypatch.setenv("PIPELINE_TABLES", str(tables))
    monkeypatch.setattr(TrainConfig, "quick", lambda self: TINY_TRAIN)  # the tiny teacher's quick schedule
    out = tmp_path / "run"
    argv = ["run", "--profile", str(tiny_profile_path), "--budget", "40ms", "--quick", "--teacher",
            str(tiny_teacher_tok), "--corpus", str(tiny_corpus), "--finetune-steps", "2", "--top", "2",
            "--rerank-steps", "3", "--no-baselines", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    (made,) = list((tables / "tiny-cpu").glob("*.csv"))
    assert f"no latency table of device 'tiny-cpu' for this machine yet: profiling it into {made}" in captured.err
    assert captured.out.startswith("budget 40ms: deploy ") and "\nbudget 40ms met: measured " in captured.out
    summary = json.loads((out / "train" / "train_summary.json").read_text())
    assert summary["bins_by"] == "latency on tiny-cpu and parameters"  # hardware-aware, from the table it made
    assert summary["latency_tables"] == {"tiny-cpu": str(made)}
    assert json.loads((out / "run.json").read_text())["table"] == str(made)
    for name in ("report.md", "search/search.json", "export/export.json"):
        assert (out / name).is_file(), name
    before = made.read_bytes()
    assert main(argv) == 0
    assert "no latency table" not in capsys.readouterr().err and made.read_bytes() == before


@pytest.mark.parametrize("budget", ["fast", "10", "-3ms", "0ms", "3 parsecs"])
def test_run_refuses_bad_budgets_at_once(budget, capsys):
    assert main(["run", "--budget", budget]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a budget is a positive number with a unit" in err


def test_run_refuses_a_device_that_is_not_here(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["run", "--device", "gpu", "--budget", "3ms"]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_run_refuses_bad_rerank_steps_at_once(capsys):
    assert main(["run", "--budget", "3ms", "--rerank-steps", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rerank-steps must be at least 1" in err


def test_run_refuses_bad_nas_kd_steps_at_once(capsys):
    assert main(["run", "--budget", "3ms", "--search-method", "nas-kd", "--naskd-steps", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least one step" in err


@pytest.mark.parametrize("command", [["run", "--budget", "3ms"], ["export", "--arch", "a.json"]])
def test_negative_views_are_refused_at_once(command, capsys):
    assert main([*command, "--finetune-views", "-1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--finetune-views must be 0 or more" in err


def test_the_summary_says_when_the_drift_turns_the_verdict(tmp_path):
    student = {"kind": "searched", "budget_ms": 3.5, "latency_ms": 3.8, "latency_ms_p50": 3.9, "budget_use": 3.8 / 3.5,
               "speedup": 4.0, "fidelity_cosine": 0.7, "model_dir": str(tmp_path / "arch_3.5ms" / "model"),
               "within_budget": False, "latency_ms_at_table_speed": 3.33, "within_budget_at_table_speed": True}
    report = {"teacher": {"latency_ms_p50": 15.6}, "students": [student],
              "machine_drift": {"ratio": 1.143, "percent": 14.3, "students": 4}}
    (line,) = summary_lines(report, tmp_path)
    assert line.startswith("budget 3.5ms NOT met (met at the table's speed: 3.330 ms): measured 3.800 ms")
    assert "the machine ran +14.3% against its latency table" in line and "profile" not in line  # no device named
    (line,) = summary_lines({**report, "device": "cpu"}, tmp_path)
    assert "+14.3% against its latency table; `python -m pipeline profile --device cpu --force` re-measures it" in line
    small = {**report, "device": "cpu", "machine_drift": {"ratio": 1.05, "percent": 5.0, "students": 4}}
    (line,) = summary_lines(small, tmp_path)
    assert "ran +5.0% against its latency table)" in line
    steady = {**student, "latency_ms": 3.4, "within_budget": True, "within_budget_at_table_speed": True}
    (line,) = summary_lines({**report, "students": [steady]}, tmp_path)
    assert line.startswith("budget 3.5ms met: measured 3.400 ms")


def test_the_summary_names_speedup_budgets_and_students_without_a_budget(tmp_path):
    student = {"kind": "searched", "name": "arch_6.448ms", "budget_ms": 6.448, "latency_ms": 6.1,
               "latency_ms_p50": 6.3, "budget_use": 6.1 / 6.448, "speedup": 4.1, "fidelity_cosine": 0.8,
               "model_dir": str(tmp_path / "arch_6.448ms" / "model"), "within_budget": True}
    report = {"teacher": {"latency_ms_p50": 26.0}, "students": [student],
              "speedup_budgets": {"speedups": [{"speedup": 4.0, "budget_ms": 6.448}]}}
    (line,) = summary_lines(report, tmp_path)
    assert line.startswith("budget 4x (6.448ms) met: measured 6.100 ms")
    # `export --arch` students carry no budget: the benchmark's summary still names them, without a verdict
    free = {k: v for k, v in student.items() if k not in ("budget_ms", "budget_use", "within_budget")}
    (line,) = summary_lines({**report, "students": [{**free, "name": "mine"}]}, tmp_path)
    assert line.startswith("mine: measured 6.100 ms (p50 6.300 ms), speedup 4.1x") and "budget" not in line


def test_run_refuses_a_bad_speedup_at_once(capsys):
    assert main(["run", "--budget", "0x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a speed-up must be above zero" in err


@pytest.mark.slow
def test_run_resolves_a_speedup_budget_with_the_teacher_it_timed(tiny_teacher_tok, tiny_corpus, tiny_table,
                                                                 cpu_backend, tmp_path):
    from conftest import TINY_TRAIN

    out = tmp_path / "run"
    # 0.5x: twice the tiny teacher's latency, so that the tiny space's students fit it
    o = RunOptions((), str(tiny_teacher_tok), str(tiny_corpus), finetune_steps=0, top_t=1, rerank="none",
                   baselines=False, train=TINY_TRAIN, speedups=(0.5,))
    logs = []
    report = run_all(cpu_backend, tiny_table, out, o, progress=False, log=logs.append)
    timed = json.loads((out / "teacher_latency.json").read_text())
    record = json.loads((out / "run.json").read_text())["speedup_budgets"]
    (asked,) = record["speedups"]
    assert asked["speedup"] == 0.5 and asked["budget_ms"] == pytest.approx(2 * timed["latency_ms"], rel=1e-3)
    assert record["teacher_ms"] == timed["latency_ms"]
    (student,) = [s for s in report["students"] if s["precision"] == "fp32"]
    assert student["budget_ms"] == asked["budget_ms"]
    assert summary_lines(report, out)[0].startswith(f"budget 0.5x ({student['name'][5:]}): deploy ")
    assert summary_lines(report, out)[1].startswith(f"budget 0.5x ({student['name'][5:]}) met")
    assert any("budgets 0.5x with the teacher at" in line for line in logs)
