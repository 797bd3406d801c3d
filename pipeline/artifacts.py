"""Atomic writes, content keys and the one reuse mechanism of every stage and every disk cache.

A stage writes the content key of what it was made from (`content_key`: a hash of every input and
of the format of the code that made it) into its own record, and asks `reusable` whether a record
on disk can stand for the work. Derived data that several stages share (tokenised corpora, the
teacher's states, fitted embeddings) goes through `disk_cached`: computed once, written
atomically, reused by key, and recomputed whenever the entry on disk cannot be read.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp and mkdtemp make private files (0600, 0700); artifacts are for others to read, as open() would make them.
_MASK = _umask()
FILE_MODE, FOLDER_MODE = 0o666 & ~_MASK, 0o777 & ~_MASK


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temp file beside `path`, then rename it over `path`.

    An interrupted write leaves the old file untouched, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's counts): whose temp files are still being written.
    Unknown off POSIX, where os.kill(pid, 0) would end the process: every pid counts as alive there."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def _readable(folder: Path) -> None:
    """Give a folder and everything in it the modes open() and mkdir() give (mkdtemp's folders and some
    writers' files, safetensors' among them, are private: 0700, 0600). Links are left as they are."""
    folder.chmod(FOLDER_MODE)
    for p in folder.rglob("*"):
        if p.is_symlink():
            continue
        p.chmod(FOLDER_MODE if p.is_dir() else FILE_MODE | (p.stat().st_mode & 0o111 & FOLDER_MODE))


def remove_stale_temps(path: str | Path) -> None:
    """Temp files and folders of writes to `path` whose process is gone (killed with -9: no `finally` ran)."""
    path = Path(path)
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = old.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)) and not old.is_symlink():
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def write_folder_atomic(path: str | Path, write: Callable[[Path], None], replace: bool = False) -> Path:
    """Call write(tmp) on a temp folder beside `path`, then rename it to `path`.

    `path` must be absent or an empty folder, unless `replace`: then a folder there is swapped out (renamed
    aside, the new one renamed in, the old removed), so that `path` holds the old folder whole, the new
    one whole, or (killed between the two renames) nothing, never a mix. An interrupted write leaves no
    half folder at `path`; an OSError of the rename (a full folder there, another process's) is raised
    after the temp folder is removed. Temp folders of killed writes to `path` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        write(tmp)
        _readable(tmp)
        if replace and path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)  # the swap failed half-way: the old folder goes back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
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


def inside(folder: str | Path, name: object, what: str) -> Path:
    """folder / name for a `name` read from a file (a module's path, a model's name): a one-line
    PipelineError unless it is a relative path that stays inside `folder` (no `..`, no absolute path, no
    link out). `what` names where the name came from."""
    from pipeline.errors import PipelineError

    if not isinstance(name, str) or not name or "\x00" in name:
        raise PipelineError(f"{what}: {name!r} is not a file name")
    folder = Path(folder)
    path = folder / name
    if Path(name).is_absolute() or ".." in Path(name).parts or not path.resolve().is_relative_to(folder.resolve()):
        raise PipelineError(f"{what}: {name!r} leaves its folder {folder}; refusing to use it")
    return path


def writable_folder(path: str | Path, what: str = "output folder") -> Path:
    """`path` made (with its parents) and checked writable before any work is done, so that a stage never
    fails after minutes of work on a folder it cannot write: an existing file, a read-only mount, /proc,
    a full disk are each a one-line PipelineError naming the folder."""
    from pipeline.errors import PipelineError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
    except FileExistsError:
        raise PipelineError(f"{what} {path} is a file, not a folder; give another path") from None
    except OSError as e:
        raise PipelineError(f"cannot write the {what} {path} ({e.strerror or e}); give another path") from None
    return path


def cache_dir() -> Path:
    """Where reusable derived data lives (tokenised corpora, TensorRT timing caches): $PIPELINE_CACHE,
    default ~/.cache/pipeline (also when the variable is set but empty: never the current folder)."""
    return Path(os.environ.get("PIPELINE_CACHE") or "~/.cache/pipeline").expanduser()


# The Cache Directory Tagging Specification's tag (backup tools skip the folder): written into every kind
# folder the cache makes, and the only proof `cache clear` accepts that a folder's entries are the cache's.
# Per kind, not at the root: PIPELINE_CACHE=$HOME must not tag a whole home folder.
CACHE_TAG = "CACHEDIR.TAG"
CACHE_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                  "# This folder is a cache of the BERT compression pipeline (python -m pipeline cache).\n"
                  "# Everything in it can be made again; `python -m pipeline cache clear` empties it.\n")
# Names the cache writes (hashed entries, timing caches, temp files of atomic writes): an untagged folder
# from before the tag, holding only these, is adopted; one holding anything else is not the cache's.
_CACHE_ENTRY = re.compile(r"^([0-9a-f]{12,}(\.pt)?|[\w.-]+\.timing-cache|\..+\.tmp)$")


def is_cache_kind(folder: Path) -> bool:
    """Whether `folder` is a kind folder the cache made (it carries the tag)."""
    try:  # the signature line is every tool's (cargo, pytest...): the pipeline's own line says it is ours
        return CACHE_TAG_TEXT.splitlines()[1] in (folder / CACHE_TAG).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return False


def cache_kind(kind: str) -> Path:
    """$PIPELINE_CACHE/<kind>, made and tagged as the cache's own. A cache that cannot be written (a file, a
    read-only folder) or a kind folder that holds the user's own files is a one-line PipelineError: the
    cache never writes among, nor clears, files it did not make."""
    from pipeline.errors import PipelineError

    folder = cache_dir() / kind
    if is_cache_kind(folder):
        return folder
    try:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        foreign = [n for n in present if n != CACHE_TAG and not _CACHE_ENTRY.match(n)]  # a damaged tag: rewritten
        if foreign:
            raise PipelineError(f"{folder} holds files the pipeline's cache did not write (e.g. {foreign[0]}); set "
                                "PIPELINE_CACHE to a folder of its own (default ~/.cache/pipeline)")
        writable_folder(folder, "cache folder")
        write_text_atomic(folder / CACHE_TAG, CACHE_TAG_TEXT)
    except PipelineError as e:
        raise PipelineError(f"{e} (PIPELINE_CACHE={cache_dir()})") from None
    except OSError as e:
        raise PipelineError(f"cannot use the cache folder {folder} ({e.strerror or e}); set PIPELINE_CACHE to a "
                            "writable folder") from None
    return folder


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

    path = cache_kind(kind) / f"{short_hash(key)}.pt"
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
