"""Which latency table a command uses: this machine's by fingerprint, a foreign one only when asked."""

import shutil

import pytest

from pipeline.config import load_profile
from pipeline.devices import get_backend
from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable
from pipeline.tables import choose_table, load_table, machine_table, profile_command, tables_root


def test_this_machines_table_is_named_by_profile_and_fingerprint(cpu_backend, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_TABLES", str(tmp_path / "tables"))
    profile = cpu_backend.profile
    choice = choose_table(profile, cpu_backend, None)
    assert not choice.given and choice.here == cpu_backend.fingerprint()
    assert choice.path == tmp_path / "tables" / "tiny-cpu" / f"{LatencyTable.empty(choice.here).fingerprint_hash}.csv"
    assert choice.path == machine_table(profile, cpu_backend.fingerprint()) and tables_root() == tmp_path / "tables"
    with pytest.raises(PipelineError, match="no latency table of device 'tiny-cpu' for this machine") as e:
        load_table(profile, choice)
    assert f"`python -m pipeline profile --profile {profile.source}`" in str(e.value)
    given = choose_table(profile, cpu_backend, tmp_path / "mine.csv")
    assert given.given and given.path == tmp_path / "mine.csv"
    with pytest.raises(PipelineError, match="latency table not found"):
        load_table(profile, given)


def test_profile_command_names_a_shipped_device_by_name():
    from pipeline.config import resolve_profile

    assert profile_command(resolve_profile("cpu", None)) == "python -m pipeline profile --device cpu"


def test_a_foreign_table_is_refused_unless_asked(tiny_table, tmp_path):
    from conftest import write_profile

    two = load_profile(write_profile(tmp_path / "two.yaml", threads=2))  # same runtime, other thread count
    backend = get_backend(two)
    choice = choose_table(two, backend, tiny_table)
    with pytest.raises(PipelineError, match="measured on another machine .* differs in threads"):
        load_table(two, choice)
    notes = []
    table, matched = load_table(two, choice, foreign=True, log=notes.append)
    assert matched is False and len(table.df) and notes[0].startswith("warning:")
    one = load_profile(write_profile(tmp_path / "one.yaml"))
    _, matched = load_table(one, choose_table(one, get_backend(one), tiny_table))
    assert matched is True


def test_an_absent_device_uses_the_only_table_of_its_profile(tiny_table, tmp_path, monkeypatch):
    """Predicting for a device that is not here (a GPU on a laptop): its one table, with a note."""
    from conftest import write_profile

    class Absent(type(get_backend(load_profile(write_profile(tmp_path / "p.yaml"))))):
        def check_available(self):
            from pipeline.errors import DeviceUnavailable

            raise DeviceUnavailable("not here")

    monkeypatch.setenv("PIPELINE_TABLES", str(tmp_path / "tables"))
    profile = load_profile(write_profile(tmp_path / "p.yaml"))
    backend = Absent(profile)
    with pytest.raises(PipelineError, match="not present here and .* holds no table"):
        choose_table(profile, backend, None)
    folder = tmp_path / "tables" / "tiny-cpu"
    folder.mkdir(parents=True)
    shutil.copy(tiny_table, folder / "aaaa.csv")
    choice = choose_table(profile, backend, None)
    notes = []
    _, matched = load_table(profile, choice, log=notes.append)
    assert choice.path == folder / "aaaa.csv" and matched is None and "not present here" in notes[0]
    shutil.copy(tiny_table, folder / "bbbb.csv")
    with pytest.raises(PipelineError, match="holds 2 tables of it"):
        choose_table(profile, backend, None)
