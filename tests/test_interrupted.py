"""Fault injection: each stage is killed with SIGKILL (no `finally`, no handler runs) at seeded random
points of a tiny run, then run again to the end. The result must equal an uninterrupted run's, never a
mix of two runs, and nothing half-written may be left to be trusted.

This file is also the driver the test runs in a child process: `python test_interrupted.py STAGE OUT ARGS`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SEEDS = (0, 1)


def drive(stage: str, out: Path, args: dict) -> None:
    """One stage of the tiny pipeline, as the session fixtures run it, into `out`."""
    sys.path.insert(0, str(HERE))
    from conftest import TINY, TINY_TRAIN, tiny_train

    from pipeline.config import load_profile
    from pipeline.devices import get_backend
    from pipeline.latency import LatencyTable, Predictor
    from pipeline.space import SearchSpace

    space = SearchSpace.from_teacher(TINY["hidden_size"], TINY["num_hidden_layers"], TINY["vocab_size"],
                                     TINY["max_position_embeddings"])
    backend = get_backend(load_profile(args["profile"]))
    print("started", flush=True)  # what the kill's delay counts from: imports are not the stage
    if stage == "profile":
        from pipeline.profile.job import run_profile

        run_profile(backend, space, out / "table.csv", progress=False, log=lambda _: None)
    elif stage == "train":  # half the fixture's epochs: checkpoints and resumes all the same, in half the time
        cfg = replace(TINY_TRAIN, epochs=2, warmup_epochs=1, checkpoint_every=8)
        tiny_train(out, args["teacher"], args["corpus"], Path(args["table"]), cfg=cfg)
    elif stage == "search":
        from pipeline.search.job import run_search

        predictor = Predictor(LatencyTable.load(args["table"]), 1, 16)
        run_search(Path(args["train"]), predictor, "tiny-cpu", args["budgets"], out, top_t=2, rerank_steps=5,
                   log=lambda *_: None)
    elif stage == "export":
        from pipeline.export.job import ExportConfig, Target, run_export
        from pipeline.finetune.distill import DistillConfig
        from pipeline.space import architecture_from_dict

        targets = [Target(name, architecture_from_dict(a, where=name)) for name, a in args["archs"].items()]
        cfg = ExportConfig(finetune=DistillConfig(steps=args["steps"], batch_size=4), embed_steps=20)
        run_export(Path(args["train"]), targets, out, backend, cfg, log=lambda _: None)


def run_stage(stage: str, out: Path, args: dict, kill_after: float | None = None) -> float:
    """Run the stage in a child process; SIGKILL it `kill_after` seconds after it started its work (None:
    let it finish, which it must). Returns the seconds of work."""
    cmd = [sys.executable, __file__, stage, str(out), json.dumps(args)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "started", child.communicate()[1][-2000:]
    start = time.perf_counter()
    if kill_after is None:
        _, err = child.communicate()
        assert child.returncode == 0, err[-2000:]
    else:
        try:
            child.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.communicate()
    return time.perf_counter() - start


def killed_then_rerun(stage: str, out: Path, args: dict, seconds: float, seed: int) -> None:
    run_stage(stage, out, args, kill_after=random.Random(seed).uniform(0.05, 0.95) * seconds)
    run_stage(stage, out, args)


def no_temp_left(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def common(tiny_profile_path, tiny_teacher_tok, tiny_corpus, tiny_table, tiny_trained):
    return {"profile": str(tiny_profile_path), "teacher": str(tiny_teacher_tok), "corpus": str(tiny_corpus),
            "table": str(tiny_table), "train": str(tiny_trained[0])}


def test_profile(common, tmp_path):
    """Timings differ run to run: the table must hold every row of an uninterrupted run, once."""
    from pipeline.latency import KEY, LatencyTable

    def rows(path):
        df = LatencyTable.load(path).df  # whole and readable
        return sorted(map(tuple, df[[*KEY, "arch"]].astype(str).values.tolist()))

    seconds = run_stage("profile", tmp_path / "ref", common)
    ref = rows(tmp_path / "ref" / "table.csv")
    for seed in SEEDS:
        out = tmp_path / f"killed{seed}"
        killed_then_rerun("profile", out, common, seconds, seed)
        assert rows(out / "table.csv") == ref and no_temp_left(out)


def test_train(common, tmp_path):
    from pipeline.train.trained import TrainedSupernet

    seconds = run_stage("train", tmp_path / "ref", common)
    ref = TrainedSupernet(tmp_path / "ref")
    for seed in SEEDS:
        out = tmp_path / f"killed{seed}"
        killed_then_rerun("train", out, common, seconds, seed)
        assert TrainedSupernet(out).pools == ref.pools and no_temp_left(out)


def test_search(common, tmp_path):
    from pipeline.search.job import SEARCH

    args = {**common, "budgets": [1e9]}
    seconds = run_stage("search", tmp_path / "ref", args)
    ref = json.loads((tmp_path / "ref" / SEARCH).read_text())
    for seed in SEEDS:
        out = tmp_path / f"killed{seed}"
        killed_then_rerun("search", out, args, seconds, seed)
        got = json.loads((out / SEARCH).read_text())
        assert [c["arch"] for c in got["choices"]] == [c["arch"] for c in ref["choices"]] and no_temp_left(out)


def test_export(common, tiny_export, tmp_path):
    """Killed while exporting, and while re-exporting over an older export made with other settings."""
    from pipeline.export import EXPORT

    records = tiny_export[1]
    args = {**common, "archs": {r["name"]: r["arch"] for r in records}, "steps": 2}
    seconds = run_stage("export", tmp_path / "ref", args)
    weights = {r["name"]: (tmp_path / "ref" / r["name"] / "model" / "model.safetensors").read_bytes() for r in records}
    for seed in SEEDS:
        out = tmp_path / f"killed{seed}"
        if seed == SEEDS[0]:  # over an older export (the others: a first export, killed)
            run_stage("export", out, {**args, "steps": 1})
        killed_then_rerun("export", out, args, seconds, seed)
        for name, ref in weights.items():
            record = json.loads((out / name / EXPORT).read_text())
            assert record["finetune"]["steps"] == 2 and (out / name / "model" / "model.safetensors").read_bytes() == ref
        assert no_temp_left(out)


def test_sigterm_cleans_up_and_says_how_to_resume(common, tmp_path):
    """SIGTERM (a scheduler, `kill`) exited with no message and left profile's 1 GB scratch folder behind."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "pipeline", "profile", "--profile", common["profile"], "--teacher",
           common["teacher"], "--table", str(tmp_path / "out" / "t.csv"), "--quiet"]
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("pipeline-profile-*")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate()
    assert child.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted: the rounds measured so far are saved")
    assert not list(tmp_path.glob("pipeline-profile-*"))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    drive(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
