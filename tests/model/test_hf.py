"""A student saved as a Hugging Face-style folder loads back the same, with its tokenizer."""

import json
import random

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.hf import load_student, save_student
from pipeline.model.student import Student, example_inputs


def test_round_trip_keeps_outputs_and_records_meta(tmp_path, tiny_space, tiny_teacher_tok):
    from pipeline.model.teacher import load_tokenizer

    torch.manual_seed(0)
    student = Student(tiny_space.sample(random.Random(3))).eval()
    folder = save_student(student, tmp_path / "s", load_tokenizer(str(tiny_teacher_tok)), {"pipeline": {"x": 1}})
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == student.arch.to_dict() and config["pipeline"] == {"x": 1}
    assert config["hidden_size"] == tiny_space.teacher_hidden
    loaded, tokenizer = load_student(folder)
    inputs = example_inputs(2, 12, tiny_space.vocab_size)
    with torch.inference_mode():
        assert torch.equal(loaded(*inputs.values()), student(*inputs.values()))
    assert tokenizer is not None and tokenizer("a test")["input_ids"][0] == tokenizer.cls_token_id


def test_not_a_student_folder(tmp_path):
    with pytest.raises(PipelineError, match="not a student folder"):
        load_student(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(PipelineError, match="holds a 'bert' model"):
        load_student(tmp_path)
