"""NAS-KD: the relaxed student, its expected latency, and a tiny search."""

import json

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable, Predictor
from pipeline.search.naskd import NasKdConfig, fastest_ms, latency_penalty
from pipeline.search.relaxed import LatencyTerms, RelaxedBlock, RelaxedStudent
from pipeline.space import Architecture, Block, Frame, load_architecture
from pipeline.train.supernet import SuperBlock

FRAME = Frame(128, 128, 1000, 64)  # the tiny teacher's (conftest.TINY): the tiny table's widths
WIDTHS = (64, 128)                  # for the mixture alone (no table)


def test_a_one_hot_mixture_computes_exactly_the_chosen_path():
    torch.manual_seed(0)
    supernet = SuperBlock(128, WIDTHS, 4).eval()
    relaxed = RelaxedBlock(128, WIDTHS, 4).eval()
    for path in relaxed.paths:
        path.load_supernet(supernet)
    x, mask = torch.randn(2, 10, 128), torch.ones(2, 10, dtype=torch.int64)
    mask[1, 7:] = 0
    for block in (Block(64, ("mha", "sepconv5", "identity", "identity")),
                  Block(128, ("ffn", "mha", "ffn", "sepconv3"))):
        supernet.set(block)
        relaxed.set_one_hot(block)
        with torch.no_grad():
            torch.testing.assert_close(relaxed(x, mask), supernet(x, mask))
        assert relaxed.discrete() == block


def test_a_uniform_mixture_mixes_every_op():
    relaxed = RelaxedBlock(128, WIDTHS, 4)
    ops, widths = relaxed.weights()
    assert torch.allclose(ops, torch.full_like(ops, 1 / 6)) and torch.allclose(widths, torch.full_like(widths, 0.5))


@pytest.fixture(scope="module")
def predictor(tiny_table):
    return Predictor(LatencyTable.load(tiny_table), 1, 16)


def test_expected_latency_is_the_predictors_on_one_hot_weights(predictor):
    widths = tuple(sorted({h for _, h in predictor_ops(predictor)}))
    student = RelaxedStudent(FRAME, widths, 4, 2)
    terms = LatencyTerms(predictor, FRAME, widths)
    h = widths[0]
    for blocks in [(Block(h, ("mha", "ffn", "identity", "identity")), Block(h, ("sepconv7", "identity",
                                                                               "identity", "identity"))),
                   (Block(h, ("mha", "ffn", "mha", "ffn")), Block(h, ("identity",) * 4))]:
        for block, b in zip(student.blocks, blocks, strict=True):
            block.set_one_hot(b)
        arch = Architecture(FRAME.teacher_hidden, FRAME.embed_dim, blocks, FRAME.vocab_size, FRAME.max_positions)
        assert float(terms.expected_ms(student).detach()) == pytest.approx(predictor(arch), rel=1e-9)


def predictor_ops(predictor):
    df = predictor.table.df
    return [(r["name"], int(r["d_in"])) for _, r in df[df["kind"] == "op"].iterrows()]


def test_expected_latency_has_the_gradients_of_its_values(predictor):
    # (not a sign: a tiny table measured on a noisy machine may calibrate to any slope)
    widths = tuple(sorted({h for _, h in predictor_ops(predictor)}))
    student = RelaxedStudent(FRAME, widths, 4, 2)
    terms = LatencyTerms(predictor, FRAME, widths)
    with torch.no_grad():
        torch.manual_seed(0)
        student.blocks[0].alpha.normal_()
    terms.expected_ms(student).backward()
    grad = float(student.blocks[0].alpha.grad[0, 1, -1])  # identity's weight in layer 2
    eps = 1e-2  # central difference: O(eps^2) error, far above float32 rounding
    with torch.no_grad():
        student.blocks[0].alpha[0, 1, -1] += eps
        up = float(terms.expected_ms(student))
        student.blocks[0].alpha[0, 1, -1] -= 2 * eps
        down = float(terms.expected_ms(student))
    assert grad == pytest.approx((up - down) / (2 * eps), rel=1e-2, abs=1e-9)  # float32 weights


