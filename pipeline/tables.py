"""Which latency table a command uses: this machine's own, found by its fingerprint.

A table belongs to the machine that measured it, so tables live side by side, one per device
profile and fingerprint:

    latency_tables/<profile>/<fingerprint>.csv      ($PIPELINE_TABLES moves latency_tables/)

`run` profiles this machine's table when it is missing; the other commands name the command that
makes it. A table measured elsewhere (`--table` given, another fingerprint) is refused unless the
user asks for it with `--foreign-table`. Where the device is not present here (predicting for a
GPU on a laptop), no fingerprint can be compared: the table given, or the only one of the
profile, is used with a note saying where it was measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import PROFILES_DIR, DeviceProfile, resolve_profile
from pipeline.devices import Backend, get_backend
from pipeline.errors import DeviceUnavailable, PipelineError
from pipeline.latency import LatencyTable, Predictor, describe_fingerprint, fingerprint_hash


def tables_root() -> Path:
    """The folder of every machine's tables: $PIPELINE_TABLES, default ./latency_tables."""
    return Path(os.environ.get("PIPELINE_TABLES", "latency_tables"))


def machine_table(profile: DeviceProfile, fingerprint: dict[str, str]) -> Path:
    """Where the table of this profile measured on the machine with `fingerprint` lives."""
    return tables_root() / profile.name / f"{fingerprint_hash(fingerprint)}.csv"


def profile_command(profile: DeviceProfile) -> str:
    """The `profile` command line that measures this device's table here."""
    shipped = profile.source and Path(profile.source).resolve().parent == PROFILES_DIR
    where = f"--device {profile.name}" if shipped or not profile.source else f"--profile {profile.source}"
    return f"python -m pipeline profile {where}"


@dataclass(frozen=True)
class TableChoice:
    path: Path
    here: dict[str, str] | None  # this machine's fingerprint; None where the device is not present
    given: bool = False          # named by the user (--table), not found by fingerprint


def choose_table(profile: DeviceProfile, backend: Backend, given: str | Path | None) -> TableChoice:
    """The table a command reads: `given`, else this machine's (which may not exist yet)."""
    try:
        backend.check_available()
        here = backend.fingerprint()
    except DeviceUnavailable:
        here = None
    if given:
        return TableChoice(Path(given), here, given=True)
    if here is not None:
        return TableChoice(machine_table(profile, here), here)
    found = sorted((tables_root() / profile.name).glob("*.csv"))
    if len(found) == 1:
        return TableChoice(found[0], None)
    where = tables_root() / profile.name
    if not found:
        raise PipelineError(f"device '{profile.name}' is not present here and {where} holds no table of it; "
                            f"measure one on that machine with `{profile_command(profile)}` and pass --table")
    raise PipelineError(f"device '{profile.name}' is not present here and {where} holds {len(found)} tables of it "
                        f"(one per machine); pass the one to use with --table")


def missing_table(profile: DeviceProfile, path: Path) -> PipelineError:
    return PipelineError(f"no latency table of device '{profile.name}' for this machine at {path}; make it with "
                         f"`{profile_command(profile)}` (about 2 minutes for the default teacher on a 2-core CPU), "
                         "or let `run` make it")


def load_table(profile: DeviceProfile, choice: TableChoice, foreign: bool = False,
               log: Callable[[str], None] = print) -> tuple[LatencyTable, bool | None]:
    """Load the chosen table and refuse one measured elsewhere unless `foreign`.

    Returns (table, matched): matched is None where the device is absent and nothing was compared.
    """
    path = choice.path
    if not path.is_file() and choice.given:
        raise PipelineError(f"latency table not found: {path} (`{profile_command(profile)} --table {path}` "
                            "measures it)")
    if not path.is_file():
        raise missing_table(profile, path)
    table = LatencyTable.load(path)
    for key in ("backend", "precision"):
        if table.fingerprint.get(key) != getattr(profile, key):
            raise PipelineError(f"{path} was measured for {key} {table.fingerprint.get(key)!r}, "
                                f"but device '{profile.name}' is {getattr(profile, key)!r}")
    if choice.here is None:
        log(f"note: device '{profile.name}' is not present here; using {path}, measured on "
            f"{describe_fingerprint(table.fingerprint)}")
        return table, None
    here = choice.here
    if fingerprint_hash(here) == table.fingerprint_hash:
        return table, True
    diff = sorted(k for k in {*here, *table.fingerprint} if here.get(k) != table.fingerprint.get(k))
    msg = (f"{path} was measured on another machine (fingerprint {table.fingerprint_hash}; this one is "
           f"{fingerprint_hash(here)}, it differs in {', '.join(diff)})")
    if not foreign:
        raise PipelineError(msg + f"; measure this machine with `{profile_command(profile)}`, "
                            "or pass --foreign-table to use it anyway")
    log(f"warning: {msg}; using it as asked (--foreign-table)")
    return table, False


def load_predictor(profile: DeviceProfile, choice: TableChoice, seq: int, foreign: bool = False,
                   log: Callable[[str], None] = print) -> tuple[Predictor, bool | None]:
    """The predictor of the chosen table at (profile.batch, seq); see load_table."""
    table, matched = load_table(profile, choice, foreign, log)
    return Predictor(table, profile.batch, seq), matched


def training_table(target: str, given: str | Path | None, foreign: bool = False,
                   log: Callable[[str], None] = print) -> Path | None:
    """The table whose latencies bin training's candidates: `given`, else this machine's table of the
    shipped profile `target` if it exists (None: the bins use parameters only, with a note)."""
    profile = resolve_profile(target, None)
    try:
        choice = choose_table(profile, get_backend(profile, require_present=False), given)
        load_table(profile, choice, foreign, log=log)
    except PipelineError as e:
        if given:
            raise
        log(f"note: {e}")
        return None
    return choice.path
