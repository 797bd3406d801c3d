"""Training on a tiny 4-layer teacher (hidden 128, the real MiniLM tokenizer) and ~4k tokens of English."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import TINY_TRAIN as CFG
from conftest import tiny_train as train

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable, Predictor
from pipeline.space import Block
from pipeline.train.blockwise import block_params, lr_at, table_predictor
from pipeline.train.shrinking import make_bins
from pipeline.train.trained import SUMMARY


@pytest.fixture(scope="module")
def trained(tiny_trained):
    return tiny_trained


def test_summary_fields(trained):
    out, summary, _ = trained
    assert json.loads((out / SUMMARY).read_text()) == {k: v for k, v in summary.items() if k != "trained_now"}
    assert summary["missing_blocks"] == [] and len(summary["blocks"]) == 2
    assert summary["bins_by"] == "latency on tiny-cpu and parameters"
    for b in summary["blocks"]:
        for key in ("val_loss_untrained", "val_loss_trained", "pool", "kendall_tau"):
            assert key in b
        assert -1.0 <= b["kendall_tau"] <= 1.0 and len(b["tau_paths"]) == 10
        assert (out / f"block_{b['block']}" / "supernet.pt").is_file()
        assert b["init"] == {"from": "teacher", "attention": "exact"}  # the tiny teacher's heads are 64 wide
    assert any("started from the teacher's layers 1-2 (attention exact)" in line for line in trained[2])


def test_loss_falls_in_every_block(trained):
    for b in trained[1]["blocks"]:
        assert b["val_loss_trained"] < 0.8 * b["val_loss_untrained"], b["block"]
        assert b["history"][-1]["train_loss"] < b["history"][0]["train_loss"]


def test_shrinking_keeps_exactly_m_per_bin(trained, tiny_table):
    predictor = Predictor(LatencyTable.load(tiny_table), 1, CFG.seq_len)
    for b in trained[1]["blocks"]:
        per_bin = [sum(e["bin"] == i for e in b["pool"]) for i in range(CFG.bins)]
        assert per_bin == [CFG.keep_per_bin] * CFG.bins
        assert b["shrink"][-1]["alive"] == CFG.bins * CFG.keep_per_bin
        for e in b["pool"]:
            assert e["params"] > 0 or e["layers"] == ["identity"] * 4
            assert set(e["latency_ms"]) == {"tiny-cpu"} and e["val_loss"] > 0
        # the latency is the target table's prediction for the block's ops (the tiny table's op rows are
        # microseconds of noise, so their order says nothing; test_shrinking checks the binning itself)
        for e in b["pool"]:
            expected = predictor.block_ms(Block(e["hidden"], tuple(e["layers"])))
            assert e["latency_ms"]["tiny-cpu"] == pytest.approx(expected, abs=1e-6)


def test_finished_blocks_are_reused(trained, tiny_teacher_tok, tiny_corpus, tiny_table):
    out, summary, _ = trained
    again, logs = train(out, tiny_teacher_tok, tiny_corpus, tiny_table)
    assert sum("reused" in line for line in logs) == 2
    assert again["blocks"] == summary["blocks"]
    assert again["trained_now"] == [] and summary["trained_now"] == [1, 2]


def test_interrupted_training_resumes_to_the_same_result(trained, tmp_path, tiny_teacher_tok, tiny_corpus,
                                                         tiny_table, monkeypatch):
    import pipeline.train.blockwise as train_mod

    original = train_mod.train_block

    def interrupted(*args, **kw):
        def stop(step):
            if step == 7:  # after the checkpoint at step 4, mid-epoch
                raise KeyboardInterrupt
        return original(*args, **kw, on_step=stop)

    monkeypatch.setattr("pipeline.train.job.train_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, blocks=[1])
    ckpt = torch.load(tmp_path / "block_1" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 4
    monkeypatch.setattr("pipeline.train.job.train_block", original)
    summary, _ = train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, blocks=[1])
    assert summary["missing_blocks"] == [2]
    resumed, full = summary["blocks"][0], trained[1]["blocks"][0]
    assert resumed["steps"] == full["steps"]
    assert [(e["hidden"], e["layers"]) for e in resumed["pool"]] == [(e["hidden"], e["layers"]) for e in full["pool"]]
    for a, b in zip(resumed["pool"], full["pool"], strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_checkpoint_problems_are_one_line_errors(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table):
    (tmp_path / "block_1").mkdir()
    (tmp_path / "block_1" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match="corrupt"):
        train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, blocks=[1])
    (tmp_path / "block_1" / "checkpoint.pt").unlink()
    cfg = replace(CFG, epochs=1, warmup_epochs=0)

    def stop(*args, **kw):
        raise KeyboardInterrupt

    import pipeline.train.blockwise as train_mod

    original = train_mod._finish
    train_mod._finish = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, cfg=cfg, blocks=[1])
    finally:
        train_mod._finish = original
    with pytest.raises(PipelineError, match="other settings"):
        train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, cfg=replace(cfg, lr=1e-4), blocks=[1])


def test_an_epoch_is_at_most_epoch_steps(trained, tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table):
    full = trained[1]["blocks"][0]["steps"] // CFG.epochs  # a whole pass over the tiny corpus
    assert full > 2
    summary, _ = train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, cfg=replace(CFG, epoch_steps=2),
                       blocks=[1])
    assert summary["blocks"][0]["steps"] == 2 * CFG.epochs


def test_a_large_corpus_trains_on_a_sample_that_fits_in_memory(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table,
                                                                monkeypatch):
    # room for the states of 6 chunks (seq 16, hidden 128, block 1's two boundaries: layers 0 and 2)
    monkeypatch.setattr("pipeline.model.teacher.STATES_BUDGET_BYTES", 6 * 16 * 128 * 4 * 2)
    summary, logs = train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, blocks=[1])
    assert any("training on a random 6 of the" in line for line in logs)
    assert summary["blocks"][0]["steps"] == CFG.epochs  # one (short) batch per epoch


def test_sandwich_steps_also_train_a_path_of_the_dearest_bin(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table,
                                                              tiny_space, monkeypatch):
    from pipeline.train.supernet import SuperBlock

    drawn = []
    original = SuperBlock.sample

    def record(self, rng, candidates=None):
        block = original(self, rng, candidates)
        drawn.append((block, candidates))
        return block

    monkeypatch.setattr(SuperBlock, "sample", record)
    cfg = replace(CFG, sandwich_every=2)
    summary, _ = train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, cfg=cfg, blocks=[1])
    steps = summary["blocks"][0]["steps"]
    assert len(drawn) == steps + (steps + 1) // 2  # steps 0, 2, 4, ... draw twice
    extra, i = [], 0
    for step in range(steps):
        i += 1
        if step % 2 == 0:
            extra.append(drawn[i])
            i += 1
    first = {(b.hidden, b.layers) for b in extra[0][1]}
    assert all({(b.hidden, b.layers) for b in pool} <= first for _, pool in extra)  # bins only ever shrink
    assert all(b in pool for b, pool in extra)
    everything = drawn[0][1]  # the first regular draw is from all candidates
    latency = table_predictor(tiny_space, tiny_table, CFG.seq_len)
    bins = make_bins([block_params(b) for b in everything], [latency.block_ms(b) for b in everything], CFG.bins)
    assert first == {(everything[j].hidden, everything[j].layers) for j in bins[-1]}  # the dearest bin
    with pytest.raises(PipelineError, match="sandwich-every"):
        replace(CFG, sandwich_every=-1).check()


def test_a_random_start_is_asked_for_and_recorded(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table):
    cfg = replace(CFG, epochs=1, warmup_epochs=0, epoch_steps=1, init="random")
    summary, logs = train(tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table, cfg=cfg, blocks=[1])
    assert summary["blocks"][0]["init"] == {"from": "random"}
    assert not any("started" in line for line in logs)
    with pytest.raises(PipelineError, match="init must be one of teacher, random"):
        replace(CFG, init="zeros")


def test_config_checks():
    with pytest.raises(PipelineError, match="tau-paths"):
        replace(CFG, tau_paths=5).check()
    with pytest.raises(PipelineError, match="bins x keep"):
        replace(CFG, bins=2, keep_per_bin=2).check()
    with pytest.raises(PipelineError, match="epoch-steps"):
        replace(CFG, epoch_steps=0).check()
    with pytest.raises(PipelineError, match="warmup-epochs"):
        replace(CFG, warmup_epochs=9).check()
    assert lr_at(0, 100, CFG) < lr_at(5, 100, CFG) == pytest.approx(CFG.lr)
    assert lr_at(100, 100, CFG) == pytest.approx(0.1 * CFG.lr)


def test_cli_errors(tmp_path, capsys, tiny_corpus):
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert main(["train", "--teacher", str(tmp_path / "gpt"), "--out", str(tmp_path / "o")]) == 1
    assert "not a BERT" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert main(["train", "--corpus", str(empty), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "is empty" in err and "Traceback" not in err
    assert main(["train", "--block", "9", "--out", str(tmp_path / "o")]) == 1
    assert "out of range" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--device", "gpu", "--out", str(tmp_path / "o")]) == 1
        assert "needs a CUDA GPU" in capsys.readouterr().err
    assert main(["train", "--seq-len", "1024", "--out", str(tmp_path / "o")]) == 1
    assert "longer than the teacher's 512 positions" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_shares_blocks_between_processes(tmp_path, tiny_teacher_tok, tiny_corpus):
    """Two CPU processes under torchrun (gloo): each trains one block, rank 0 writes the summary."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pipeline", "train", "--teacher", str(tiny_teacher_tok), "--corpus", str(tiny_corpus),
           "--quick", "--epochs", "2", "--seq-len", "32", "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # PIPELINE_TABLES (conftest) holds no table: bins by parameters
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0 of 2: blocks [1]" in done.stderr and "rank 1 of 2: blocks [2]" in done.stderr
    summary = json.loads((out / SUMMARY).read_text())
    assert [b["block"] for b in summary["blocks"]] == [1, 2] and summary["processes"] == 2
