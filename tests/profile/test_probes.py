import json

import pytest

from pipeline.errors import PipelineError
from pipeline.latency import LatencyTable, Predictor
from pipeline.profile.probes import partial_path, plan, profile_device


def test_plan_covers_the_space(tiny_space):
    probes = plan(tiny_space, 1, (16, 32), 3)
    kinds = [p.kind for p in probes]
    assert kinds.count("op") == 2 * len(tiny_space.ops())
    assert kinds.count("linear") == 2 * len(tiny_space.linear_shapes())
    assert kinds.count("calibration") == 6 and kinds.count("embedding") == 2
    assert plan(tiny_space, 1, (16, 32), 3) == probes  # deterministic: resume depends on it


def test_a_real_profile(tiny_table, tiny_space, cpu_backend):
    t = LatencyTable.load(tiny_table)
    assert t.keys() == {tuple(map(str, p.key)) for p in plan(tiny_space, 1, (16,), 3)}
    assert t.fingerprint == cpu_backend.fingerprint()
    ops = t.df[t.df.kind == "op"]
    assert (ops.latency_ms > 0).all() and (ops.n == 2 * 3).all() and (ops["stack"] == 2).all()
    assert {"fp.cpu", "fp.onnxruntime", "fp.threads"} <= set(t.df.columns)
    assert (t.df.statistic == "minimum of all timed runs").all()
    # whole students cost more than nothing and the predictor covers them
    p = Predictor(t, 1, 16)
    for arch, ms in t.calibration_rows(1, 16):
        assert ms > 0 and p(arch) > 0
    assert not partial_path(tiny_table).exists()


def test_interrupted_profile_resumes_without_remeasuring(tmp_path, cpu_backend, tiny_space):
    path = tmp_path / "t.csv"
    rounds_seen = []

    def stop_after_first(r):
        rounds_seen.append(r)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_device(cpu_backend, tiny_space, path, progress=False, on_round=stop_after_first)
    state = json.loads(partial_path(path).read_text())
    assert not path.exists() and all(len(s) == 1 for s in state["samples"])

    profile_device(cpu_backend, tiny_space, path, progress=False, on_round=rounds_seen.append)
    assert rounds_seen == [0, 1]  # round 0 was kept, only round 1 was measured
    assert not partial_path(path).exists()
    table = LatencyTable.load(path)
    assert (table.df.n == 2 * 3).all()

    rounds_seen.clear()  # complete: nothing to measure
    profile_device(cpu_backend, tiny_space, path, progress=False, on_round=rounds_seen.append)
    assert rounds_seen == []


def test_table_from_another_fingerprint_is_not_extended(tmp_path, tiny_table, cpu_backend, tiny_space):
    path = tmp_path / "t.csv"
    text = tiny_table.read_text()
    fp = LatencyTable.load(tiny_table).fingerprint
    other = text.replace(fp["cpu"], "Some Other CPU")
    # keep it self-consistent (as if measured elsewhere): recompute its fingerprint hash
    from pipeline.latency import fingerprint_hash
    other = other.replace(fingerprint_hash(fp), fingerprint_hash({**fp, "cpu": "Some Other CPU"}))
    path.write_text(other)
    with pytest.raises(PipelineError, match="measured on another machine"):
        profile_device(cpu_backend, tiny_space, path, progress=False)
    assert path.read_text() == other  # nothing overwritten


def test_force_never_replaces_a_file_that_is_not_a_table(tmp_path, cpu_backend, tiny_space, tiny_table):
    """`profile --table mine.csv --force` overwrote a user's own CSV, as the corrupt-table error suggested."""
    from pipeline.profile.probes import open_table

    mine = tmp_path / "mine.csv"
    mine.write_text("name,score\nann,3\n")
    fp = LatencyTable.load(tiny_table).fingerprint
    with pytest.raises(PipelineError, match="not a latency table"):
        profile_device(cpu_backend, tiny_space, mine, force=True, progress=False)
    assert mine.read_text() == "name,score\nann,3\n"
    cut = tmp_path / "cut.csv"
    cut.write_text(tiny_table.read_text()[:300])  # a damaged table of ours: --force measures it anew
    assert len(open_table(cut, fp, force=True).df) == 0
