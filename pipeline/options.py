"""Command-line flags read from config dataclasses: a default, its reason and its help live in one place.

A field made with `opt(default, help)` becomes `--field-name` (or the `flag` it names) with that default
and help; `add_options` adds such fields to a parser and `options_of` reads them back from the parsed
arguments, so a command builds its config with `Config(**options_of(args, Config, names))`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.errors import PipelineError


def opt(default: Any, help: str, *, flag: str | None = None, type: Callable[[str], Any] | None = None,
        choices: Iterable[str] | None = None, metavar: str | None = None) -> Any:
    """A dataclass field that is also a command-line flag. `type` is needed where the default is None."""
    meta = {"help": help, "flag": flag, "type": type, "choices": tuple(choices) if choices else None,
            "metavar": metavar}
    return dataclasses.field(default=default, metadata=meta)


def finite_float(flag: str) -> Callable[[str], float]:
    """The type of a float flag: float() also reads nan and inf, which no setting means and which pass
    the configs' range checks (`nan <= 0` is false). A PipelineError, so one line that names the flag."""
    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise PipelineError(f"{flag} takes a finite number, not {text!r}")
        return value
    return read


def same_as(cls: type, name: str) -> Any:
    """A field with the default, help and flag of `cls.name` (a run option passed on to a stage's config)."""
    f = _field(cls, name)
    return dataclasses.field(default=f.default, metadata=dict(f.metadata))


def flag_of(cls: type, name: str) -> str:
    f = _field(cls, name)
    return f.metadata.get("flag") or "--" + name.replace("_", "-")


def dest_of(cls: type, name: str) -> str:
    """The attribute of the parsed arguments: named after the flag (--finetune-device: finetune_device), so
    fields of two configs with one name (DistillConfig.device, --device) do not collide; a switch keeps its
    field's name, so --no-baselines sets `baselines` to False."""
    if isinstance(_field(cls, name).default, bool):
        return name
    return flag_of(cls, name).lstrip("-").replace("-", "_")


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def add_options(parser: argparse.ArgumentParser | argparse._ActionsContainer, cls: type, names: Iterable[str],
                defaults: dict[str, Any] | None = None) -> None:
    """Add the flags of `cls`'s fields `names`. `defaults` overrides a field's default for this command
    (None: "not given", for flags that override a schedule)."""
    defaults = defaults or {}
    for name in names:
        f = _field(cls, name)
        meta = f.metadata
        if "help" not in meta:
            raise KeyError(f"{cls.__name__}.{name} is not an opt() field")
        default = defaults.get(name, f.default)
        kw: dict[str, Any] = {"dest": dest_of(cls, name), "default": default, "help": meta["help"]}
        if isinstance(f.default, bool):
            # A flag names the non-default behaviour: --int8 for False, --no-baselines for True.
            kw["action"] = "store_false" if f.default else "store_true"
        else:
            kind = meta["type"] or type(f.default)
            kw["type"] = finite_float(flag_of(cls, name)) if kind is float else kind
            if meta["choices"]:
                kw["choices"] = meta["choices"]
            kw["metavar"] = meta["metavar"] or flag_of(cls, name).split("-")[-1].upper()
            if default is not None:
                kw["help"] += " (default: %(default)s)"
        parser.add_argument(flag_of(cls, name), **kw)


def options_of(args: argparse.Namespace, cls: type, names: Iterable[str], skip_none: bool = False) -> dict[str, Any]:
    """The values of `names` from parsed arguments; skip_none leaves out flags not given (overrides)."""
    values = {name: getattr(args, dest_of(cls, name)) for name in names}
    return {k: v for k, v in values.items() if not (skip_none and v is None)}
