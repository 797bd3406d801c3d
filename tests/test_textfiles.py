"""The user's text files: read as UTF-8 and JSONL with one-line errors naming the file and the line."""

import pytest

from pipeline.errors import PipelineError
from pipeline.textfiles import json_objects, read_text, table_rows


def test_text_is_read_and_a_missing_or_binary_file_is_named(tmp_path):
    good = tmp_path / "a.txt"
    good.write_text("héllo\n", encoding="utf-8")
    assert read_text(good, "corpus file") == "héllo\n"
    with pytest.raises(PipelineError, match=r"^task file not found: .*nope\.csv$"):
        read_text(tmp_path / "nope.csv", "task file")
    bad = tmp_path / "b.txt"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PipelineError, match=r"^corpus file .*b\.txt is not UTF-8 text"):
        read_text(bad, "corpus file")


def test_json_lines_skip_blanks_and_name_the_bad_line():
    assert json_objects('{"text": "a"}\n\n  \n{"text": "b", "n": 1}\n', "f") == [{"text": "a"}, {"text": "b", "n": 1}]
    with pytest.raises(PipelineError, match="^f line 3 is not JSON"):
        json_objects('{"a": 1}\n\n{"a": \n', "f")
    with pytest.raises(PipelineError, match="^f line 2 is not a JSON object$"):
        json_objects('{"a": 1}\n[1, 2]\n', "f")
    with pytest.raises(PipelineError, match="^f line 2 has no string field 'text'$"):
        json_objects('{"text": "a"}\n{"text": 3}\n', "f", string_field="text")


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path):
    # Notepad and Excel write one; read as UTF-8 it became part of the first column's name.
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\n")
    assert read_text(path, "task file") == "text,label\n"


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85"])
def test_json_lines_end_at_newlines_only(sep):
    # str.splitlines also ends a line at these, which a JSON string may hold as they are.
    text = '{"text": "a' + sep + 'b"}\n{"text": "c"}\r\n'
    assert json_objects(text, "f", string_field="text") == [{"text": f"a{sep}b"}, {"text": "c"}]


def test_table_rows_refuse_a_text_cut_in_two_and_let_a_trailing_separator_pass():
    assert table_rows("text,label\na,0,\n", "f", tsv=False) == [{"text": "a", "label": "0"}]
    with pytest.raises(PipelineError, match="^f line 2 has 3 fields, the header 2: replace the tabs inside a text"):
        table_rows("text\tlabel\na\tb\t0\n", "f", tsv=True)
