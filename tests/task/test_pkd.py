"""PKD's loss against a hand computation, and its layer maps."""

import math

import pytest
import torch

from pipeline.task.pkd import layer_map, method_weights, pkd_loss


def test_pkd_loss_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 1])
    s = [torch.tensor([[3.0, 4.0], [1.0, 0.0]])]
    t = [torch.tensor([[4.0, 3.0], [0.0, 2.0]])]
    a, temp, b = 0.7, 2.0, 10.0

    def softmax(x):
        e = [math.exp(v) for v in x]
        return [v / sum(e) for v in e]

    ce = -(math.log(softmax([2.0, 0.0])[0]) + math.log(softmax([0.0, 1.0])[1])) / 2
    kl = 0.0
    for lo, te in zip(logits.tolist(), teacher.tolist(), strict=True):
        p = softmax([v / temp for v in te])
        q = softmax([v / temp for v in lo])
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    kl = kl / 2 * temp ** 2
    # normalised states: (0.6, 0.8) vs (0.8, 0.6); (1, 0) vs (0, 1); squared distances 0.08 and 2, mean over
    # batch and the 2 dimensions: (0.08 + 2) / 4
    pt = (0.08 + 2.0) / 4
    expected = (1 - a) * ce + a * kl + b * pt
    got = pkd_loss(logits, labels, teacher, s, t, a, temp, b).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_token_states_are_compared_on_the_real_tokens_only():
    from pipeline.task.pkd import normalised_distance

    s = torch.tensor([[[3.0, 4.0], [1.0, 0.0], [5.0, 5.0]]])              # [1, 3, 2]: the third is padding
    t = torch.tensor([[[4.0, 3.0], [0.0, 2.0], [-1.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # the two real tokens as the [CLS] example above: (0.08 + 2) over 2 tokens x 2 dimensions
    assert float(normalised_distance(s, t, mask)) == pytest.approx((0.08 + 2.0) / 4)
    flat = normalised_distance(s[0, :2], t[0, :2])                        # the same pairs as pooled states
    assert float(flat) == pytest.approx((0.08 + 2.0) / 4)


def test_unlabelled_rows_learn_only_from_the_teacher():
    torch.manual_seed(0)
    logits, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 2, 0, 0])  # rows 2 and 3: placeholders
    s, t = [torch.randn(4, 5)], [torch.randn(4, 5)]
    labeled = torch.tensor([True, True, False, False])
    got = pkd_loss(logits, labels, teacher, s, t, 0.7, 10.0, 100.0, labeled=labeled)
    soft = pkd_loss(logits, labels, teacher, [], [], 1.0, 10.0, 0.0)         # a = 1: the soft term alone
    nobody = torch.zeros(4, dtype=torch.bool)
    states = pkd_loss(logits, labels, teacher, s, t, 0.0, 10.0, 100.0, labeled=nobody)  # no label, a = 0
    hard = torch.nn.functional.cross_entropy(logits[:2], labels[:2])        # the labelled rows' mean
    assert float(got) == pytest.approx(float(0.3 * hard + 0.7 * soft + states), rel=1e-5)
    assert float(states) == pytest.approx(float(pkd_loss(logits, labels, teacher, s, t, 0.0, 10.0, 100.0)
                                                - torch.nn.functional.cross_entropy(logits, labels)), rel=1e-5)
    # every row unlabelled: the label term is 0, not NaN
    none = pkd_loss(logits, labels, teacher, s, t, 0.7, 10.0, 100.0, labeled=nobody)
    assert float(none) == pytest.approx(float(0.7 * soft + states), rel=1e-5)
    # regression: the label term over the labelled rows only
    r = pkd_loss(torch.tensor([[1.0], [5.0]]), torch.tensor([2.0, 0.0]), torch.tensor([[1.0], [5.0]]), [], [], 0.5,
                 1.0, 0.0, regression=True, labeled=torch.tensor([True, False]))
    assert float(r) == pytest.approx(0.5 * 1.0)


def test_pkd_loss_for_regression_is_mse_to_labels_and_teacher():
    logits, teacher = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [2.0]])
    labels = torch.tensor([1.5, 2.0])
    got = pkd_loss(logits, labels, teacher, [], [], 0.5, 10.0, 100.0, regression=True).item()
    assert got == pytest.approx(0.5 * (0.25 / 2) + 0.5 * (1.0 / 2))


def test_methods_switch_terms_off():
    assert method_weights("pkd", 0.7, 500) == (0.7, 500)
    assert method_weights("kd", 0.7, 500) == (1.0, 0.0)
    assert method_weights("ce", 0.7, 500) == (0.0, 0.0)
    with pytest.raises(ValueError):
        method_weights("tinybert", 0.7, 500)


def test_pkd_papers_maps_for_six_of_twelve():
    assert layer_map(6, 12, "skip") == [2, 4, 6, 8, 10]
    assert layer_map(6, 12, "last") == [7, 8, 9, 10, 11]
    assert layer_map(3, 6, "skip") == [2, 4] and layer_map(3, 6, "last") == [4, 5]


@pytest.mark.parametrize("blocks", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("teacher", [6, 8, 12])
def test_maps_are_increasing_teacher_layers_below_the_last(blocks, teacher):
    for mode in ("skip", "last"):
        m = layer_map(blocks, teacher, mode)
        assert len(m) == blocks - 1
        assert all(1 <= k <= teacher - 1 for k in m)
        assert m == sorted(set(m))  # strictly increasing: every student layer a layer of its own
    skip, last = layer_map(blocks, teacher, "skip"), layer_map(blocks, teacher, "last")
    assert last[-1] == teacher - 1 and sum(last) >= sum(skip)


def test_bad_maps_are_refused():
    with pytest.raises(ValueError, match="more layers"):
        layer_map(7, 6)
    with pytest.raises(ValueError, match="unknown"):
        layer_map(3, 6, "middle")


def test_a_bad_task_recipe_is_refused_with_its_flag():
    from pipeline.errors import PipelineError
    from pipeline.task.train import TaskConfig

    with pytest.raises(PipelineError, match="--pkd-states"):
        TaskConfig(pkd_states="max")
    with pytest.raises(PipelineError, match="--pkd "):
        TaskConfig(pkd="middle")
