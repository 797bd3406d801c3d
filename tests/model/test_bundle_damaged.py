"""A damaged bundle (bundle.json not a manifest, a cut-off or garbled .xz file): a one-line error naming the
file and saying to make the bundle again, never a traceback (issue 46)."""

import json
import lzma

import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.model import bundle
from pipeline.model.bundle import ENV, MANIFEST, TEXTS, WORDNET_FILES

GOOD = {"format": bundle.FORMAT, "teacher": {"name": "t", "dtype": "float16", "from": "x"},
        "wordnet": {"from": "x", "files": {}}, "texts": {"pydoc": 1}, "made_with": {}, "bytes": 1}


def make_bundle(folder, manifest=GOOD, texts=None, wordnet=None):
    """A bundle folder (no teacher: nothing here reads it), its files replaceable by damaged bytes."""
    folder.mkdir()
    (folder / MANIFEST).write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    (folder / TEXTS).write_bytes(texts if texts is not None else lzma.compress(b'{"pydoc": ["a topic"]}'))
    (folder / "wordnet").mkdir()
    for name in WORDNET_FILES:
        (folder / "wordnet" / f"{name}.xz").write_bytes(lzma.compress(f"the {name} file\n".encode()))
    if wordnet is not None:
        (folder / "wordnet" / "data.noun.xz").write_bytes(wordnet)
    return folder


def one_line(e: pytest.ExceptionInfo, name: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and name in msg and "make the bundle again" in msg, msg
    return msg


@pytest.mark.parametrize("manifest", ["[1]", '{"format": 1}', '"bundle"', '{"format": 1, "wordnet": {}}'])
def test_a_manifest_that_is_not_one_is_a_one_line_error(manifest, tmp_path, monkeypatch, capsys):
    b = make_bundle(tmp_path / "b", manifest)
    monkeypatch.setenv(ENV, str(b))
    with pytest.raises(PipelineError) as e:
        bundle.active()
    one_line(e, str(b / MANIFEST))
    assert main(["space"]) == 1  # the default teacher is the bundle's: the command says so in one line
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines() == [f"error: {e.value}"]


XZ = lzma.compress(json.dumps({"pydoc": ["a topic"] * 50}).encode())
DAMAGED = {"truncated": XZ[: len(XZ) // 2], "garbled": b"\xfd7zXZ\x00" + bytes(range(200)), "empty": b"",
           "not JSON": lzma.compress(b"{oops"), "not an object": lzma.compress(b"[1, 2]")}


@pytest.mark.parametrize("how", sorted(DAMAGED))
def test_damaged_texts_are_a_one_line_error(how, tmp_path, monkeypatch):
    b = make_bundle(tmp_path / "b", texts=DAMAGED[how])
    monkeypatch.setenv(ENV, str(b))
    with pytest.raises(PipelineError) as e:
        bundle.texts("pydoc")
    one_line(e, str(b / TEXTS))


@pytest.mark.parametrize("how", ["truncated", "garbled", "empty"])
def test_damaged_wordnet_files_are_a_one_line_error(how, tmp_path, monkeypatch):
    data = lzma.compress(b"a long enough data.noun file\n" * 20)
    damaged = {"truncated": data[: len(data) // 2], "garbled": b"\xfd7zXZ\x00" + bytes(range(200)), "empty": b""}
    b = make_bundle(tmp_path / "b", wordnet=damaged[how])
    monkeypatch.setenv(ENV, str(b))
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(PipelineError) as e:
        bundle.wordnet()
    one_line(e, str(b / "wordnet" / "data.noun.xz"))


def test_a_sound_bundle_still_reads(tmp_path, monkeypatch):
    b = make_bundle(tmp_path / "b")
    monkeypatch.setenv(ENV, str(b))
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    assert bundle.texts("pydoc") == ["a topic"]
    assert (bundle.wordnet() / "data.noun").read_text() == "the data.noun file\n"


@pytest.mark.parametrize("name, value", [("wikipedia", 5), ("pydoc", [1, None]), ("docstrings", "x"),
                                         ("news", {"a.cor": 3})])
def test_texts_of_the_wrong_kind_are_a_one_line_error(name, value, tmp_path, monkeypatch):
    """A valid texts.json.xz whose texts are not texts: a TypeError deep in the corpus (issue 46's probe)."""
    b = make_bundle(tmp_path / "b", texts=lzma.compress(json.dumps({name: value}).encode()))
    monkeypatch.setenv(ENV, str(b))
    bundle._texts.cache_clear()
    with pytest.raises(PipelineError) as e:
        bundle.texts(name)
    one_line(e, TEXTS)