def test_a_tiny_search_lowers_its_loss_and_fits_a_loose_budget(tiny_trained, predictor, tmp_path):
    from pipeline.search.job import run_nas_kd
    from pipeline.train.trained import TrainedSupernet

    train_dir = tiny_trained[0]
    t = TrainedSupernet(train_dir)
    # Loose: the penalty never binds, the loss alone moves the weights. Not a multiple of the "slowest"
    # student's prediction: a tiny table measured on a noisy machine may calibrate to any slope, so that
    # the widest, all-FFN student is predicted faster than the all-identity one (seen on CI).
    floor = fastest_ms(predictor, t.frame, t.hidden_sizes, t.num_blocks, t.layers_per_block)
    budget = max(1000.0, 10 * floor)  # ms; the tiny students run well under 1 ms
    logs = []
    cfg = NasKdConfig(steps=60, batch_size=4, lr=1e-3, widths="mixture")  # per width: its own test
    (rec,) = run_nas_kd(train_dir, predictor, "tiny-cpu", [budget], tmp_path, cfg=cfg, log=logs.append)
    arch = load_architecture(rec["arch_path"])
    assert rec["predicted_ms"] <= budget and predictor(arch) == pytest.approx(rec["predicted_ms"])
    assert rec["nas_kd"]["train_loss_last"] < rec["nas_kd"]["train_loss_first"]
    search = json.loads((tmp_path / "search.json").read_text())
    assert search["method"] == "nas-kd" and search["choices"][0]["arch_path"] == rec["arch_path"]
    from pipeline.export.job import targets_from_search

    (target,) = targets_from_search(tmp_path)  # export takes it unchanged
    assert target.arch == arch


def test_one_search_per_width_records_each_run_and_its_discrete_loss(tiny_trained, predictor, tmp_path):
    from pipeline.search.job import run_nas_kd
    from pipeline.train.trained import TrainedSupernet

    t = TrainedSupernet(tiny_trained[0])
    budget = max(1000.0, 10 * fastest_ms(predictor, t.frame, t.hidden_sizes, t.num_blocks, t.layers_per_block))
    logs = []
    (rec,) = run_nas_kd(tiny_trained[0], predictor, "tiny-cpu", [budget], tmp_path, log=logs.append,
                        cfg=NasKdConfig(steps=3, batch_size=2, widths="per-width"))
    runs = rec["nas_kd"]["per_width"]
    assert [r["widths"] for r in runs] == [[h] for h in t.hidden_sizes]  # every width fits a loose budget
    arch = load_architecture(rec["arch_path"])
    assert arch.describe() == min(runs, key=lambda r: r["readout_val_loss"])["describe"]
    assert {b.hidden for b in arch.blocks} == set(rec["nas_kd"]["widths"])
    assert rec["nas_kd"]["readout_val_loss"] > 0 and any("per width" in line for line in logs)


def test_the_per_width_search_of_least_discrete_loss_is_kept():
    from pipeline.search.naskd import best_of

    def run(h, loss, seconds):
        arch = Architecture(128, 128, (Block(h, ("ffn", "identity")),), 1000, 64)
        return {"widths": [h], "arch": arch, "predicted_ms": 1.0, "readout_val_loss": loss, "val_loss_last": loss,
                "seconds": seconds}

    best = best_of([run(64, 0.5, 10.0), run(128, 0.3, 20.0), run(256, 0.4, 30.0)], log=lambda _: None)
    assert best["widths"] == [128] and best["arch"].blocks[0].hidden == 128
    assert best["seconds"] == 60.0 and [r["widths"] for r in best["per_width"]] == [[64], [128], [256]]


def test_the_readout_loss_is_the_discrete_students_and_leaves_the_weights_alone(tiny_trained):
    from pipeline.search.naskd import naskd_loss, readout_loss
    from pipeline.train.trained import TrainedSupernet

    t = TrainedSupernet(tiny_trained[0])
    torch.manual_seed(0)
    student = RelaxedStudent(t.frame, t.hidden_sizes, t.layers_per_block, t.num_blocks).eval()
    with torch.no_grad():
        for b in student.blocks:
            b.alpha.normal_()
    before = [b.alpha.detach().clone() for b in student.blocks]
    h = t.hidden_sizes[0]
    blocks = tuple(Block(h, ("ffn",) + ("identity",) * (t.layers_per_block - 1)) for _ in range(t.num_blocks))
    arch = Architecture(t.frame.teacher_hidden, t.frame.embed_dim, blocks, t.frame.vocab_size, t.frame.max_positions)
    x = torch.randn(5, 8, t.frame.teacher_hidden)
    ys = [torch.randn(5, 8, t.frame.teacher_hidden) for _ in blocks]
    cfg = NasKdConfig(batch_size=2)  # 5 rows: batches of 2, 2 and 1, weighted by their rows
    got = readout_loss(student, arch, (x, ys), cfg)
    assert all(torch.equal(a, b.alpha) for a, b in zip(before, student.blocks, strict=True))
    for block, b in zip(student.blocks, blocks, strict=True):
        block.set_one_hot(b)
    with torch.no_grad():  # the loss's relative MSE is per batch: a row-weighted mean of the batches'
        parts = [(len(r), float(naskd_loss(student(x[r], torch.ones(len(r), 8, dtype=torch.int64)),
                                           [y[r] for y in ys], cfg.beta))) for r in (range(0, 2), range(2, 4),
                                                                                     range(4, 5))]
    assert got == pytest.approx(sum(n * v for n, v in parts) / 5, rel=1e-5)


