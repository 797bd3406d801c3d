import json
import random

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.latency import FEATURES, LatencyTable, Predictor
from pipeline.profile.probes import json_arch
from pipeline.space import SearchSpace

FP = {"backend": "onnxruntime-cpu", "precision": "fp32", "cpu": "test-cpu", "threads": "1"}
SPACE = SearchSpace.from_teacher(256, 4, vocab_size=1000, max_positions=64)
COST = {"mha": 0.5, "ffn": 0.7, "sepconv3": 0.2, "sepconv5": 0.21, "sepconv7": 0.22}


def stats(ms: float) -> dict:
    return {"latency_ms": ms, "p50_ms": ms, "p90_ms": ms, "p99_ms": ms, "mean_ms": ms, "std_ms": 0.0,
            "min_ms": ms, "n": 10}


def synthetic_table(students: int = 0, truth=None) -> LatencyTable:
    """Every part of SPACE with made-up costs; calibration rows measured as truth(predictor, arch)."""
    t = LatencyTable.empty(FP)
    extra = {"stack": 1, "statistic": "min", "profile": "test", "arch": None, "measured_at": "now"}
    for w in sorted({*SPACE.hidden_sizes, SPACE.embed_dim, SPACE.teacher_hidden}):
        t.add(("call", "call", w, w, 1, 16), stats(0.01), extra)
    for op, h in SPACE.ops():
        t.add(("op", op, h, h, 1, 16), stats(COST[op] * h / 128), extra)
    t.add(("embedding", "embedding", 1000, SPACE.embed_dim, 1, 16), stats(0.03), extra)
    for i, o in SPACE.linear_shapes():
        t.add(("linear", "linear", i, o, 1, 16), stats(i * o / 1e5), extra)
    rng = random.Random(0)
    for _ in range(students):
        arch = SPACE.sample(rng)
        t.add(("calibration", arch.key, 0, 0, 1, 16), stats(truth(Predictor(t, 1, 16), arch)),
              {**extra, "arch": json_arch(arch)})
    return t


def test_prediction_is_the_sum_of_parts_without_calibration():
    t = synthetic_table()
    arch = SPACE.sample(random.Random(1))
    p = Predictor(t, 1, 16)
    expected = 0.01 + 0.03 + sum(i * o / 1e5 for i, o in [(SPACE.embed_dim, arch.blocks[0].hidden),
                                                          (arch.blocks[0].hidden, arch.blocks[1].hidden),
                                                          (arch.blocks[1].hidden, 256)])
    expected += sum(COST[op] * b.hidden / 128 for b in arch.blocks for op in b.layers if op != "identity")
    assert p(arch) == pytest.approx(expected) and p.calibration.method == "none"


def test_calibration_recovers_per_feature_coefficients():
    coefs = np.array([0.8, 0.9, 1.05, 1.1, 0.02])
    t = synthetic_table(students=20, truth=lambda p, a: float(p.features(a) @ coefs))
    p = Predictor(t, 1, 16)
    assert p.calibration.method == "per-feature" and p.calibration.archs == 20
    assert np.allclose(p.calibration.coefs, coefs, atol=1e-6)
    assert p.calibration.max_abs_error_pct < 1e-6
    assert set(p.calibration.as_dict()["coefs"]) == set(FEATURES)


def test_few_students_fit_a_line():
    t = synthetic_table(students=4, truth=lambda p, a: 1.2 * p.raw_ms(a) + 0.1)
    p = Predictor(t, 1, 16)
    arch = SPACE.sample(random.Random(9))
    assert p.calibration.method == "line"
    assert p(arch) == pytest.approx(1.2 * p.raw_ms(arch) + 0.1)


