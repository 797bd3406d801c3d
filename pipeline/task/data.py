"""A labelled task: texts (or text pairs) and labels, split into train / dev / test.

Read from CSV, TSV or JSONL files (a text column, an optional second text for sentence pairs, a
label), from a `datasets` name (GLUE's sst2, mrpc, ...; lazily imported), or the offline default
(`wordnet_task`: WordNet's glosses labelled with their lexicographer file). Class labels are any
strings or integers; float labels make the task a regression, scored by Spearman. Every problem
with the data is a one-line PipelineError naming the file and what is wrong.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.textfiles import json_objects, read_text, table_rows

SPLITS = ("train", "dev", "test")
# A seeded split of a single file: 80/10/10, as GLUE-style tasks are split.
SPLIT_SHARES = (0.8, 0.1, 0.1)
SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    texts: list[str]
    pairs: list[str] | None     # the second text of each example, for sentence-pair tasks
    labels: list               # class indices (int) or floats (regression)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Task:
    name: str
    classes: list[str] | None   # None: regression
    train: Split
    dev: Split
    test: Split | None
    # Text of the task's kind without labels (a transfer set): the students also learn the teacher's
    # predictions on it (train.fit), as Tang et al. and TinyBERT distil on more text than is labelled.
    unlabeled: Split | None = None

    @property
    def regression(self) -> bool:
        return self.classes is None

    @property
    def outputs(self) -> int:
        return 1 if self.classes is None else len(self.classes)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": "regression" if self.regression else "classification",
                "classes": self.classes, "pairs": self.train.pairs is not None,
                **{f"{s}_examples": len(getattr(self, s)) if getattr(self, s) is not None else 0
                   for s in (*SPLITS, "unlabeled")}}


@dataclass(frozen=True)
class Columns:
    text: str = "text"      # GLUE's sst2 calls it "sentence": give --text-column
    pair: str | None = None  # the second text of a pair task (mrpc: sentence2)
    label: str = "label"


Rows = list[dict[str, object]]


def read_rows(path: Path) -> Rows:
    text = read_text(path, "task file")
    if path.suffix in (".jsonl", ".json"):
        rows = json_objects(text, f"task file {path}")
    elif path.suffix in (".csv", ".tsv"):
        rows = table_rows(text, f"task file {path}", tsv=path.suffix == ".tsv")
    else:
        raise PipelineError(f"task file {path}: use .csv, .tsv or .jsonl")
    if not rows:
        raise PipelineError(f"task file {path} has no examples")
    return rows


def _column(rows: Rows, name: str, where: str) -> list[object]:
    if name not in rows[0]:
        raise PipelineError(f"{where} has no column {name!r} (columns: {', '.join(map(str, rows[0]))})")
    values = [r.get(name) for r in rows]
    missing = next((i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip())), None)
    if missing is not None:
        raise PipelineError(f"{where}: example {missing + 1} has no {name!r}")
    return values


def _is_float_label(v: object) -> bool:
    if isinstance(v, float):
        return True
    return isinstance(v, str) and any(c in v for c in ".eE") and _number(v) is not None


def _number(v: object) -> float | None:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer past float's range
        return None


def _check_finite(labels: list[object], where: str) -> None:
    """float() reads nan and inf (JSON's NaN and Infinity too); no score means them, and one of them
    turns the loss and Spearman's correlation into nan."""
    bad = next((i for i, v in enumerate(labels) if not math.isfinite(float(v))), None)  # type: ignore[arg-type]
    if bad is not None:
        raise PipelineError(f"{where}: example {bad + 1} has label {labels[bad]!r}, not a finite number; give "
                            "each example of a regression a finite score")


def make_task(name: str, parts: dict[str, tuple[Rows, str]], cols: Columns) -> Task:
    """parts: split -> (rows, where they came from). Labels of train decide classes or regression."""
    raw = {s: _column(rows, cols.label, where) for s, (rows, where) in parts.items()}
    regression = any(_is_float_label(v) for v in raw["train"])
    classes: list[str] | None = None
    if regression:
        for s, values in raw.items():
            bad = next((v for v in values if _number(v) is None), None)
            if bad is not None:
                raise PipelineError(f"{parts[s][1]}: label {bad!r} is not a number, and float labels make a regression")
            _check_finite(values, parts[s][1])
        labels = {s: [float(v) for v in values] for s, values in raw.items()}  # type: ignore[arg-type]
    else:
        names = sorted({str(v) for v in raw["train"]}, key=lambda x: (_number(x) is None, _number(x) or 0, x))
        if len(names) < 2:
            raise PipelineError(f"{parts['train'][1]}: every example has label {names[0]!r}; a task needs two "
                                "classes or more")
        index = {c: i for i, c in enumerate(names)}
        labels = {}
        for s, values in raw.items():
            unknown = next((v for v in values if str(v) not in index), None)
            if unknown is not None:
                raise PipelineError(f"{parts[s][1]}: label {unknown!r} never occurs in the training data")
            labels[s] = [index[str(v)] for v in values]
        classes = names
    splits = {}
    for s, (rows, where) in parts.items():
        texts = [str(v) for v in _column(rows, cols.text, where)]
        pairs = [str(v) for v in _column(rows, cols.pair, where)] if cols.pair else None
        splits[s] = Split(texts, pairs, labels[s])
    return Task(name, classes, splits["train"], splits["dev"], splits.get("test"))


def split_rows(rows: Rows, seed: int = SPLIT_SEED) -> dict[str, Rows]:
    """A seeded 80/10/10 split of one file's examples; no example in two splits."""
    if len(rows) < 10:
        raise PipelineError(f"{len(rows)} examples are too few to split into train, dev and test; give --dev")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(rows) * SPLIT_SHARES[1]))
    n_test = max(1, round(len(rows) * SPLIT_SHARES[2]))
    pick = {"dev": order[:n_dev], "test": order[n_dev:n_dev + n_test], "train": order[n_dev + n_test:]}
    return {s: [rows[i] for i in sorted(idx)] for s, idx in pick.items()}


