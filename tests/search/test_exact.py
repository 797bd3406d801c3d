import itertools
import random

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable, Predictor
from pipeline.search.exact import search
from pipeline.space import Architecture, Block, Frame

ID = ("identity",)


class ToyLatency:
    """Latency = 1 ms per op + 0.1 ms per adapter + 0.5 ms fixed; additive, so the optimum is easy to see."""

    class calibration:  # noqa: N801 - mimics Predictor.calibration
        coefs = (1.0, 1.0, 1.0, 1.0, 0.0)

    def block_terms(self, block):
        n = sum(op != "identity" for op in block.layers)
        return np.array([n * 1.0, 0, 0, 0, 0, n * block.hidden])

    def link_terms(self, d_in, d_out):
        return np.array([0, 0, 0, 0.1, 0, d_in * d_out])

    def base_terms(self, teacher_hidden, vocab_size, embed_dim, max_positions):
        return np.array([0, 0, 0, 0.5, 0, 1000])

    def predict_terms(self, terms):
        return terms[..., :4].sum(-1)


def entry(hidden, n_ops, loss):
    return {"hidden": hidden, "layers": ["ffn"] * n_ops + ["identity"] * (2 - n_ops), "val_loss": loss}


FRAME = Frame(teacher_hidden=256, embed_dim=128, vocab_size=1000, max_positions=64)
# Two blocks; more ops -> lower loss. Fixed 0.5 + 3 adapters 0.3 = 0.8 ms in every student.
POOLS = [[entry(128, 0, 1.0), entry(128, 1, 0.6), entry(128, 2, 0.5)],
         [entry(128, 0, 2.0), entry(128, 1, 1.0), entry(128, 2, 0.2)]]


def test_known_optimum_for_each_budget():
    choices = search(POOLS, FRAME, ToyLatency(), [0.8, 1.8, 2.8, 4.8])
    ops = [[sum(op == "ffn" for op in b.layers) for b in c.arch.blocks] for c in choices]
    # 0.8: nothing fits but identities; 1.8: one op, best in block 2 (2.0 -> 1.0 beats 1.0 -> 0.6);
    # 2.8: two ops, both in block 2 (loss 1.2) beats one each (1.6); 4.8: everything.
    assert ops == [[0, 0], [0, 1], [0, 2], [2, 2]]
    assert [c.est_loss for c in choices] == pytest.approx([3.0, 2.0, 1.2, 0.7])
    for c in choices:
        assert c.predicted_ms <= c.budget_ms + 1e-9


def test_infeasible_budget_names_the_fastest():
    with pytest.raises(PipelineError, match="meets 500us: the fastest is predicted at 0.800 ms"):
        search(POOLS, FRAME, ToyLatency(), [0.5, 5.0])


def test_parameter_cap():
    choices = search(POOLS, FRAME, ToyLatency(), [10.0], max_params=1000 + 128 * 128 * 3 + 128 * 128 + 256)
    assert [sum(op == "ffn" for op in b.layers) for b in choices[0].arch.blocks] == [0, 2]
    with pytest.raises(PipelineError, match="parameters"):
        search(POOLS, FRAME, ToyLatency(), [10.0], max_params=10)


@pytest.mark.parametrize("cap", [0, -5])
def test_a_parameter_cap_below_one_is_refused_not_read_as_no_cap(cap):
    # `--max-params 0.5` reached the search as 0, which `if max_params` read as no cap at all.
    with pytest.raises(PipelineError, match=f"^a parameter cap of {cap} admits no student"):
        search(POOLS, FRAME, ToyLatency(), [10.0], max_params=cap)


def test_rerank_uses_the_true_loss_among_the_top_t():
    seen = []

    def true_loss(arch: Architecture) -> float:
        seen.append(arch)
        return -sum(b.hidden for b in arch.blocks) - sum(op == "ffn" for op in arch.blocks[0].layers)

    c = search(POOLS, FRAME, ToyLatency(), [4.8], top_t=3, rerank=true_loss)[0]
    assert len(seen) == 3 and c.candidates_ranked == 3 and c.true_loss is not None
    # The top 3 by estimate are [2,2] 0.7, [1,2] 0.8, [0,2] 1.2; the re-ranker prefers more ops in block 1.
    assert [sum(op == "ffn" for op in b.layers) for b in c.arch.blocks] == [2, 2]


