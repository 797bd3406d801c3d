import argparse
from dataclasses import dataclass

import pytest

from pipeline.cli import main
from pipeline.options import add_options, opt, options_of, same_as


@dataclass(frozen=True)
class Cfg:
    steps: int = opt(7, "how many steps")
    device: str = opt("auto", "where", flag="--cfg-device", choices=("auto", "cpu"))
    cap: int | None = opt(None, "a cap", type=int)
    keep: bool = opt(True, "drop it", flag="--no-keep")
    loud: bool = opt(False, "say more")


@dataclass(frozen=True)
class Other:
    steps: int = same_as(Cfg, "steps")


def _parse(argv, **kw):
    p = argparse.ArgumentParser()
    p.add_argument("--device")  # a flag of another config with a field's name: must not collide
    add_options(p, Cfg, ["steps", "device", "cap", "keep", "loud"], **kw)
    return p, p.parse_args(argv)


def test_defaults_and_help_come_from_the_fields():
    p, args = _parse([])
    assert Cfg(**options_of(args, Cfg, ["steps", "device", "cap", "keep", "loud"])) == Cfg()
    text = p.format_help()
    assert "how many steps (default: 7)" in text and "--cfg-device" in text and "--no-keep" in text
    assert Other().steps == 7


def test_flags_set_the_fields_without_colliding():
    _, args = _parse(["--steps", "3", "--cfg-device", "cpu", "--device", "gpu", "--cap", "5", "--no-keep", "--loud"])
    assert args.device == "gpu"
    assert Cfg(**options_of(args, Cfg, ["steps", "device", "cap", "keep", "loud"])) == Cfg(3, "cpu", 5, False, True)


def test_override_defaults_mean_not_given():
    _, args = _parse(["--steps", "2"], defaults={"steps": None, "cap": None})
    assert options_of(args, Cfg, ["steps", "cap"], skip_none=True) == {"steps": 2}


def test_choices_are_enforced():
    with pytest.raises(SystemExit):
        _parse(["--cfg-device", "tpu"])


def test_a_flag_read_by_its_config_parser_is_a_one_line_error(capsys):
    assert main(["run", "--budget", "5ms", "--max-params", "lots"]) == 1
    assert capsys.readouterr().err.strip().startswith("error: bad parameter count 'lots'")


def test_run_with_no_flags_asks_for_run_options_defaults():
    from pipeline.cli import RUN_FLAGS, build_parser
    from pipeline.run import RunOptions

    args = build_parser().parse_args(["run", "--budget", "3.5ms", "--quick"])
    assert RunOptions((3.5,), **options_of(args, RunOptions, ["teacher", "corpus", "dataset", *RUN_FLAGS])) == \
        RunOptions((3.5,), quick=True)
