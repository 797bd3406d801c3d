"""Atomic writes and content hashes shared by every stage's artifacts."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


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