@pytest.mark.parametrize("prefer_widest", [False, True])
def test_matches_brute_force_on_a_real_table(tiny_table, tiny_space, prefer_widest):
    """Random pools, the real calibrated predictor of the tiny profile: the exact optimum, every budget;
    with last_widths, the optimum among students with a preferred last width wherever one fits."""
    p = Predictor(LatencyTable.load(tiny_table), 1, 16)
    rng = random.Random(3)
    pools = []
    for _ in range(tiny_space.num_blocks):
        pool = []
        for _ in range(15):
            arch = tiny_space.sample(rng)
            pool.append({"hidden": arch.blocks[0].hidden, "layers": list(arch.blocks[0].layers),
                         "val_loss": rng.random()})
        pools.append(pool)
    frame = Frame(tiny_space.teacher_hidden, tiny_space.embed_dim, tiny_space.vocab_size, tiny_space.max_positions)
    everything = []
    for combo in itertools.product(*pools):
        arch = Architecture(frame.teacher_hidden, frame.embed_dim,
                            tuple(Block(e["hidden"], tuple(e["layers"])) for e in combo),
                            frame.vocab_size, frame.max_positions)
        everything.append((sum(e["val_loss"] for e in combo), p(arch), arch))
    lo, hi = min(x[1] for x in everything), max(x[1] for x in everything)
    budgets = list(np.linspace(lo, hi, 6)[1:])
    wide = {max(e["hidden"] for e in pools[-1])} if prefer_widest else None
    choices = search(pools, frame, p, budgets, last_widths=wide)
    fallbacks = 0
    for budget, c in zip(sorted(budgets), choices, strict=True):
        fits = [x for x in everything if x[1] <= budget]
        preferred = [x for x in fits if wide is None or x[2].blocks[-1].hidden in wide]
        fallbacks += not preferred
        best = min(preferred or fits, key=lambda x: x[0])
        assert c.est_loss == pytest.approx(best[0])
        assert c.predicted_ms == pytest.approx(p(c.arch)) and c.predicted_ms <= budget
        assert wide is None or (c.arch.blocks[-1].hidden in wide) == bool(preferred)
    assert fallbacks < len(budgets)  # the preference decided at least one budget



def mixed(hidden, layers, loss):
    return {"hidden": hidden, "layers": list(layers), "val_loss": loss}


def test_diverse_hands_the_reranker_the_best_of_each_attention_count():
    # Attention costs the same as an FFN in the toy latency but scores worse in the block losses, so
    # the plain top 3 have no attention at all; the diverse ones have 0, 2 and 4 attention layers
    # (five counts present, three asked for, spread evenly), each the best of its count (brute force).
    rng = random.Random(0)
    shapes = [lay + ("identity",) * (2 - n) for n in range(3) for lay in itertools.product(("mha", "ffn"), repeat=n)]
    pools = [[mixed(h, layers, round(1 + rng.random() + layers.count("mha"), 3))
              for h in (64, 128) for layers in shapes] for _ in range(2)]
    budget = 5.0
    everything = []
    for a, b in itertools.product(*pools):
        arch = Architecture(256, 128, (Block(a["hidden"], tuple(a["layers"])), Block(b["hidden"], tuple(b["layers"]))),
                            1000, 64)
        ms = ToyLatency().predict_terms(sum(ToyLatency().block_terms(x) for x in arch.blocks) +
                                        ToyLatency().base_terms(0, 0, 0, 0) + 3 * np.array([0, 0, 0, 0.1, 0, 0]))
        if ms <= budget:
            everything.append((a["val_loss"] + b["val_loss"], (a["layers"] + b["layers"]).count("mha"), arch))
    best_of = {k: min(x[0] for x in everything if x[1] == k) for k in {x[1] for x in everything}}
    assert sorted(best_of) == [0, 1, 2, 3, 4]
    for diverse, counts in ((False, [0, 0, 0]), (True, [0, 2, 4])):
        seen: list[Architecture] = []
        c = search(pools, FRAME, ToyLatency(), [budget], top_t=3,
                   rerank=lambda a, seen=seen: seen.append(a) or -a.attention_layers,
                   diverse=diverse)[0]
        got = sorted(a.attention_layers for a in seen)
        assert got == counts and c.candidates_ranked == 3
    # each is the best of its count, and the re-ranker's favourite (the most attention) wins
    for a in seen:
        k = a.attention_layers
        assert sum(float(e["val_loss"]) for blk, pool in zip(a.blocks, pools, strict=True) for e in pool
                   if e["hidden"] == blk.hidden and tuple(e["layers"]) == blk.layers) == pytest.approx(best_of[k])
    assert c.arch.attention_layers == 4
    # fewer counts than asked for: every one of them
    assert len(search(pools, FRAME, ToyLatency(), [budget], top_t=9, rerank=lambda a: 0.0,
                      diverse=True)[0].ranked) == 5