def test_a_line_that_would_predict_below_the_call_becomes_a_ratio():
    # Three students whose measured times (noise) fall steeply with size: the line through them
    # predicts the smallest possible student (the call and the embedding alone) at less than nothing.
    t = synthetic_table(students=3, truth=lambda p, a: 4.0 * p.raw_ms(a) - 0.9 * sum(COST.values()) * 4)
    raws = [Predictor(t, 1, 16).raw_ms(a) for a, _ in t.calibration_rows(1, 16)]
    assert np.polyfit(raws, [ms for _, ms in t.calibration_rows(1, 16)], 1)[1] + 4.0 * 0.04 < 0.01
    p = Predictor(t, 1, 16)
    assert p.calibration.method == "ratio" and p.calibration.offset_ms == 0.0
    smallest = SPACE.sample(random.Random(0))
    smallest = type(smallest)(smallest.teacher_hidden, smallest.embed_dim,
                              tuple(type(b)(min(SPACE.hidden_sizes), ("identity",) * len(b.layers))
                                    for b in smallest.blocks), smallest.vocab_size, smallest.max_positions)
    assert p(smallest) > 0
    assert p(smallest) == pytest.approx(p.calibration.coefs[0] * p.raw_ms(smallest))
    # a line that keeps every student above the call stays a line
    assert Predictor(synthetic_table(students=3, truth=lambda p, a: 0.8 * p.raw_ms(a) - 0.001), 1, 16
                     ).calibration.method == "line"


def test_missing_part_is_a_clear_error():
    t = synthetic_table()
    other = SearchSpace.from_teacher(384, 4, vocab_size=1000).sample(random.Random(0))
    with pytest.raises(PipelineError, match="no row for"):
        Predictor(t, 1, 16)(other)
    with pytest.raises(PipelineError, match="no row for"):
        Predictor(t, 1, 128)(SPACE.sample(random.Random(0)))  # not profiled at seq 128


def test_roundtrip(tmp_path):
    t = synthetic_table(students=2, truth=lambda p, a: p.raw_ms(a))
    t.save(tmp_path / "t.csv")
    back = LatencyTable.load(tmp_path / "t.csv")
    assert back.fingerprint == FP and back.fingerprint_hash == t.fingerprint_hash
    assert len(back.df) == len(t.df) and back.keys() == t.keys()
    arch = SPACE.sample(random.Random(4))
    assert Predictor(back, 1, 16)(arch) == pytest.approx(Predictor(t, 1, 16)(arch))


def _negative_latency(text):
    """The first row's latency_ms made -1 (a hand edit: the predictor took it, 0.546 ms for 0.602)."""
    header, first, *rest = text.splitlines()
    cells = first.split(",")
    cells[header.split(",").index("latency_ms")] = "-1"
    return "\n".join([header, ",".join(cells), *rest]) + "\n"


@pytest.mark.parametrize("damage, message", [
    (_negative_latency, "negative latency_ms on line 2"),
    (lambda text: "\x00\x01garbage", "corrupt"),
    (lambda text: "", "corrupt"),
    (lambda text: text.replace("latency_ms", "latency", 1), "missing column"),
    (lambda text: text.splitlines()[0] + "\n", "no rows"),
    (lambda text: text.replace(",test-cpu,", ",tampered,", 1), "fingerprint"),
    (lambda text: text.replace("0.03,", "fast,", 1), "non-numeric"),
])
def test_corrupt_tables_are_one_line_errors(tmp_path, damage, message):
    path = tmp_path / "t.csv"
    synthetic_table().save(path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(PipelineError, match=message):
        LatencyTable.load(path)


def test_missing_table():
    with pytest.raises(PipelineError, match="not found.*profile"):
        LatencyTable.load("/nonexistent/t.csv")


def test_calibration_rows_carry_their_architecture():
    t = synthetic_table(students=3, truth=lambda p, a: p.raw_ms(a))
    rows = t.calibration_rows(1, 16)
    assert len(rows) == 3
    assert json.loads(t.df[t.df.kind == "calibration"].arch.iloc[0])["teacher_hidden"] == 256
