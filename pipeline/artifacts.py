"""Atomic writes, content keys and the one reuse mechanism of every stage and every disk cache.

A stage writes the content key of what it was made from (`content_key`: a hash of every input and
of the format of the code that made it) into its own record, and asks `reusable` whether a record
on disk can stand for the work. Derived data that several stages share (tokenised corpora, the
teacher's states, fitted embeddings) goes through `disk_cached`: computed once, written
atomically, reused by key, and recomputed whenever the entry on disk cannot be read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temp file beside `path`, then rename it over `path`.

    An interrupted write leaves the old file untouched, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_folder_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temp folder beside `path`, then rename it to `path` (absent, or an empty folder).

    An interrupted write leaves no half folder at `path`; an OSError of the rename (a full folder there,
    another process's) is raised after the temp folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        tmp.chmod(0o755)  # mkdtemp's folders are private; these are artifacts, to be read by others
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | Path, fix: str, kind: type = dict) -> Any:
    """The JSON object in `path`. A file that is cut off, empty, not text or not a `kind` is a
    one-line PipelineError naming it and `fix` (what the user can do); a missing file raises
    FileNotFoundError, for the caller to say which stage makes it."""
    from pipeline.errors import PipelineError

    path = Path(path)
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e).splitlines()[0]
        raise PipelineError(f"{path} is damaged ({why}); {fix}") from None
    if not isinstance(obj, kind):
        raise PipelineError(f"{path} is damaged (not a JSON {kind.__name__}); {fix}")
    return obj


def cache_dir() -> Path:
    """Where reusable derived data lives (tokenised corpora, TensorRT timing caches): $PIPELINE_CACHE,
    default ~/.cache/pipeline."""
    return Path(os.environ.get("PIPELINE_CACHE", "~/.cache/pipeline")).expanduser()


def short_hash(obj: Any, length: int = 12) -> str:
    """Stable hash of a JSON-serialisable object (sorted keys), for fingerprints and cache keys."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def content_key(kind: str, fmt: int, **inputs: Any) -> str:
    """The key of an artifact of `kind` made from `inputs` by code of format `fmt` (bump it when the
    artifact's meaning changes, so that older ones are redone)."""
    return short_hash({"kind": kind, "format": fmt, **inputs})


def reusable(record: str | Path, key: str, field: str = "key",
             also: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
    """The record at `record` if it was made from the same inputs (its `field` is `key`, and `also`
    holds), else None. A missing or damaged record is simply not reusable: the work is done again."""
    from pipeline.errors import PipelineError

    try:
        found = read_json(record, "")
    except (FileNotFoundError, PipelineError):
        return None
    if found.get(field) != key or (also is not None and not also(found)):
        return None
    return found


def disk_cached(kind: str, key: Any, compute: Callable[[], T], valid: Callable[[T], bool] | None = None) -> T:
    """compute(), kept in $PIPELINE_CACHE/<kind>/<hash of key>.pt (torch.save of tensors, dicts and
    lists of them). An entry that cannot be read, or that `valid` rejects, is recomputed, never trusted."""
    import torch

    path = cache_dir() / kind / f"{short_hash(key)}.pt"
    if path.is_file():
        try:
            value = torch.load(path, weights_only=True)
            if valid is None or valid(value):
                os.utime(path)  # its time is its last use: `cache clear --older-than` keeps what runs need
                return value
        except Exception:  # damaged: cut off, emptied, not a torch file
            pass
        path.unlink(missing_ok=True)
    value = compute()
    write_atomic(path, lambda tmp: torch.save(value, tmp))
    return value
