"""A teacher with no layer has no block to search: a one-line error, not an IndexError while sampling (issue 46)."""

import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.space import SearchSpace


@pytest.fixture
def no_layer_teacher(tmp_path):
    """A BERT folder of 0 layers (weights and a tokenizer, as a user would save one)."""
    from conftest import TINY
    from transformers import BertConfig, BertModel

    from pipeline.model.teacher import load_tokenizer

    folder = tmp_path / "bert-0"
    BertModel(BertConfig(**{**TINY, "num_hidden_layers": 0})).save_pretrained(folder)
    load_tokenizer(None).save_pretrained(folder)
    return folder


def test_a_teacher_without_layers_is_a_one_line_error(no_layer_teacher, tmp_path, capsys):
    code = main(["space", "--teacher", str(no_layer_teacher), "--sample", "1", "--out", str(tmp_path / "archs")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    (line,) = [x for x in err.strip().splitlines() if x.startswith("error: ")]
    assert "0 layers" in line and "num_hidden_layers" in line and str(no_layer_teacher) in line, err


@pytest.mark.parametrize("layers", [0, -1])
def test_a_space_needs_a_layer_per_block(layers):
    with pytest.raises(PipelineError, match=f"{layers} layers"):
        SearchSpace.from_teacher(128, layers, 1000, 64)
    assert SearchSpace.from_teacher(128, 1, 1000, 64).num_blocks == 1  # one layer is one block of one
