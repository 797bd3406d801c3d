"""Number flags: what float() and the count parser let through (nan, inf, a count under one) is a
one-line error naming the flag, before any work."""

import pytest

from pipeline.cli import main
from pipeline.cli.commands import COMMANDS
from pipeline.cli.parser import build_parser


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """A flag let through runs nothing (it returns 0, and the test fails) instead of training."""
    for command in ("search", "run", "task"):
        monkeypatch.setitem(COMMANDS, command, lambda args: 0)


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("command", ["search", "run"])
@pytest.mark.parametrize("count", ["0.5", "0.0004k", "0"])
def test_a_parameter_count_under_one_is_an_error_not_no_cap(capsys, command, count):
    err = _error(capsys, [command, "--budget", "5ms", "--max-params", count])
    assert err.startswith("error: bad parameter count") and repr(count) in err and "500k" in err


def test_a_fractional_count_with_a_unit_is_read():
    args = build_parser().parse_args(["run", "--budget", "5ms", "--max-params", "0.5M"])
    assert args.max_params == 500_000


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "NaN", "Infinity"])
@pytest.mark.parametrize("flag", ["--task-lr", "--alpha", "--temperature", "--beta", "--student-dropout"])
def test_a_task_float_flag_that_is_not_finite_is_an_error(capsys, tmp_path, flag, value):
    err = _error(capsys, ["task", "--student", str(tmp_path), f"{flag}={value}"])
    assert err == f"error: {flag} takes a finite number, not {value!r}"


@pytest.mark.parametrize("value", ["0", "-1e-4"])
def test_a_task_learning_rate_must_be_positive(capsys, tmp_path, monkeypatch, value):
    import pipeline.cli.commands as commands
    import pipeline.task.job as job

    monkeypatch.setitem(COMMANDS, "task", commands.cmd_task)  # TaskConfig checks the rate's sign
    monkeypatch.setattr(job, "load_task", lambda *a, **k: pytest.fail("a bad rate reached the task"))
    assert "--task-lr must be positive" in _error(capsys, ["task", "--student", str(tmp_path), f"--task-lr={value}"])


@pytest.mark.parametrize("command", ["search", "run"])
@pytest.mark.parametrize("flag", ["--margin", "--min-readout"])
def test_a_search_float_flag_that_is_not_finite_is_an_error(capsys, command, flag):
    err = _error(capsys, [command, "--budget", "5ms", flag, "nan"])
    assert err == f"error: {flag} takes a finite number, not 'nan'"


def test_a_float_flag_that_is_not_a_number_is_an_error(capsys):
    assert _error(capsys, ["run", "--budget", "5ms", "--margin", "lots"]) == \
        "error: --margin takes a finite number, not 'lots'"


def test_finite_floats_are_read():
    args = build_parser().parse_args(["task", "--student", "x", "--task-lr", "1e-4", "--alpha", "0.5"])
    assert (args.task_lr, args.alpha) == (1e-4, 0.5)
