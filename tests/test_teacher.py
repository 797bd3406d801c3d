import json

import pytest

from pipeline.errors import PipelineError
from pipeline.teacher import load_teacher, load_teacher_config, space_for_teacher


def test_default_teacher_is_offline_minilm():
    c = load_teacher_config(None)
    assert (c.model_type, c.hidden_size, c.num_hidden_layers) == ("bert", 384, 6)
    s = space_for_teacher(None)
    assert (s.num_blocks, s.layers_per_block, s.vocab_size) == (3, 4, 30522)


def test_local_folder(tiny_teacher):
    model = load_teacher(str(tiny_teacher))
    assert model.config.num_hidden_layers == 4
    assert space_for_teacher(str(tiny_teacher)).hidden_sizes == (128,)


def test_not_a_bert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64}))
    with pytest.raises(PipelineError, match="not a BERT"):
        load_teacher_config(str(tmp_path))
    with pytest.raises(PipelineError, match="could not load teacher"):
        load_teacher_config(str(tmp_path / "missing"))
