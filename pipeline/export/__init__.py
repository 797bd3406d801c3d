"""Stage 4: searched architectures -> deployable students, every artifact checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.artifacts import read_json
from pipeline.errors import PipelineError

EXPORT = "export.json"  # the record `export` writes per student and for the whole export; benchmark reads it
STUDENT_KEYS = ("name", "key", "model_dir")  # what every reader of export.json takes from each student


def read_export(export_dir: str | Path, needs: tuple[str, ...] = STUDENT_KEYS) -> dict[str, Any]:
    """DIR/export.json, checked once for every stage that reads it (benchmark, task): its `models` a non-empty
    list of students, each an object holding `needs`. Anything else is a one-line PipelineError naming the file
    and the fix, never a KeyError where a field is first read."""
    path = Path(export_dir) / EXPORT
    again = "run `export` again"
    try:
        export = read_json(path, again)
    except FileNotFoundError:
        raise PipelineError(f"no exported students in {export_dir} ({EXPORT} is missing); run `export` first") \
            from None
    models = export.get("models")
    if not isinstance(models, list):
        raise PipelineError(f"{path} is damaged (no list of models); {again}")
    if not models:
        raise PipelineError(f"{path} lists no students; {again}")
    for i, student in enumerate(models, 1):
        if not isinstance(student, dict):
            raise PipelineError(f"{path} is damaged (student {i} is not an object); {again}")
        missing = [k for k in needs if k not in student]
        if missing:
            raise PipelineError(f"{path} is damaged (student {i} has no {', '.join(missing)}); {again}")
    return export