def test_a_budget_below_the_fastest_student_is_a_one_line_error(tiny_trained, predictor, tmp_path):
    from pipeline.search.job import run_nas_kd
    from pipeline.train.trained import TrainedSupernet

    t = TrainedSupernet(tiny_trained[0])
    floor = fastest_ms(predictor, t.frame, t.hidden_sizes, t.num_blocks, t.layers_per_block)
    with pytest.raises(PipelineError, match="below the fastest student"):
        run_nas_kd(tiny_trained[0], predictor, "tiny-cpu", [floor - max(abs(floor), 1e-3) / 2], tmp_path,
                   cfg=NasKdConfig(steps=2))


def test_the_absolute_penalty_pulls_the_expected_latency_to_the_budget_from_both_sides():
    for ms, absolute, hinge in [(5.0, 0.5, 0.0), (15.0, 0.5, 0.5), (10.0, 0.0, 0.0)]:
        grads = {}
        for kind, want in (("absolute", absolute), ("hinge", hinge)):
            e = torch.tensor(ms, requires_grad=True)
            value = latency_penalty(e, 10.0, kind)
            assert float(value.detach()) == pytest.approx(want)
            value.backward()
            grads[kind] = float(e.grad)
        if ms < 10:  # under budget: only the absolute term asks for more latency (gradient descent raises E)
            assert grads["absolute"] == pytest.approx(-0.1) and grads["hinge"] == 0.0
        elif ms > 10:
            assert grads["absolute"] == pytest.approx(0.1) == grads["hinge"]


def test_a_bad_nas_kd_setting_is_a_one_line_error():
    with pytest.raises(PipelineError, match="penalty must be one of"):
        NasKdConfig(penalty="square")
    with pytest.raises(PipelineError, match="at least one step"):
        NasKdConfig(steps=0)
    with pytest.raises(PipelineError, match="widths must be one of"):
        NasKdConfig(widths="each")


def test_a_sampled_student_has_the_predictors_latency_and_the_softmaxs_gradient(predictor):
    from pipeline.search.relaxed import sampled_weights

    widths = tuple(sorted({h for _, h in predictor_ops(predictor)}))
    student = RelaxedStudent(FRAME, widths, 4, 2)
    terms = LatencyTerms(predictor, FRAME, widths)
    h = widths[0]
    blocks = (Block(h, ("mha", "ffn", "identity", "identity")), Block(h, ("sepconv7",) + ("identity",) * 3))
    for block, b in zip(student.blocks, blocks, strict=True):
        block.set_one_hot(b)  # logits of 0 and -1e4: every draw is this student
    arch = Architecture(FRAME.teacher_hidden, FRAME.embed_dim, blocks, FRAME.vocab_size, FRAME.max_positions)
    ms = terms.expected_ms(student, weights=sampled_weights(student))
    assert float(ms.detach()) == pytest.approx(predictor(arch), rel=1e-9)
    torch.manual_seed(0)
    fresh = RelaxedStudent(FRAME, widths, 4, 2)
    weights = sampled_weights(fresh)
    for ops, b in weights:  # one-hot draws (straight-through: exact up to float rounding)
        for w in (ops, b):
            assert torch.allclose(w.detach(), w.detach().round(), atol=1e-6) and torch.allclose(
                w.detach().sum(-1), torch.ones(w.shape[:-1]))
    terms.expected_ms(fresh, weights=weights).backward()
    assert fresh.blocks[0].alpha.grad is not None and bool(fresh.blocks[0].alpha.grad.abs().sum() > 0)
    with pytest.raises(PipelineError, match="latency must be one of"):
        NasKdConfig(latency="median")


def test_the_search_command_passes_its_nas_kd_settings(tiny_trained, tiny_table, tiny_profile_path, tmp_path,
                                                      capsys, monkeypatch):
    import pipeline.search.job as job
    from pipeline.cli import main

    seen = []

    def fake(train_dir, predictor, device, budgets, out, margin=0.0, cfg=None, progress=False, log=print):
        seen.append(cfg)
        return []

    monkeypatch.setattr(job, "run_nas_kd", fake)
    common = ["search", "--method", "nas-kd", "--profile", str(tiny_profile_path), "--table", str(tiny_table),
              "--train-dir", str(tiny_trained[0]), "--out", str(tmp_path), "--budget", "1s", "--quiet"]
    assert main([*common, "--naskd-steps", "7", "--naskd-widths", "mixture"]) == 0
    assert main(common) == 0
    assert (seen[0].steps, seen[0].widths) == (7, "mixture")
    assert seen[1] == NasKdConfig()
    assert main([*common, "--naskd-steps", "0"]) == 1
    assert "at least one step" in capsys.readouterr().err