def test_a_preferred_last_width_wins_where_it_fits_and_gives_way_where_not():
    # The narrow last block has the better block loss; the wide one costs two ops (2.8 ms in all).
    pools = [[entry(128, 0, 1.0)], [entry(128, 1, 0.1), entry(256, 2, 0.5)]]
    for diverse in (False, True):
        tight, loose = search(pools, FRAME, ToyLatency(), [1.8, 4.8], last_widths={256}, diverse=diverse,
                              rerank=lambda a: 0.0)
        assert tight.arch.blocks[-1].hidden == 128  # nothing 256 wide fits 1.8 ms: fall back
        assert loose.arch.blocks[-1].hidden == 256 and {c["describe"][-11:] for c in loose.ranked} == {"256:ffn,ffn"}
    assert search(pools, FRAME, ToyLatency(), [4.8])[0].arch.blocks[-1].hidden == 128  # no preference: the loss


def test_min_use_keeps_students_that_use_the_budget_where_any_fits():
    rng = random.Random(0)
    shapes = [lay + ("identity",) * (2 - n) for n in range(3) for lay in itertools.product(("mha", "ffn"), repeat=n)]
    pools = [[mixed(128, layers, round(1 + rng.random() + layers.count("mha"), 3)) for layers in shapes]
             for _ in range(2)]

    def ranked_ms(**kw):
        c = search(pools, FRAME, ToyLatency(), [5.0], top_t=3, rerank=lambda a: 0.0, diverse=True, **kw)[0]
        return [x["predicted_ms"] for x in c.ranked], c

    free, _ = ranked_ms()
    assert min(free) < 4.5  # the best of some attention count leaves budget unused
    used, c = ranked_ms(min_use=0.9)
    assert min(used) >= 4.5 and c.predicted_ms == pytest.approx(4.8)  # 4 ops: 0.8 ms fixed + 4 x 1 ms
    # nothing uses 90% of 1.3 ms (0.8 ms or 1.8 ms): fall back to what fits
    assert search(pools, FRAME, ToyLatency(), [1.3], min_use=0.9)[0].predicted_ms == pytest.approx(0.8)


def test_min_attention_keeps_students_with_attention_where_any_fits():
    # Attention scores worse in the block losses (as convolutions do not), so the plain best has none.
    pools = [[mixed(128, ("ffn", "ffn"), 1.0), mixed(128, ("mha", "identity"), 1.5), mixed(128, ID * 2, 3.0)],
             [mixed(128, ("ffn", "ffn"), 1.0), mixed(128, ("mha", "ffn"), 1.2), mixed(128, ID * 2, 3.0)]]
    (free,) = search(pools, FRAME, ToyLatency(), [5.0])
    assert free.arch.attention_layers == 0 and free.est_loss == pytest.approx(2.0)
    for diverse in (False, True):
        tight, loose = search(pools, FRAME, ToyLatency(), [1.9, 5.0], min_attention=1, diverse=diverse,
                              rerank=lambda a: 0.0, min_use=0.9)
        # 5 ms: [ffn,ffn | mha,ffn] (2.2) beats [mha | ffn,ffn] (2.5); the all-FFN student (2.0) is left out
        assert loose.arch.attention_layers == 1 and loose.est_loss == pytest.approx(2.2)
        assert all(c["attention"] >= 1 for c in loose.ranked)
        # 1.9 ms fits one op; of the one-op students only [mha | -] (4.5) has attention
        assert tight.arch.attention_layers == 1 and tight.est_loss == pytest.approx(4.5)
    # 1.0 ms fits identities only: nothing has attention, the preference gives way
    (empty,) = search(pools, FRAME, ToyLatency(), [1.0], min_attention=1)
    assert empty.arch.attention_layers == 0
    (two,) = search(pools, FRAME, ToyLatency(), [5.0], min_attention=2)
    assert two.arch.attention_layers == 2
