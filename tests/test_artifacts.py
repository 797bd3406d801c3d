"""Atomic writes, the damaged-JSON reader, the cache folder and content hashes."""

import json

import pytest

from pipeline.artifacts import cache_dir, read_json, short_hash, write_atomic, write_folder_atomic, write_json_atomic
from pipeline.errors import PipelineError


def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "a.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, crash)
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temp file left behind


@pytest.mark.parametrize("content, why", [(b'{"x": ', "Expecting value"), (b"", "Expecting value"),
                                          (b"\xff\xfe\x00", "not UTF-8 text"), (b"[1, 2]", "not a JSON dict")])
def test_read_json_names_the_file_and_the_fix(tmp_path, content, why):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(PipelineError, match=why) as e:
        read_json(path, "run `export` again")
    assert str(e.value).startswith(f"{path} is damaged") and str(e.value).endswith("run `export` again")
    with pytest.raises(FileNotFoundError):  # the caller says which stage makes a missing file
        read_json(tmp_path / "none.json", "")
    assert read_json(path, "", kind=list) == [1, 2] if content == b"[1, 2]" else True


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_short_hash_is_stable_and_order_free():
    assert short_hash({"a": 1, "b": [2, 3]}) == short_hash({"b": [2, 3], "a": 1})
    assert short_hash({"a": 1}) != short_hash({"a": 2}) and len(short_hash("x")) == 12


def test_a_folder_is_written_whole_or_not_at_all(tmp_path):
    def fill(tmp):
        (tmp / "a.txt").write_text("a")

    def broken(tmp):
        (tmp / "a.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_folder_atomic(tmp_path / "out", broken)
    assert list(tmp_path.iterdir()) == []                       # no half folder, no temp folder
    (tmp_path / "out").mkdir()                                  # an empty folder is taken
    assert (write_folder_atomic(tmp_path / "out", fill) / "a.txt").read_text() == "a"
    with pytest.raises(OSError):                                # a full one is not
        write_folder_atomic(tmp_path / "out", lambda tmp: (tmp / "b.txt").write_text("b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not (tmp_path / "out" / "b.txt").exists()


def test_artifacts_are_readable_by_others(tmp_path):
    """mkstemp's files are 0600: tables, records and weights written through it were private."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    assert (write_json_atomic(tmp_path / "a.json", {"a": 1}).stat().st_mode & 0o777) == 0o666 & ~mask
    folder = write_folder_atomic(tmp_path / "f", lambda tmp: None)
    assert (folder.stat().st_mode & 0o777) == 0o777 & ~mask


@pytest.mark.parametrize("name", ["/etc", "../x", "a/../../x", "", None, 3, "link/x"])
def test_a_name_read_from_a_file_never_leaves_its_folder(tmp_path, name):
    from pipeline.artifacts import inside

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link").symlink_to(tmp_path)
    with pytest.raises(PipelineError):
        inside(tmp_path / "in", name, "models.json name")


def test_a_name_inside_its_folder_is_kept(tmp_path):
    from pipeline.artifacts import inside

    assert inside(tmp_path, "a/b.onnx", "x") == tmp_path / "a" / "b.onnx"
    assert inside(tmp_path, ".", "x") == tmp_path / "."


def test_temp_files_of_a_killed_writer_are_removed_by_the_next(tmp_path):
    """kill -9 runs no cleanup: the next write of the same file removes the dead process's temp files (and
    never a live one's)."""
    import os

    dead = tmp_path / ".t.json.999999999.x1.tmp"
    live = tmp_path / f".t.json.{os.getpid()}.x2.tmp"
    other = tmp_path / ".u.json.999999999.x3.tmp"
    for p in (dead, live, other):
        p.write_text("half")
    write_json_atomic(tmp_path / "t.json", {"a": 1})
    assert not dead.exists() and live.exists() and other.exists()
