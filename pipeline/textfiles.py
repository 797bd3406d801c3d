"""Reading the user's own text files (a corpus, a task's examples): one-line errors that name the file
and the line, never a traceback. One place, so that every stage words a bad file alike."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import PipelineError


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; `what` names the file in the errors ("corpus file", "task file")."""
    if not path.is_file():
        raise PipelineError(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PipelineError(f"{what} {path} is not UTF-8 text: {e}") from None


def json_objects(text: str, where: str, string_field: str | None = None) -> list[dict]:
    """The JSON object on each non-blank line of a JSONL text, each with a string at `string_field` when one
    is named; `where` names the file in the errors."""
    objects = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise PipelineError(f"{where} line {i} is not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise PipelineError(f"{where} line {i} is not a JSON object")
        if string_field is not None and not isinstance(obj.get(string_field), str):
            raise PipelineError(f"{where} line {i} has no string field {string_field!r}")
        objects.append(obj)
    return objects
