"""What the disk cache holds, and emptying it.

Every stage keeps derived data it can make again in $PIPELINE_CACHE (`artifacts.cache_dir`), one
folder per kind: tokenised corpora, the teacher's states (gigabytes for the default corpus), fitted
embeddings, fine-tuned task teachers, adapted task students, model2vec peers, TensorRT timing caches.
Nothing there is ever the only copy of a result: an entry removed is recomputed by the next run that
needs it. An entry's modification time is when it was last written or reused (`disk_cached` touches
what it reuses), so `older_than` removes what no run has needed lately.
"""

from __future__ import annotations

import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.artifacts import CACHE_TAG, cache_dir, is_cache_kind
from pipeline.errors import PipelineError

# A temp file younger than this may be a write in progress (the teacher's states take a minute to
# save); an older one was left by a killed run and is only waste.
IN_PROGRESS_S = 3600.0


@dataclass(frozen=True)
class CacheEntry:
    kind: str  # the folder under the cache: "states", "corpus", ...
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch

    @property
    def in_progress(self) -> bool:
        return self.path.name.startswith(".") and time.time() - self.last_used < IN_PROGRESS_S


def _measure(path: Path) -> tuple[int, float]:
    """(bytes, last modification) of a file, or of a folder and everything in it, in one walk."""
    stats = [path.stat()] + ([] if path.is_file() else [f.stat() for f in path.rglob("*")])
    return (sum(st.st_size for st in stats if stat.S_ISREG(st.st_mode)), max(st.st_mtime for st in stats))


def entries(root: Path | None = None) -> list[CacheEntry]:
    """Every entry of the cache, oldest use first. An entry is a file or folder inside a kind's folder, and
    a kind's folder is one the cache made (tagged, `artifacts.cache_kind`): whatever else lies under the
    root (a user's own folders, when PIPELINE_CACHE names a folder in use) is not the cache's to list or clear."""
    root = cache_dir() if root is None else root
    if not root.is_dir():
        return []
    found = []
    for kind in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and is_cache_kind(p)):
        for path in kind.iterdir():
            if path.name == CACHE_TAG:
                continue
            try:
                found.append(CacheEntry(kind.name, path, *_measure(path)))
            except FileNotFoundError:  # removed by another process while we looked
                continue
    return sorted(found, key=lambda e: e.last_used)


def select(found: Iterable[CacheEntry], kinds: Iterable[str] = (), older_than_days: float | None = None
           ) -> list[CacheEntry]:
    """The entries of `kinds` (all when empty) last used more than `older_than_days` ago (any when
    None). An unknown kind is an error that names the kinds there are."""
    found = list(found)
    kinds = list(kinds)
    present = sorted({e.kind for e in found})
    unknown = [k for k in kinds if k not in present]
    if unknown:
        there = ", ".join(present) if present else "none: the cache is empty"
        raise PipelineError(f"no cache kind {', '.join(unknown)} in {cache_dir()} (kinds there: {there})")
    if older_than_days is not None and not older_than_days >= 0:  # nan too
        raise PipelineError(f"--older-than must be a number of days >= 0, got {older_than_days}")
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400.0
    return [e for e in found if (not kinds or e.kind in kinds) and (cutoff is None or e.last_used < cutoff)]


def remove(chosen: Iterable[CacheEntry]) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Remove the chosen entries; returns (removed, kept). A temp file that may be a write in progress
    is kept."""
    removed, kept = [], []
    for e in chosen:
        if e.in_progress:
            kept.append(e)
            continue
        if e.path.is_dir() and not e.path.is_symlink():  # a link is removed, never what it points to
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            e.path.unlink(missing_ok=True)
        removed.append(e)
    return removed, kept


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def summary(found: Iterable[CacheEntry]) -> list[tuple[str, int, int, float]]:
    """(kind, entries, bytes, last use) per kind, largest first."""
    per: dict[str, list[CacheEntry]] = {}
    for e in found:
        per.setdefault(e.kind, []).append(e)
    rows = [(k, len(es), sum(e.bytes for e in es), max(e.last_used for e in es)) for k, es in per.items()]
    return sorted(rows, key=lambda r: -r[2])
