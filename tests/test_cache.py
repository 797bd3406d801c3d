"""The disk cache's listing and clearing (`python -m pipeline cache`)."""

import os
import time

import pytest
import torch

from pipeline.artifacts import CACHE_TAG, cache_kind, disk_cached
from pipeline.cache import entries, human_bytes, remove, select, summary
from pipeline.cli import main
from pipeline.errors import PipelineError

DAY = 86400.0


def put(path, size, days_ago):
    """A cache entry of `size` bytes last used `days_ago` days ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - days_ago * DAY
    os.utime(path, (t, t))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("PIPELINE_CACHE", str(root))
    for kind in ("states", "corpus", "model2vec"):
        cache_kind(kind)  # the tag that makes a folder the cache's
    put(root / "states" / "a.pt", 3000, days_ago=30)
    put(root / "states" / "b.pt", 1000, days_ago=1)
    put(root / "corpus" / "c.pt", 500, days_ago=10)
    put(root / "model2vec" / "d" / "model.safetensors", 200, days_ago=40)  # a folder entry
    os.utime(root / "model2vec" / "d", (time.time() - 40 * DAY,) * 2)
    put(root / "states" / ".e.pt.abc.tmp", 50, days_ago=0)  # a write in progress
    put(root / "states" / ".f.pt.abc.tmp", 70, days_ago=2)  # left by a killed run
    return root


def test_entries_are_listed_per_kind_oldest_use_first(cache):
    found = entries()
    assert [e.path.name for e in found] == ["d", "a.pt", "c.pt", ".f.pt.abc.tmp", "b.pt", ".e.pt.abc.tmp"]
    assert {e.path.name: e.bytes for e in found}["d"] == 200  # a folder counts what it holds
    assert [(k, n, size) for k, n, size, _ in summary(found)] == [("states", 4, 4120), ("corpus", 1, 500),
                                                                   ("model2vec", 1, 200)]
    assert entries(cache / "nowhere") == []


def test_select_by_kind_and_age(cache):
    found = entries()
    assert {e.path.name for e in select(found, ["states"], 5)} == {"a.pt"}
    assert {e.path.name for e in select(found, ["corpus", "model2vec"])} == {"c.pt", "d"}
    assert {e.path.name for e in select(found, older_than_days=5)} == {"a.pt", "c.pt", "d"}
    assert len(select(found)) == len(found)
    with pytest.raises(PipelineError, match="no cache kind tokens .*kinds there: corpus, model2vec, states"):
        select(found, ["tokens"])
    with pytest.raises(PipelineError, match="days >= 0"):
        select(found, older_than_days=-1)


def test_remove_keeps_a_write_in_progress_only(cache):
    removed, kept = remove(select(entries(), ["states", "model2vec"]))
    assert {e.path.name for e in removed} == {"a.pt", "b.pt", ".f.pt.abc.tmp", "d"}
    assert [e.path.name for e in kept] == [".e.pt.abc.tmp"]
    assert sorted(p.name for p in (cache / "states").iterdir()) == [".e.pt.abc.tmp", CACHE_TAG]
    assert not (cache / "model2vec" / "d").exists() and (cache / "corpus" / "c.pt").is_file()


def test_a_reused_entry_counts_as_used_now(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    calls = []
    disk_cached("states", "k", lambda: calls.append(1) or torch.ones(2))
    (path,) = (tmp_path / "states").glob("*.pt")
    t = time.time() - 30 * DAY
    os.utime(path, (t, t))
    assert select(entries(), older_than_days=7)  # stale before the reuse
    assert torch.equal(disk_cached("states", "k", lambda: calls.append(1) or torch.zeros(2)), torch.ones(2))
    assert calls == [1] and select(entries(), older_than_days=7) == []


def test_human_bytes():
    assert [human_bytes(n) for n in (999, 1500, 2.5e6, 4.9e9, 1.2e12)] == ["999 B", "1.5 KB", "2.5 MB", "4.9 GB",
                                                                          "1200.0 GB"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cache_command_lists_and_clears(cache, capsys):
    code, out, _ = run(capsys, "cache")
    assert code == 0 and "4.8 KB in 6 entries" in out
    assert [line.split()[:2] for line in out.splitlines()[2:]] == [["states", "4"], ["corpus", "1"], ["model2vec", "1"]]
    code, out, _ = run(capsys, "cache", "list", "--kind", "states", "--older-than", "5")
    assert code == 0 and "what `clear` with them removes" in out and "a.pt" in out and "b.pt" not in out
    code, out, _ = run(capsys, "cache", "clear", "--older-than", "5")
    assert code == 0 and out.startswith("removed 3 entries (3.7 KB)")
    assert {e.path.name for e in entries()} == {"b.pt", ".e.pt.abc.tmp", ".f.pt.abc.tmp"}
    code, out, _ = run(capsys, "cache", "clear")
    assert code == 0 and "removed 2 entries" in out and "kept" in out and ".e.pt.abc.tmp" in out
    code, out, err = run(capsys, "cache", "clear", "--kind", "tokens")
    assert code != 0 and err.count("\n") == 1 and "no cache kind tokens" in err and "Traceback" not in err


def test_an_empty_cache_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "none"))
    code, out, _ = run(capsys, "cache")
    assert code == 0 and out.strip().endswith(": empty")
    code, out, _ = run(capsys, "cache", "--older-than", "3")
    assert code == 0 and "no entry matches" in out


def user_files(root):
    """A project folder of a user's: a run, a latency table, source."""
    for name in ("runs/cpu/report.json", "latency_tables/cpu/abc.csv", "src/main.py", "states/mine.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("mine")
    return sorted(p.relative_to(root) for p in root.rglob("*"))


@pytest.mark.parametrize("value", ["", "."])
def test_clear_never_removes_what_the_cache_did_not_write(tmp_path, monkeypatch, capsys, value):
    """PIPELINE_CACHE empty (the current folder once) or a folder in use: cache clear removed a user's runs."""
    project = tmp_path / "project"
    project.mkdir()
    before = user_files(project)
    monkeypatch.chdir(project)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # where the default cache goes
    monkeypatch.setenv("PIPELINE_CACHE", value)
    code, out, _ = run(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed 0 entries")
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_the_cache_never_writes_among_a_users_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    user_files(tmp_path)
    with pytest.raises(PipelineError, match=r"holds files the pipeline's cache did not write \(e.g. mine.txt\)"):
        disk_cached("states", "k", lambda: torch.ones(2))
    assert torch.equal(disk_cached("corpus", "k", lambda: torch.ones(2)), torch.ones(2))  # a folder of its own
    assert (tmp_path / "corpus" / CACHE_TAG).is_file() and not (tmp_path / CACHE_TAG).exists()
    assert [e.kind for e in entries()] == ["corpus"]


def test_a_cache_from_before_the_tag_is_adopted(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    put(tmp_path / "states" / "0123456789ab.pt", 10, days_ago=3)
    put(tmp_path / "states" / ".0123456789ab.pt.x1.tmp", 10, days_ago=3)
    assert entries() == []  # untagged: not listed until the cache uses it again
    disk_cached("states", "k", lambda: torch.ones(2))
    assert len(entries()) == 3


def test_a_cache_that_is_a_file_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "f"))
    with pytest.raises(PipelineError, match="PIPELINE_CACHE="):
        disk_cached("states", "k", lambda: torch.ones(2))


def test_older_than_must_be_a_number_of_days(cache, capsys):
    code, _, err = run(capsys, "cache", "clear", "--older-than", "nan")
    assert code == 1 and "days >= 0" in err and len(list((cache / "states").iterdir())) == 5


def test_another_tools_cache_tag_is_not_the_pipelines(tmp_path, monkeypatch, capsys):
    """cargo's target/ and pytest's .pytest_cache carry the same CACHEDIR.TAG signature: clear removed them."""
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    (tmp_path / "target" / "release").mkdir(parents=True)
    (tmp_path / "target" / CACHE_TAG).write_text("Signature: 8a477f597d28d172789f06886806bc55\n# by cargo\n")
    (tmp_path / "target" / "release" / "app").write_text("binary")
    code, out, _ = run(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed 0 entries") and (tmp_path / "target" / "release" / "app").exists()
