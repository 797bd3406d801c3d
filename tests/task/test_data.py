"""Task data: files, splits, labels, the offline WordNet task, and bad input."""

import json

import pytest

from pipeline.errors import PipelineError
from pipeline.task.data import Columns, load_files, load_unlabeled, split_rows
from pipeline.task.wordnet import wordnet_task


def _write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        keys = list(rows[0])
        path.write_text("\n".join([sep.join(keys)] + [sep.join(str(r[k]) for k in keys) for r in rows]))
    return path


def test_csv_tsv_and_jsonl_read_alike(tmp_path):
    rows = [{"text": f"example {i}", "label": ["neg", "pos"][i % 2]} for i in range(6)]
    tasks = [load_files(_write(tmp_path / f"t{ext}", rows), _write(tmp_path / f"d{ext}", rows))
             for ext in (".csv", ".tsv", ".jsonl")]
    for t in tasks:
        assert t.classes == ["neg", "pos"] and t.train.labels == [0, 1, 0, 1, 0, 1] and not t.regression
        assert t.train.texts == tasks[0].train.texts and t.test is None


def test_pairs_and_regression(tmp_path):
    rows = [{"s1": f"a {i}", "s2": f"b {i}", "score": f"{i / 2:.1f}"} for i in range(5)]
    t = load_files(_write(tmp_path / "t.csv", rows), _write(tmp_path / "d.csv", rows),
                   cols=Columns("s1", "s2", "score"))
    assert t.regression and t.outputs == 1 and t.train.pairs == [f"b {i}" for i in range(5)]
    assert t.train.labels == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_one_file_is_split_without_overlap(tmp_path):
    rows = [{"text": f"example {i}", "label": i % 3} for i in range(100)]
    t = load_files(_write(tmp_path / "all.jsonl", rows))
    sets = [set(s.texts) for s in (t.train, t.dev, t.test)]
    assert [len(s) for s in sets] == [80, 10, 10]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert split_rows(rows) == split_rows(rows)  # seeded


@pytest.mark.parametrize("rows, cols, match", [
    ([{"text": "a", "label": 1}, {"text": "b", "label": 1}], Columns(), "two classes"),
    ([{"text": "a", "label": 1}, {"text": "b", "label": 0}], Columns(label="y"), "no column 'y'"),
    ([{"text": "a", "label": "0.5"}, {"text": "b", "label": "high"}], Columns(), "not a number"),
    ([{"text": "a", "label": 1}, {"text": "", "label": 0}], Columns(), "example 2 has no 'text'"),
])
def test_bad_task_data_is_a_one_line_error(tmp_path, rows, cols, match):
    path = _write(tmp_path / "t.jsonl", rows)
    with pytest.raises(PipelineError, match=match):
        load_files(path, path, cols=cols)


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_files(tmp_path / "nope.csv", tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(PipelineError, match="no examples"):
        load_files(tmp_path / "empty.csv", tmp_path / "empty.csv")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(PipelineError, match="use .csv"):
        load_files(tmp_path / "t.txt", tmp_path / "t.txt")
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    dev = _write(tmp_path / "d.jsonl", [{"text": "c", "label": "z"}])
    with pytest.raises(PipelineError, match="never occurs"):
        load_files(_write(tmp_path / "t.jsonl", rows), dev)


def test_wordnet_task_is_45_lexicographer_files_of_distinct_glosses():
    t = wordnet_task()
    assert len(t.classes) == 45 and "noun.animal" in t.classes and "verb.motion" in t.classes
    assert (len(t.train), len(t.dev), len(t.test)) == (6000, 1000, 4000)
    texts = [set(s.texts) for s in (t.train, t.dev, t.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2])
    assert wordnet_task().train.texts[:20] == t.train.texts[:20]  # seeded
    small = wordnet_task({"train": 300, "dev": 50, "test": 50})
    assert len(small.train) == 300 and len(small.dev) <= 50


def test_a_larger_wordnet_test_split_leaves_train_dev_and_the_smaller_test_split_as_they_were():
    # Results measured on the old 1,000-gloss test split stay comparable: the same teacher, and its glosses first.
    small = wordnet_task({"train": 300, "dev": 50, "test": 50}, unlabeled=0)
    large = wordnet_task({"train": 300, "dev": 50, "test": 200}, unlabeled=0)
    assert large.train == small.train and large.dev == small.dev
    assert large.test.texts[:len(small.test)] == small.test.texts and len(large.test) > len(small.test)


def test_the_wordnet_tasks_unlabelled_glosses_are_in_no_split_and_leave_the_splits_as_they_were():
    sizes = {"train": 300, "dev": 50, "test": 50}
    plain, with_extra = wordnet_task(sizes, unlabeled=0), wordnet_task(sizes, unlabeled=500)
    assert plain.unlabeled is None and len(with_extra.unlabeled) == 500 and with_extra.unlabeled.labels == []
    for split in ("train", "dev", "test"):
        assert getattr(plain, split) == getattr(with_extra, split)
    labelled = {x for s in (with_extra.train, with_extra.dev, with_extra.test) for x in s.texts}
    assert not labelled & set(with_extra.unlabeled.texts)
    assert with_extra.describe()["unlabeled_examples"] == 500


def test_unlabelled_text_is_read_from_a_file_and_bad_files_are_one_line_errors(tmp_path):
    path = _write(tmp_path / "u.jsonl", [{"sentence": "a dog ran", "label": "ignored"}, {"sentence": "it rained"}])
    extra = load_unlabeled(path, Columns(text="sentence"))
    assert extra.texts == ["a dog ran", "it rained"] and extra.labels == []
    with pytest.raises(PipelineError, match="no column 'text'"):
        load_unlabeled(path)
    with pytest.raises(PipelineError, match="not found"):
        load_unlabeled(tmp_path / "nope.csv")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_a_regression_label_that_is_not_finite_is_refused(tmp_path, bad):
    rows = [{"text": f"a {i}", "label": f"{i / 2:.1f}"} for i in range(5)] + [{"text": "b", "label": bad}]
    path = _write(tmp_path / "t.csv", rows)
    with pytest.raises(PipelineError, match=rf"t\.csv: example 6 has label '{bad}', not a finite number"):
        load_files(path, path)


def test_a_json_nan_label_is_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 0.5}\n{"text": "b", "label": NaN}\n')
    with pytest.raises(PipelineError, match="example 2 has label nan, not a finite number"):
        load_files(path, path)


