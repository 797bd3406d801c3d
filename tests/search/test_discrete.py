"""Reading the discrete student out of a relaxed one: the probable readout, the argmax one, and entropy."""

import math

import pytest
import torch

from pipeline.latency import Calibration, LatencyTable, Predictor
from pipeline.search.discrete import (
    THIN,
    argmax_architecture,
    block_pool,
    drop_to_fit,
    entropy,
    log_probability,
    probable_architecture,
)
from pipeline.search.naskd import NasKdConfig, fastest_ms, nas_kd_search
from pipeline.search.relaxed import CHOICES, LatencyTerms, RelaxedBlock, RelaxedStudent
from pipeline.space import Architecture, Block
from pipeline.train.supernet import REAL_OPS


@pytest.fixture(scope="module")
def predictor(tiny_table):
    p = Predictor(LatencyTable.load(tiny_table), 1, 16)
    # The table's own sums, uncalibrated: every op costs its measured time. A tiny table measured on a
    # busy machine may calibrate to any slope (attention predicted as cheap as nothing, seen).
    p.calibration = Calibration()
    return p


@pytest.fixture(scope="module")
def trained(tiny_trained):
    from pipeline.train.trained import TrainedSupernet

    return TrainedSupernet(tiny_trained[0])


def student_of(trained, blocks=None, seed=0) -> RelaxedStudent:
    torch.manual_seed(seed)
    s = RelaxedStudent(trained.frame, trained.hidden_sizes, trained.layers_per_block, trained.num_blocks)
    with torch.no_grad():
        for b in s.blocks:
            b.alpha.normal_(0, 0.3)
            b.beta.normal_(0, 0.3)
    for relaxed, block in zip(s.blocks, blocks or (), strict=False):
        relaxed.set_one_hot(block)
    return s


def arch_of(trained, blocks) -> Architecture:
    f = trained.frame
    return Architecture(f.teacher_hidden, f.embed_dim, tuple(blocks), f.vocab_size, f.max_positions)


def heavy_and_budget(trained, predictor) -> tuple[list[Block], float]:
    """The narrowest student whose every layer is the op predicted slowest, and a budget halfway between
    it and the fastest student (which op is slowest is the table's call: it is measured per test session)."""
    h, n, layers = min(trained.hidden_sizes), trained.num_blocks, trained.layers_per_block
    heavy = max(([Block(h, (op,) * layers)] * n for op in REAL_OPS), key=lambda b: predictor(arch_of(trained, b)))
    floor = fastest_ms(predictor, trained.frame, trained.hidden_sizes, n, layers)
    top = predictor(arch_of(trained, heavy))
    if top <= floor * 1.05:  # a table so noisy that no op costs: nothing to fit
        pytest.skip(f"this session's tiny table predicts {top:.4f} ms for the slowest op, {floor:.4f} ms for none")
    return heavy, (floor + top) / 2


def test_the_pool_holds_every_block_once_with_its_probability():
    block = RelaxedBlock(32, (16, 32), 3)
    pool = block_pool(block)
    distinct = sum(len(REAL_OPS) ** k for k in range(4))  # real ops first, identities last: 1 + 5 + 25 + 125
    assert len(pool) == 2 * distinct
    assert len({(e["hidden"], tuple(e["layers"])) for e in pool}) == len(pool)
    # uniform weights: every spelling has probability 1/2 x 6^-3; a block is its most probable spelling
    assert all(e["val_loss"] == pytest.approx(math.log(2) + 3 * math.log(len(CHOICES))) for e in pool)
    chosen = Block(32, ("mha", "sepconv3", "identity"))
    block.set_one_hot(chosen)
    best = min(block_pool(block), key=lambda e: e["val_loss"])
    assert (best["hidden"], tuple(best["layers"])) == (chosen.hidden, chosen.layers)
    assert best["val_loss"] == pytest.approx(0.0, abs=1e-6)


