"""The search stage on the tiny trained supernet: chained students, the command, its artifacts."""

import json
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable, Predictor
from pipeline.search.job import SEARCH, run_search
from pipeline.space import load_architecture
from pipeline.train.trained import TrainedSupernet


def test_chain_is_the_blocks_in_sequence(tiny_trained):
    out, summary, _ = tiny_trained
    trained = TrainedSupernet(out)
    assert [len(p) for p in trained.pools] == [10, 10]
    from pipeline.space import Architecture, Block

    picked = (trained.pools[0][0], trained.pools[1][-1])
    arch = Architecture(128, trained.frame.embed_dim, tuple(Block(e["hidden"], tuple(e["layers"])) for e in picked),
                        trained.frame.vocab_size, trained.frame.max_positions)
    x = torch.randn(2, 16, 128)
    mask = torch.ones(2, 16, dtype=torch.int64)
    with torch.no_grad():
        expected = x
        for n, block in enumerate(arch.blocks, 1):
            sb = trained.supernet_block(n)
            sb.set(block)
            expected = sb(expected, mask)
        torch.testing.assert_close(trained.chain(arch)(x, mask), expected, rtol=1e-5, atol=1e-5)


def test_search_writes_one_architecture_per_budget(tiny_trained, tiny_table, tmp_path):
    out, _, _ = tiny_trained
    p = Predictor(LatencyTable.load(tiny_table), 1, 16)
    trained = TrainedSupernet(out)
    from pipeline.search.exact import search

    fastest = min(c.predicted_ms for c in search(trained.pools, trained.frame, p, [1e9]))
    slowest_best = search(trained.pools, trained.frame, p, [1e9])[0].predicted_ms
    budgets = sorted({fastest * 1.001, (fastest + slowest_best) / 2, slowest_best * 1.5})
    choices = run_search(out, p, "tiny-cpu", budgets, tmp_path, top_t=3, log=lambda *_: None)
    record = json.loads((tmp_path / SEARCH).read_text())
    assert record["budgets_ms"] == budgets and len(record["choices"]) == len(budgets)
    # the tiny space has one width, as wide as the teacher: its read-out reaches the teacher exactly
    assert record["readout_caps"] == {"128": pytest.approx(1.0)} and record["preferred_last_widths"] == [128]
    # every budget but the tightest fits a student with attention: the default keeps one
    assert record["min_attention"] == 1 and all(c.arch.attention_layers >= 1 for c in choices[1:])
    for c, r in zip(choices, record["choices"], strict=True):
        assert c.predicted_ms <= c.budget_ms and c.true_loss is not None and c.candidates_ranked <= 3
        assert load_architecture(r["arch_path"]) == c.arch
        assert c.predicted_ms == pytest.approx(p(c.arch))
    # a larger budget never gives a worse estimated student
    losses = [c.est_loss for c in search(trained.pools, trained.frame, p, budgets)]
    assert losses == sorted(losses, reverse=True)
    # a margin leaves room under each budget, and the choice still carries the user's budget
    roomy = [slowest_best * 1.5]
    (c,) = run_search(out, p, "tiny-cpu", roomy, tmp_path / "m", top_t=1, rerank="none", margin=0.2,
                      log=lambda *_: None)
    assert c.budget_ms == roomy[0] and c.predicted_ms <= 0.8 * roomy[0]
    assert json.loads((tmp_path / "m" / SEARCH).read_text())["searched_under_ms"] == [0.8 * roomy[0]]


def test_search_command_errors(tiny_trained, tiny_table, tiny_profile_path, tmp_path, capsys):
    out, _, _ = tiny_trained
    common = ["search", "--profile", str(tiny_profile_path), "--table", str(tiny_table), "--train-dir", str(out),
              "--out", str(tmp_path / "s"), "--rerank", "none"]
    for bad in ("fast", "10", "-3ms", "0ms"):
        assert main([*common, "--budget", bad]) == 1
        assert "5ms, 500us or 0.01s" in capsys.readouterr().err
    assert main([*common, "--budget", "1us"]) == 1
    assert "meets 1us: the fastest is predicted at" in capsys.readouterr().err
    assert main([*common, "--budget", "1s", "--min-readout", "1.5"]) == 1
    assert "--min-readout must be a cosine in [0, 1], got 1.5" in capsys.readouterr().err
    assert main([*common, "--budget", "1s", "--min-attention", "-1"]) == 1
    assert "--min-attention must be 0 or more, got -1" in capsys.readouterr().err
    assert main([*common, "--budget", "1s"]) == 0
    assert "budget 1000 ms: predicted" in capsys.readouterr().out
    assert main(["search", "--budget", "1s", "--train-dir", str(tmp_path / "none"), "--device", "cpu"]) == 1
    assert "run `train` first" in capsys.readouterr().err


