import math

import torch
from transformers import BertConfig, BertModel

from pipeline.space import Block
from pipeline.train.inherit import attention_fit, ffn_order, inherit
from pipeline.train.supernet import SuperBlock


def teacher(heads: int, intermediate: int = 256, hidden: int = 128, layers: int = 4) -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=intermediate, vocab_size=100, max_position_embeddings=32,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()


def states(model: BertModel, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states


def block_from(model: BertModel, lo: int, hi: int, widths=(64, 128)) -> tuple[SuperBlock, dict]:
    torch.manual_seed(1)
    sb = SuperBlock(model.config.hidden_size, widths, 2 * (hi - lo)).eval()
    record = inherit(sb, list(model.encoder.layer[lo:hi]), model.config.num_attention_heads)
    return sb, record


def test_widest_path_is_the_teachers_block_with_padding_too():
    model = teacher(heads=2)  # 64-wide heads, as the space's
    ids = torch.randint(0, 100, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.int64)
    mask[1, 6:] = 0
    hs = states(model, ids, mask)
    sb, record = block_from(model, 2, 4)
    assert record == {"from": "teacher", "attention": "exact"}
    sb.set(Block(128, ("mha", "ffn", "mha", "ffn")))
    with torch.no_grad():
        out = sb(hs[2], mask)                                           # [B, S, 128]
    real = mask.bool()
    torch.testing.assert_close(out[real], hs[4][real], atol=1e-5, rtol=1e-5)
    # the first layer alone (an mha and an ffn, then identities) is teacher layer 3
    sb.set(Block(128, ("mha", "ffn", "identity", "identity")))
    with torch.no_grad():
        torch.testing.assert_close(sb(hs[2], mask)[real], hs[3][real], atol=1e-5, rtol=1e-5)


def test_narrower_heads_are_merged_with_their_scores_summed():
    model = teacher(heads=4)  # 32-wide heads: two per head of ours
    assert attention_fit(128, 4) == "merged"
    sb, record = block_from(model, 0, 2)
    assert record["attention"] == "merged"
    att = model.encoder.layer[0].attention.self
    mha = sb.layers[0].full["mha"].op
    x = torch.randn(1, 5, 128)
    with torch.no_grad():
        q, k = att.query(x).view(1, 5, 4, 32), att.key(x).view(1, 5, 4, 32)
        theirs = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(32)      # [1, 4, 5, 5]
        qkv = mha.qkv(x).view(1, 5, 3, 2, 64)
        ours = torch.einsum("bqhd,bkhd->bhqk", qkv[:, :, 0], qkv[:, :, 1]) / math.sqrt(64)  # [1, 2, 5, 5]
    torch.testing.assert_close(ours, theirs[:, 0::2] + theirs[:, 1::2], atol=1e-5, rtol=1e-5)
    # one token attends only to itself, whatever the scores: values and output are copied as they are
    one = torch.ones(1, 1, dtype=torch.int64)
    hs = states(model, torch.tensor([[7]]), one)
    sb.set(Block(128, ("mha", "ffn", "identity", "identity")))
    with torch.no_grad():
        torch.testing.assert_close(sb(hs[0], one), hs[1], atol=1e-5, rtol=1e-5)


def test_other_head_sizes_leave_attention_random_and_a_foreign_width_everything():
    assert attention_fit(128, 1) == "none"   # one 128-wide head cannot be split into ours
    model = teacher(heads=1)
    sb = SuperBlock(128, (64, 128), 4)
    assert inherit(sb, list(model.encoder.layer[:2]), 1)["attention"] == "none"
    torch.testing.assert_close(sb.layers[0].full["ffn"].op.down.weight[:, :256],
                               model.encoder.layer[0].output.dense.weight[:, ffn_order(
                                   model.encoder.layer[0].intermediate.dense.weight,
                                   model.encoder.layer[0].output.dense.weight)])
    assert not torch.allclose(sb.layers[0].full["mha"].op.out.weight,
                              model.encoder.layer[0].attention.output.dense.weight)
    narrow = SuperBlock(128, (64, 96), 4)  # the teacher's width is not one of the block's
    w = narrow.in_proj.weight.clone()
    record = inherit(narrow, list(model.encoder.layer[:2]), 1)
    assert record["from"] == "random" and "128" in record["why"]
    assert torch.equal(narrow.in_proj.weight, w)


def test_ffn_neurons_sorted_by_importance_keep_the_strongest_in_a_narrow_path():
    up = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])   # [I=3, H=2]
    down = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])   # [H=2, I=3]: column norms 1, 1.41, 2.24
    assert ffn_order(up, down).tolist() == [2, 1, 0]           # importances 1, 4.24, 4.47
    model = teacher(heads=2, intermediate=512)                 # as many neurons as ours: all kept, sorted
    sb, _ = block_from(model, 0, 2)
    layer, ffn = model.encoder.layer[0], sb.layers[1].full["ffn"].op
    importance = layer.intermediate.dense.weight.norm(dim=1) * layer.output.dense.weight.norm(dim=0)
    ours = ffn.up.weight.norm(dim=1) * ffn.down.weight.norm(dim=0)
    torch.testing.assert_close(ours, importance.sort(descending=True).values)
    # the 64-wide path's FFN (256 neurons) holds the teacher's 256 strongest
    assert ours[:256].sum() > importance.sort().values[:256].sum() * 1.01