def test_entropy_is_one_uniform_and_zero_one_hot(trained):
    s = student_of(trained)
    with torch.no_grad():
        for b in s.blocks:
            b.alpha.zero_()
            b.beta.zero_()
    one_width = len(trained.hidden_sizes) == 1  # then nothing to choose: 0
    assert entropy(s)["ops"] == pytest.approx(1.0) and entropy(s)["widths"] == pytest.approx(0.0 if one_width else 1.0)
    h = trained.hidden_sizes[0]
    s = student_of(trained, [Block(h, ("mha",) * trained.layers_per_block)] * trained.num_blocks)
    assert entropy(s)["ops"] == pytest.approx(0.0, abs=1e-6) and entropy(s)["widths"] == pytest.approx(0, abs=1e-6)


def test_the_probable_readout_is_the_argmax_when_the_argmax_fits(trained, predictor):
    s = student_of(trained, seed=1)
    argmax = argmax_architecture(s)
    # a budget no student misses (a noisy tiny table may calibrate to any slope: see test_naskd)
    loose = max(1000.0, 10 * abs(predictor(argmax)))
    assert probable_architecture(s, predictor, loose, min_use=0.0) == argmax


def test_the_probable_readout_fits_a_tight_budget_and_beats_dropping_ops(trained, predictor):
    heavy, budget = heavy_and_budget(trained, predictor)
    s = student_of(trained, heavy)
    arch = probable_architecture(s, predictor, budget, min_use=0.0)
    assert predictor(arch) <= budget
    dropped, n = drop_to_fit(argmax_architecture(s), s, predictor, budget)
    assert n > 0 and predictor(dropped) <= budget
    # the most probable student within the budget: at least as probable as any other that fits
    assert log_probability(s, arch) >= log_probability(s, dropped) - 1e-9


def test_the_argmax_readout_anneals_then_drops_ops_and_never_misses(trained, predictor):
    heavy, budget = heavy_and_budget(trained, predictor)
    t, n = trained.frame.teacher_hidden, trained.num_blocks
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(8, 16, t, generator=g), [torch.randn(8, 16, t, generator=g) for _ in range(n)])
    terms = LatencyTerms(predictor, trained.frame, trained.hidden_sizes)
    for readout in ("argmax", "probable"):
        s = student_of(trained, heavy)  # one-hot logits of +-1e4: a few steps at 3e-3 cannot move them
        cfg = NasKdConfig(steps=1, batch_size=2, anneals=2, anneal_steps=1, readout=readout)
        logs = []
        found = nas_kd_search(s, terms, predictor, budget, data, data, cfg, log=logs.append)
        assert found["predicted_ms"] <= budget and found["argmax_ms"] > budget
        assert found["readout"] == readout and found["argmax"] == arch_of(trained, heavy).describe()
        if readout == "argmax":
            assert found["anneals"] == 2 and found["dropped_ops"] > 0
            assert any("re-searching" in line for line in logs) and any("dropped" in line for line in logs)
        else:
            assert found["anneals"] == 0 and found["dropped_ops"] == 0
            assert any("probable readout" in line for line in logs)


def test_the_probable_readout_uses_the_budget_when_the_mode_is_the_empty_student(trained, predictor):
    # Under budget pressure every layer leans toward identity: the most probable student is the empty
    # one, which is also the cheapest and would prune every other block out of an exact search's pools.
    from pipeline.search.exact import search

    s = student_of(trained)
    with torch.no_grad():
        for b in s.blocks:
            b.alpha[..., -1] += 2.0
    assert all(op == "identity" for b in argmax_architecture(s).blocks for op in b.layers)
    _, budget = heavy_and_budget(trained, predictor)
    arch = probable_architecture(s, predictor, budget, min_use=0.9)
    # is any student of the space within [0.9, 1] x budget? (every block a candidate, equal losses)
    pools = [[{**e, "val_loss": 0.0} for e in block_pool(b)] for b in s.blocks]
    (any_use,) = search(pools, trained.frame, predictor, [budget], top_t=1, min_use=0.9, prune=False)
    assert predictor(arch) <= budget
    if any_use.predicted_ms >= 0.9 * budget:
        assert predictor(arch) >= 0.9 * budget - THIN * budget * trained.num_blocks
