"""Corpus loading, document-level train/validation/test split, tokenisation into fixed-length chunks.

The default corpus is offline text that Python and the project's dependencies ship (texts.py):
WordNet's glosses and usage examples (general English, about 1.8M words) and 106 Wikipedia
articles (encyclopaedic prose, 450k words) mixed with CPython's reference topics (pydoc_data.topics,
Python documentation, 65k words), split together by document; the docstrings of CPython's
standard library (190k words) join the training split only.
A student learns the text it is distilled on: Python documentation alone made students that were
no better than a bag of the teacher's token embeddings on general English (docs/experiments.md).
`--corpus FILE` reads plain text (documents separated by blank lines) or JSONL (a "text" field per
line); `--dataset NAME[:CONFIG]` goes through the `datasets` library. Documents, not chunks, are
split, so no text of the test split (kept for the benchmark's fidelity check) or the validation
split is ever trained on. Tokenised chunks are cached under $PIPELINE_CACHE/corpus
(default ~/.cache/pipeline).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.artifacts import disk_cached
from pipeline.errors import PipelineError
from pipeline.textfiles import json_objects, read_text

DEFAULT_CORPUS = "WordNet glosses + Wikipedia excerpt + pydoc_data.topics"
DEFAULT_EXTRA = "CPython stdlib docstrings"
SPLITS = ("train", "validation", "test")
HELD_OUT = {"validation": 0.1, "test": 0.1}  # fractions of tokens; the rest trains
# At most this many tokens per held-out split: enough chunks (~300 of 128) to measure fidelity to a
# few thousandths, and validation is read by every re-ranked candidate, so it must stay cheap on a
# corpus of millions of tokens.
HELD_OUT_MAX_TOKENS = 40_000
SPLIT_SEED = 0  # fixed, so every stage and every run sees the same split


@dataclass(frozen=True)
class Corpus:
    """Token chunks per split: each [N, seq_len] int64, every chunk [CLS] ... [SEP], no padding."""

    source: str
    seq_len: int
    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    held_out_source: str          # where validation and test come from (the default's extra text only trains)

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "seq_len": self.seq_len,
                **{f"{s}_chunks": int(getattr(self, s).shape[0]) for s in SPLITS}}


def _read_file(path: Path) -> list[str]:
    text = read_text(path, "corpus file")
    if path.suffix == ".jsonl":
        return [d["text"] for d in json_objects(text, f"corpus {path}", string_field="text")]
    return text.split("\n\n")


def _read_dataset(name: str) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise PipelineError("--dataset needs the `datasets` package (pip install datasets)") from None
    path, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(path, config or None, split="train")
    except Exception as e:  # datasets raises many types (offline, missing config, ...)
        raise PipelineError(f"could not load dataset {name!r}: {str(e).splitlines()[0]}") from None
    if "text" not in ds.column_names:
        raise PipelineError(f"dataset {name!r} has no 'text' column (columns: {', '.join(ds.column_names)})")
    return list(ds["text"])


def load_documents(corpus: str | None = None, dataset: str | None = None) -> tuple[str, list[str]]:
    """(a description of the source, its non-empty documents)."""
    if corpus and dataset:
        raise PipelineError("give --corpus or --dataset, not both")
    if dataset:
        source, docs = f"dataset {dataset}", _read_dataset(dataset)
    elif corpus:
        source, docs = f"file {Path(corpus).resolve()}", _read_file(Path(corpus))
    else:
        from pipeline.model.texts import pydoc_topics, wikipedia_documents, wordnet_documents

        source, docs = DEFAULT_CORPUS, wordnet_documents() + wikipedia_documents() + pydoc_topics()
    docs = [d.strip() for d in docs if d and d.strip()]
    if not docs:
        raise PipelineError(f"corpus {source} is empty")
    return source, docs


def split_documents(docs: list[str], token_counts: list[int]) -> dict[str, list[int]]:
    """Document indices per split: shuffled once with a fixed seed, held-out splits filled to their
    share of tokens (at most HELD_OUT_MAX_TOKENS) first; the training split always keeps at least one
    document."""
    order = list(range(len(docs)))
    random.Random(SPLIT_SEED).shuffle(order)
    total = sum(token_counts)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    pos = 0
    for split, frac in HELD_OUT.items():
        got = 0
        while pos < len(order) - 1 and got < min(frac * total, HELD_OUT_MAX_TOKENS):  # the last always trains
            out[split].append(order[pos])
            got += token_counts[order[pos]]
            pos += 1
    out["train"] = order[pos:]
    return out


def chunk(token_lists: list[list[int]], seq_len: int, cls_id: int, sep_id: int) -> torch.Tensor:
    """Concatenate documents (a [SEP] between them) and cut into [CLS] + seq_len-2 tokens + [SEP]."""
    body = seq_len - 2
    stream: list[int] = []
    for toks in token_lists:
        stream.extend(toks)
        stream.append(sep_id)
    n = len(stream) // body
    if n == 0:
        return torch.empty(0, seq_len, dtype=torch.int64)
    x = torch.tensor(stream[: n * body], dtype=torch.int64).view(n, body)
    cls = torch.full((n, 1), cls_id, dtype=torch.int64)
    sep = torch.full((n, 1), sep_id, dtype=torch.int64)
    return torch.cat([cls, x, sep], dim=1)  # [N, seq_len]


def _tokenizer_id(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:12]


def load_corpus(tokenizer, seq_len: int, corpus: str | None = None, dataset: str | None = None) -> Corpus:
    """Read, split and tokenise a corpus, or load the cached result of doing so."""
    if seq_len < 8:
        raise PipelineError(f"sequence length must be at least 8, got {seq_len}")
    source, docs = load_documents(corpus, dataset)
    held_out = source
    from pipeline.model.texts import stdlib_docstrings

    extra = stdlib_docstrings() if not (corpus or dataset) else []  # training-only text of the default
    if extra:
        source = f"{source} + {DEFAULT_EXTRA} (training only)"
    content = hashlib.sha256("\x00".join(docs + ["\x01"] + extra).encode()).hexdigest()[:16]
    key = {"content": content, "tokenizer": _tokenizer_id(tokenizer), "seq": seq_len, "held_out": HELD_OUT,
           "seed": SPLIT_SEED, "max_held_out": HELD_OUT_MAX_TOKENS, "format": 1}

    def tokenise() -> dict[str, torch.Tensor]:
        tokens = [tokenizer(d, add_special_tokens=False, verbose=False)["input_ids"] for d in docs]
        splits = split_documents(docs, [len(t) for t in tokens])
        extra_tokens = [tokenizer(d, add_special_tokens=False, verbose=False)["input_ids"] for d in extra]
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        if cls_id is None or sep_id is None:
            raise PipelineError("the teacher's tokenizer has no [CLS]/[SEP] tokens; is it a BERT tokenizer?")
        parts = {s: chunk([tokens[i] for i in sorted(splits[s])] + (extra_tokens if s == "train" else []),
                          seq_len, cls_id, sep_id) for s in SPLITS}
        for s in ("train", "validation"):
            if parts[s].shape[0] == 0:
                raise PipelineError(f"corpus {source} is too short: its {s} split has no full chunk of {seq_len} "
                                    f"tokens ({sum(map(len, tokens))} tokens in all)")
        return parts

    parts = disk_cached("corpus", key, tokenise, valid=lambda d: isinstance(d, dict) and set(SPLITS) <= set(d))
    return Corpus(source, seq_len, parts["train"], parts["validation"], parts["test"], held_out)
