import pytest
import torch

from pipeline.model.ops import Sublayer, masks
from pipeline.space import OPS


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("hidden", [128, 192])
def test_shape_and_padding_never_leaks_into_tokens(op, hidden):
    torch.manual_seed(0)
    layer = Sublayer(op, hidden).eval()
    x = torch.randn(2, 12, hidden)  # [B, S, H]
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[:, 9:] = 0  # last 3 positions are padding
    keep, bias = masks(mask, x.dtype)
    y = layer(x, keep, bias)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 9:] = torch.randn(2, 3, hidden) * 100  # whatever sits in the padding ...
    y2 = layer(x2, keep, bias)
    torch.testing.assert_close(y[:, :9], y2[:, :9])  # ... real tokens do not see it


def test_identity_is_nothing():
    x = torch.randn(1, 4, 128)
    keep, bias = masks(torch.ones(1, 4, dtype=torch.int64), x.dtype)
    assert Sublayer("identity", 128)(x, keep, bias) is x
    assert not list(Sublayer("identity", 128).parameters())


def test_heads_of_size_64():
    assert Sublayer("mha", 384).op.heads == 6
    assert Sublayer("mha", 128).op.heads == 2  # at least 2 heads


def test_fp16_mask_bias_is_finite():
    keep, bias = masks(torch.tensor([[1, 0]]), torch.float16)
    assert torch.isfinite(bias).all() and bias.dtype == torch.float16


@pytest.mark.parametrize("op", ["att3x32", "att12x32", "ffn384", "ffn1536"])
def test_teacher_shaped_ops_run_and_mask_padding(op):
    torch.manual_seed(0)
    layer = Sublayer(op, 384).eval()
    x = torch.randn(2, 10, 384)
    mask = torch.ones(2, 10, dtype=torch.int64)
    mask[:, 7:] = 0
    keep, bias = masks(mask, x.dtype)
    y = layer(x, keep, bias)
    x2 = x.clone()
    x2[:, 7:] = 100.0
    torch.testing.assert_close(y[:, :7], layer(x2, keep, bias)[:, :7])
    if op.startswith("att"):
        assert layer.op.heads * layer.op.head_dim == layer.op.out.in_features
    else:
        assert layer.op.up.out_features == int(op[3:])


def test_unknown_ops_are_value_errors():
    for bad in ("att", "att3", "ffn0", "attx32", "conv"):
        with pytest.raises(ValueError, match="unknown op"):
            Sublayer(bad, 128)
