"""Corpus loading, document-level train/validation/test split, tokenisation into fixed-length chunks.

The default corpus is the English reference text that ships with CPython (`pydoc_data.topics`,
79 documents, about 65k words), so that training works offline. Its training split is joined by
the docstrings of CPython's own standard library (about 2,900 of 20+ words, 190k words in all,
read from the sources with `ast`, nothing imported): 65k words were too few, a student
fine-tuned on them alone reached 0.90 sentence cosine on training text and 0.77 on held-out text.
The docstrings only ever train; validation and test stay pydoc topics, so fidelity numbers keep
their meaning. `--corpus FILE` reads plain text
(documents separated by blank lines) or JSONL (a "text" field per line); `--dataset NAME[:CONFIG]`
goes through the `datasets` library. Documents, not chunks, are split, so no text of the test
split (kept for the benchmark's fidelity check) or the validation split is ever trained on.
Tokenised chunks are cached under $PIPELINE_CACHE/corpus (default ~/.cache/pipeline).
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.artifacts import disk_cached
from pipeline.errors import PipelineError

DEFAULT_CORPUS = "pydoc_data.topics"
DEFAULT_EXTRA = "CPython stdlib docstrings"
# Left out of the docstrings: tests (terse, repetitive) and GUI/tooling packages that are not the library.
SKIP_STDLIB = frozenset({"test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo", "site-packages",
                         "dist-packages"})
SPLITS = ("train", "validation", "test")
HELD_OUT = {"validation": 0.1, "test": 0.1}  # fractions of tokens; the rest trains
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
    if not path.is_file():
        raise PipelineError(f"corpus file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PipelineError(f"corpus {path} is not UTF-8 text: {e}") from None
    if path.suffix == ".jsonl":
        docs = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise PipelineError(f"corpus {path} line {i} is not JSON: {e}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise PipelineError(f"corpus {path} line {i} has no string field 'text'")
            docs.append(obj["text"])
        return docs
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
        from pydoc_data.topics import topics

        source, docs = DEFAULT_CORPUS, [topics[k] for k in sorted(topics)]
    docs = [d.strip() for d in docs if d and d.strip()]
    if not docs:
        raise PipelineError(f"corpus {source} is empty")
    return source, docs


def stdlib_docstrings(min_words: int = 20) -> list[str]:
    """Module, class and function docstrings of the standard library's .py sources, each once, in
    path order. Parsed, never imported: no side effects, and the same text on every run."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    seen: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        if SKIP_STDLIB.intersection(path.relative_to(root).parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue  # a few stdlib files are deliberately broken or not UTF-8
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= min_words and doc not in seen:
                    seen.add(doc)
                    docs.append(doc)
    return docs


def split_documents(docs: list[str], token_counts: list[int]) -> dict[str, list[int]]:
    """Document indices per split: shuffled once with a fixed seed, held-out splits filled to their
    share of tokens first; the training split always keeps at least one document."""
    order = list(range(len(docs)))
    random.Random(SPLIT_SEED).shuffle(order)
    total = sum(token_counts)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    pos = 0
    for split, frac in HELD_OUT.items():
        got = 0
        while pos < len(order) - 1 and got < frac * total:  # the last document always trains
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
    extra = stdlib_docstrings() if not (corpus or dataset) else []  # training-only text of the default
    if extra:
        source = f"{source} + {DEFAULT_EXTRA} (training only)"
    content = hashlib.sha256("\x00".join(docs + ["\x01"] + extra).encode()).hexdigest()[:16]
    key = {"content": content, "tokenizer": _tokenizer_id(tokenizer), "seq": seq_len, "held_out": HELD_OUT,
           "seed": SPLIT_SEED, "format": 1}

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