def load_files(train: str | Path, dev: str | Path | None = None, test: str | Path | None = None,
               cols: Columns = Columns()) -> Task:
    train = Path(train)
    rows = read_rows(train)
    if dev is None:
        if test is not None:
            raise PipelineError("--test without --dev: give both, or neither to split --train")
        parts = {s: (r, f"{train} ({s} split)") for s, r in split_rows(rows).items()}
    else:
        parts = {"train": (rows, str(train)), "dev": (read_rows(Path(dev)), str(dev))}
        if test is not None:
            parts["test"] = (read_rows(Path(test)), str(test))
    return make_task(train.stem, parts, cols)


def load_dataset(name: str, cols: Columns = Columns()) -> Task:
    """NAME[:CONFIG] through `datasets`: its train split, its validation split as dev, and its test split
    when that has labels (GLUE's test labels are hidden: -1)."""
    try:
        import datasets
    except ImportError:
        raise PipelineError("--task-dataset needs the `datasets` package (pip install datasets)") from None
    path, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(path, config or None)
    except Exception as e:  # datasets raises many types (offline, missing config, ...)
        raise PipelineError(f"could not load dataset {name!r}: {str(e).splitlines()[0]}") from None
    dev_name = next((s for s in ("validation", "dev", "validation_matched") if s in ds), None)
    if "train" not in ds or dev_name is None:
        raise PipelineError(f"dataset {name!r} needs a train and a validation split (it has {', '.join(ds)})")
    parts = {"train": (list(ds["train"]), f"{name} train"), "dev": (list(ds[dev_name]), f"{name} {dev_name}")}
    if "test" in ds:
        test = list(ds["test"])
        if test and all(_number(r.get(cols.label)) != -1 for r in test):
            parts["test"] = (test, f"{name} test")
    return make_task(name.replace("/", "_").replace(":", "_"), parts, cols)


def load_unlabeled(path: str | Path, cols: Columns = Columns()) -> Split:
    """--unlabeled FILE: texts (and second texts, for a pair task) without labels, any label column ignored."""
    path = Path(path)
    rows = read_rows(path)
    texts = [str(v) for v in _column(rows, cols.text, str(path))]
    pairs = [str(v) for v in _column(rows, cols.pair, str(path))] if cols.pair else None
    return Split(texts, pairs, [])
