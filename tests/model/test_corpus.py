import json

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.corpus import (
    DEFAULT_CORPUS,
    HELD_OUT_MAX_TOKENS,
    chunk,
    load_corpus,
    load_documents,
    split_documents,
)
from pipeline.model.teacher import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(None)


def test_default_corpus_is_offline_general_english_beside_python_docs():
    source, docs = load_documents()
    assert source == DEFAULT_CORPUS
    assert len(docs) > 2000 and sum(len(d.split()) for d in docs) > 1_500_000
    assert any(d.startswith("entity: that which is perceived") for d in docs)  # WordNet's first noun sense
    assert any("print" in d and "expression" in d for d in docs)  # and the Python reference
    assert any("Albedo" in d for d in docs)  # and Wikipedia's prose


def test_default_corpus_trains_on_docstrings_but_holds_out_only_the_mixture(tokenizer, monkeypatch):
    full = load_corpus(tokenizer, 128)
    assert "docstrings" in full.source and full.held_out_source == DEFAULT_CORPUS
    monkeypatch.setattr("pipeline.model.texts.stdlib_docstrings", lambda: [])
    plain = load_corpus(tokenizer, 128)
    assert plain.source == DEFAULT_CORPUS
    assert torch.equal(full.validation, plain.validation) and torch.equal(full.test, plain.test)
    assert full.train.shape[0] > plain.train.shape[0] > 10_000  # millions of tokens
    assert torch.equal(full.train[:10], plain.train[:10])  # the mixture first, then the docstrings
    # held-out splits are capped: measured, not trained on, and read by every re-ranked candidate
    for split in (full.validation, full.test):
        # (the last document taken may pass the cap: documents are not cut; WordNet's are ~600 tokens)
        assert 0 < split.numel() <= 1.1 * HELD_OUT_MAX_TOKENS


def test_held_out_splits_are_capped_in_tokens():
    counts = [1000] * 1000
    s = split_documents([""] * 1000, counts)
    for held in ("validation", "test"):
        assert sum(counts[i] for i in s[held]) == HELD_OUT_MAX_TOKENS


def test_split_is_by_document_and_covers_everything():
    counts = [10 * (i % 7 + 1) for i in range(40)]
    s = split_documents([""] * 40, counts)
    everything = s["train"] + s["validation"] + s["test"]
    assert sorted(everything) == list(range(40))  # disjoint and complete
    for held in ("validation", "test"):
        share = sum(counts[i] for i in s[held]) / sum(counts)
        assert 0.1 <= share < 0.2
    assert split_documents(["a", "b"], [5, 5])["train"]  # training always keeps a document


def test_chunks_are_cls_body_sep():
    x = chunk([[5, 6, 7], [8, 9]], seq_len=4, cls_id=1, sep_id=2)
    # stream 5 6 7 2 8 9 2 -> bodies of 2: (5 6) (7 2) (8 9); the trailing 2 is dropped
    assert x.tolist() == [[1, 5, 6, 2], [1, 7, 2, 2], [1, 8, 9, 2]]


def test_corpus_splits_do_not_overlap_and_are_cached(tokenizer, tiny_corpus):
    c = load_corpus(tokenizer, 32, corpus=str(tiny_corpus))
    assert c.train.shape[1] == 32 and c.validation.shape[0] > 0 and c.test.shape[0] > 0
    assert (c.train[:, 0] == tokenizer.cls_token_id).all() and (c.train[:, -1] == tokenizer.sep_token_id).all()
    rows = lambda t: {tuple(r.tolist()) for r in t}  # noqa: E731
    assert not rows(c.train) & rows(c.validation) and not rows(c.train) & rows(c.test)
    again = load_corpus(tokenizer, 32, corpus=str(tiny_corpus))
    assert torch.equal(again.train, c.train) and torch.equal(again.test, c.test)


def test_jsonl_corpus(tokenizer, tmp_path, tiny_corpus):
    docs = tiny_corpus.read_text().split("\n\n")
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(docs)))
    c = load_corpus(tokenizer, 32, corpus=str(path))
    assert c.train.shape[0] > 0


@pytest.mark.parametrize("content, match", [
    ("", "is empty"),
    ("\n\n   \n\n", "is empty"),
    ("just a few words", "too short"),
])
def test_bad_text_corpus(tokenizer, tmp_path, content, match):
    path = tmp_path / "c.txt"
    path.write_text(content)
    with pytest.raises(PipelineError, match=match):
        load_corpus(tokenizer, 32, corpus=str(path))


def test_bad_jsonl_and_missing_file(tokenizer, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(PipelineError, match="line 2 is not JSON"):
        load_corpus(tokenizer, 32, corpus=str(path))
    path.write_text('{"body": "no text field"}\n')
    with pytest.raises(PipelineError, match="no string field 'text'"):
        load_corpus(tokenizer, 32, corpus=str(path))
    with pytest.raises(PipelineError, match="not found"):
        load_corpus(tokenizer, 32, corpus=str(tmp_path / "missing.txt"))
