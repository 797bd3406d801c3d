"""The pruned teacher: slicing heads and neurons computes exactly the teacher with those units masked."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.importance import METHODS, _taps, importance
from pipeline.model.pruned import Shape, plain_bert, pruned_teacher

CONFIG = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
              vocab_size=200, max_position_embeddings=32)


@pytest.fixture(scope="module")
def teacher():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(**CONFIG), add_pooling_layer=False).eval()


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(5, 200, (8, 16), generator=torch.Generator().manual_seed(1))


def _states(model, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    mask = torch.ones_like(ids) if mask is None else mask
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


def test_keeping_everything_is_the_teacher_exactly(teacher, ids):
    imp = importance(teacher, "magnitude")
    model = pruned_teacher(teacher, Shape.uniform(3, 4, 96), imp)
    assert torch.equal(_states(model, ids), _states(teacher, ids))


@pytest.mark.parametrize("shape", [Shape((2, 1, 4), (48, 96, 10)), Shape((0, 3, 2), (96, 0, 5)),
                                   Shape((0, 0, 1), (7, 96, 0))])
def test_pruning_equals_masking_the_removed_units(teacher, ids, shape):
    imp = importance(teacher, "sensitivity", ids)
    pad = torch.ones_like(ids)
    pad[:, 12:] = 0  # padding honoured by the sliced attention too
    model = pruned_teacher(teacher, shape, imp)
    hm, nm = torch.zeros(3, 4), torch.zeros(3, 96)
    for i in range(3):
        hm[i, imp.head_order(i)[:shape.heads[i]]] = 1
        nm[i, imp.neuron_order(i)[:shape.neurons[i]]] = 1
    with _taps(teacher, hm, nm):
        want = _states(teacher, ids, pad)
    got = _states(model, ids, pad)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    sliced = sum(p.numel() for p in model.parameters())
    assert sliced < sum(p.numel() for p in teacher.parameters())


def test_dropped_layers_are_gone(teacher, ids):
    imp = importance(teacher, "magnitude")
    model = pruned_teacher(teacher, Shape.uniform(3, 4, 96, keep=2), imp)
    assert len(model.encoder.layer) == 2 and model.config.num_hidden_layers == 2
    with torch.no_grad():
        want = teacher(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(_states(model, ids), want)
    assert len(teacher.encoder.layer) == 3  # the teacher itself untouched


def test_pruned_model_trains_and_exports(teacher, ids, tmp_path):
    from pipeline.model.teacher import Encoder
    from pipeline.onnxio import export_onnx, ort_session

    model = Encoder(pruned_teacher(teacher, Shape((2, 0, 3), (40, 96, 0)), importance(teacher, "magnitude")))
    mask = torch.ones_like(ids)
    model.train()
    model(ids, mask).pow(2).mean().backward()
    assert all(p.grad is not None for p in model.bert.encoder.parameters())
    model.eval()
    path = export_onnx(model, {"input_ids": ids[:1], "attention_mask": mask[:1]}, tmp_path / "m.onnx")
    got = torch.from_numpy(ort_session(path)({"input_ids": ids, "attention_mask": mask}))
    torch.testing.assert_close(got, _states(model.bert, ids), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_importance_scores_every_unit(teacher, ids, method):
    imp = importance(teacher, method, ids)
    assert imp.heads.shape == (3, 4) and imp.neurons.shape == (3, 96)
    assert torch.isfinite(imp.heads).all() and torch.isfinite(imp.neurons).all()
    assert imp.heads.std() > 0 and imp.neurons.std() > 0  # it ranks: not one score for all


def test_ranking_matters_on_a_teacher_with_a_dead_head(teacher, ids):
    """A head or neuron whose output weights are zero changes nothing: every measure scores it 0, and the
    non-negative ones rank it last (sensitivity is signed: a unit that hurts the narrower networks ranks
    below one that does nothing)."""
    import copy

    t = copy.deepcopy(teacher)
    with torch.no_grad():
        t.encoder.layer[1].attention.output.dense.weight[:, 16:32] = 0  # head 1 of layer 1 (head size 16)
        t.encoder.layer[0].output.dense.weight[:, 5] = 0                 # neuron 5 of layer 0
    for method in METHODS:
        imp = importance(t, method, ids)
        assert float(imp.heads[1, 1]) == 0 and float(imp.neurons[0, 5]) == 0, method
        if method != "sensitivity":
            assert int(imp.head_order(1)[-1]) == 1, method
            assert int(imp.neuron_order(0)[-1]) == 5, method


def test_bad_shapes_are_one_line_errors(teacher):
    imp = importance(teacher, "magnitude")
    with pytest.raises(PipelineError, match="5 heads"):
        pruned_teacher(teacher, Shape((5, 4, 4), (96, 96, 96)), imp)
    with pytest.raises(PipelineError, match="at least one layer"):
        pruned_teacher(teacher, Shape((0, 0, 0), (0, 0, 0)), imp)
    with pytest.raises(PipelineError, match="2 layers"):
        pruned_teacher(teacher, Shape((4, 4), (96, 96)), imp)


def test_plain_bert_only_without_pruned_heads_and_with_one_ffn_size(teacher):
    assert plain_bert(teacher, Shape.uniform(3, 4, 48, keep=2))
    assert not plain_bert(teacher, Shape.uniform(3, 2, 96))
    assert not plain_bert(teacher, Shape((4, 4, 4), (96, 48, 96)))
    assert Shape.uniform(3, 2, 48).describe() == "h2/d48 x3"
    assert Shape((2, 0, 0), (48, 0, 0)).describe() == "h2/d48, -, -"
