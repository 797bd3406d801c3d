"""Reading the user's own text files (a corpus, a task's examples): one-line errors that name the file
and the line, never a traceback. One place, so that every stage words a bad file alike."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline.errors import PipelineError


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; `what` names the file in the errors ("corpus file", "task file")."""
    if not path.is_file():
        raise PipelineError(f"{what} not found: {path}")
    try:
        # utf-8-sig: Notepad and Excel start a file with a byte order mark, which utf-8 keeps as text (in
        # the first column's name: "no column 'text'").
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise PipelineError(f"{what} {path} is not UTF-8 text: {e}") from None


def json_objects(text: str, where: str, string_field: str | None = None) -> list[dict]:
    """The JSON object on each non-blank line of a JSONL text, each with a string at `string_field` when one
    is named; `where` names the file in the errors."""
    objects = []
    # "\n" only: str.splitlines also ends a line at U+2028, U+0085 and others that a JSON string may hold
    # as they are (a "\r" before the "\n" is whitespace to json.loads).
    for i, line in enumerate(text.split("\n"), 1):
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


def table_rows(text: str, where: str, tsv: bool) -> list[dict[str, str]]:
    """The rows of a CSV or TSV text, each a dict keyed by the header line's names; `where` names the
    file in the errors, which give its line."""
    # A TSV (GLUE's) quotes nothing: a text may start with a quote, which csv's default quoting reads as
    # a field running on over the next rows. A CSV keeps standard quoting, strict, so that a quote left
    # open is an error rather than the rest of the file in one text.
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {"delimiter": ",", "strict": True}
    # No field is longer than the text (a long document may be one); csv refuses over 128 KiB by default.
    csv.field_size_limit(max(csv.field_size_limit(), min(len(text), 2**31 - 1)))
    # Through a stream, csv's own line handling: a quoted field keeps its newlines, and only "\n" ends
    # a line (str.splitlines also splits at U+2028, U+0085, \x1c and others a text may hold).
    reader = csv.DictReader(io.StringIO(text), **dialect)
    rows = []
    try:
        for row in reader:
            # DictReader's key for the fields beyond the header's: a text cut in two at a comma or tab,
            # the label read from its second half. Empty ones (a trailing comma) say nothing.
            extra = row.pop(None, [])  # type: ignore[call-overload]
            if any(v.strip() for v in extra):
                hint = "replace the tabs inside a text with spaces" if tsv else "quote a text that holds a comma"
                raise PipelineError(f"{where} line {reader.line_num} has {len(row) + len(extra)} fields, the header "
                                    f"{len(row)}: {hint}")
            rows.append(row)
    except csv.Error as e:  # DictReader's own line_num is set after a row is read, so the csv reader's
        hint = "" if tsv else "; a quoted text ends with a quote and doubles each quote inside it"
        raise PipelineError(f"{where} line {reader.reader.line_num}: {e}{hint}") from None
    return rows