def test_finetune_reranker_keeps_the_closest_to_the_teacher(tiny_trained, tiny_table, tmp_path):
    out, _, _ = tiny_trained
    p = Predictor(LatencyTable.load(tiny_table), 1, 16)
    logs: list[str] = []
    (c,) = run_search(out, p, "tiny-cpu", [1e9], tmp_path, top_t=3, rerank="finetune", rerank_steps=3,
                      log=logs.append)
    record = json.loads((tmp_path / SEARCH).read_text())
    assert record["rerank"] == "finetune" and record["rerank_steps"] == 3
    (choice,) = record["choices"]
    scores = {x["describe"]: x["score"] for x in choice["candidates"]}
    assert len(scores) == c.candidates_ranked > 1  # distinct attention counts
    assert len({x["attention"] for x in choice["candidates"]}) == len(scores)
    assert c.true_loss == min(scores.values()) == scores[c.arch.describe()]
    assert sum("re-rank candidate" in line for line in logs) == len(scores)
    from pipeline.export.job import targets_from_search

    (target,) = targets_from_search(tmp_path)  # what export.json will say of the search
    assert target.arch == c.arch and target.search["true_loss"] == c.true_loss
    assert target.search["est_loss"] == c.est_loss
    # the score is 1 - the validation cosine of the student export would build with those steps
    from pipeline.search.job import finetune_fidelity_fn
    from pipeline.train.trained import TrainedSupernet

    again = finetune_fidelity_fn(TrainedSupernet(out), 3, log=lambda *_: None)(c.arch)
    assert again == pytest.approx(c.true_loss, abs=1e-6) and 0 < again < 1
    for kwargs, needle in (({"rerank": "best"}, "unknown re-ranker 'best'"),
                           ({"rerank_steps": 0}, "--rerank-steps must be at least 1")):
        with pytest.raises(PipelineError, match=needle):
            run_search(out, p, "tiny-cpu", [1e9], tmp_path / "bad", **kwargs)


def test_search_takes_a_speedup_over_the_teacher_timed_on_the_device(tiny_trained, tiny_table, tiny_profile_path,
                                                                      tmp_path, capsys):
    """`--budget 0.5x`: twice the tiny teacher's measured latency (so that the tiny pools fit it)."""
    import json

    from pipeline.cli import main

    argv = ["search", "--profile", str(tiny_profile_path), "--table", str(tiny_table), "--train-dir",
            str(tiny_trained[0]), "--out", str(tmp_path), "--budget", "0.5x", "--rerank", "none", "--quiet"]
    assert main(argv) == 0
    timed = json.loads((tmp_path / "teacher_latency.json").read_text())
    (budget,) = json.loads((tmp_path / "search.json").read_text())["budgets_ms"]
    assert budget == pytest.approx(2 * timed["latency_ms"], rel=1e-3)
    assert "the teacher runs" in capsys.readouterr().err
    assert main(argv) == 0  # the kept measurement: the same budget again
    assert json.loads((tmp_path / "search.json").read_text())["budgets_ms"] == [budget]


def test_a_search_killed_while_writing_leaves_no_record_to_reuse(tiny_trained, tiny_table, tmp_path, monkeypatch):
    """An older search.json beside a newer search's architecture files was reused as if it described them."""
    import pipeline.search.job as job
    from pipeline.artifacts import reusable
    from pipeline.search.job import search_key

    out, _, _ = tiny_trained
    p = Predictor(LatencyTable.load(tiny_table), 1, 16)
    run_search(out, p, "tiny-cpu", [1e9], tmp_path, top_t=1, rerank="none", log=lambda *_: None)
    key = search_key(out, p, [1e9], None, 1, "none", 150, 0.0, 0, job.MIN_READOUT, job.MIN_ATTENTION)
    assert reusable(tmp_path / SEARCH, key) is not None

    def killed(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "save_architecture", killed)
    with pytest.raises(KeyboardInterrupt):
        run_search(out, p, "tiny-cpu", [2e9], tmp_path, top_t=1, rerank="none", log=lambda *_: None)
    assert reusable(tmp_path / SEARCH, key) is None


def test_search_records_absolute_paths(tiny_trained, tiny_table, tmp_path, monkeypatch):
    """search.json written from one folder named files relative to it: export from another could not find them."""
    out, _, _ = tiny_trained
    p = Predictor(LatencyTable.load(tiny_table), 1, 16)
    monkeypatch.chdir(tmp_path)
    run_search(out, p, "tiny-cpu", [1e9], "s", top_t=1, rerank="none", log=lambda *_: None)
    record = json.loads((tmp_path / "s" / SEARCH).read_text())
    assert Path(record["choices"][0]["arch_path"]).parent == tmp_path / "s"
    monkeypatch.chdir("/")
    from pipeline.export.job import targets_from_search

    assert len(targets_from_search(tmp_path / "s")) == 1