def test_a_tsv_text_may_start_with_a_quote(tmp_path):
    # GLUE's TSVs quote nothing: SST-2 has sentences that start with a quote, which csv's default
    # quoting read as a field running on into the next row (30 lines, 29 examples).
    lines = ["text\tlabel"] + [f"example {i}\t{i % 2}" for i in range(29)]
    lines[5] = '" a quote opens the text\t0'
    path = tmp_path / "t.tsv"
    path.write_text("\n".join(lines) + "\n")
    task = load_files(path, path)
    assert len(task.train) == 29 and task.train.texts[4] == '" a quote opens the text'


def test_a_quoted_csv_field_keeps_its_newline(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"the\nran",0\nplain,1\n')
    assert load_files(path, path).train.texts == ["the\nran", "plain"]


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c"])
@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl"])
def test_unicode_line_separators_stay_inside_a_text(tmp_path, sep, ext):
    rows = [{"text": f"one{sep}two", "label": "x"}, {"text": "three", "label": "y"}]
    task = load_files(_write(tmp_path / f"t{ext}", rows), _write(tmp_path / f"d{ext}", rows))
    assert task.train.texts == [f"one{sep}two", "three"] and task.train.labels == [0, 1]


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl"])
def test_a_byte_order_mark_does_not_rename_the_first_column(tmp_path, ext):
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    path = _write(tmp_path / f"t{ext}", rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_files(path, path).train.texts == ["a", "b"]


def test_a_csv_field_longer_than_csvs_default_limit_is_read(tmp_path):
    long = "word " * 40_000  # 200,000 characters; csv refuses a field over 131,072 by default
    path = tmp_path / "t.csv"
    path.write_text(f"text,label\n{long},0\nshort,1\n")
    assert load_files(path, path).train.texts == [long, "short"]


@pytest.mark.parametrize("content, match", [
    ('text,label\na,0\n"never closed,1\nb,0\n',
     r"t\.csv line 4: unexpected end of data; a quoted text ends with a quote"),
    ('text,label\na,0\nhello, world,1\n', r"t\.csv line 3 has 3 fields, the header 2: quote a text"),
])
def test_a_malformed_csv_is_a_one_line_error_naming_the_line(tmp_path, content, match):
    # Read leniently, the first swallowed the rest of the file into one text and the second lost "1".
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(PipelineError, match=match):
        load_files(path, path)


def test_a_json_label_too_large_for_a_float_is_an_error_not_a_traceback(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 0.5}\n{"text": "b", "label": 1' + "0" * 400 + '}\n')
    with pytest.raises(PipelineError, match="is not a number"):
        load_files(path, path)
