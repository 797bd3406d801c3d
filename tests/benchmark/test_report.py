"""The report files from a report.json: markdown, CSV and the plot, on a hand-made report."""

import csv
import io

from pipeline.benchmark.report import markdown, rows, to_csv, write_report


def model(name, kind, ms, cos, **extra):
    return {"name": name, "kind": kind, "latency_ms": ms, "latency_ms_p50": ms * 1.05, "latency_ms_p90": ms * 1.1,
            "latency_ms_p99": ms * 1.2, "fidelity_cosine": cos, "params": 4_500_000, "flops": 2.5e9,
            "similarity_spearman": cos, "ood_similarity_spearman": cos - 0.1, **extra}


REPORT = {
    "device": "cpu", "backend": "onnxruntime-cpu", "precision": "fp32", "batch": 1, "seq": 128,
    "statistic": "minimum of all timed runs", "fidelity_on": "held-out test split", "budgets_ms": [3.5],
    "teacher": model("teacher", "teacher", 13.6, 1.0, optimisation="fused"),
    "students": [model("arch_3.5ms", "searched", 3.4, 0.716, budget_ms=3.5, predicted_ms=3.39,
                       within_budget=True, arch="256:mha,ffn")],
    "baselines": [model("narrow_256x3", "narrow", 3.3, 0.403, matched_to_ms=3.39)],
}


def test_markdown_has_every_model_and_the_verdict():
    md = markdown(REPORT)
    assert md.startswith("# Benchmark on `cpu` (onnxruntime-cpu, fp32)\n\n## What to deploy")
    for r in rows(REPORT):
        assert f"| {r['name']} | {r['kind']} |" in md
    # a report written before the choice existed gets it from its rows: the held-out cosine alone never judges
    assert "- **Budget 3.5 ms**: deploy `arch_3.5ms` (searched, fp32): 3.400 ms, 4.0x faster" in md
    assert "chosen; on the OOD spearman front" in md
    assert "| 4.50M | 2.50G |" in md and "| yes |" in md


def test_csv_has_one_row_per_model(tmp_path):
    table = list(csv.DictReader(io.StringIO(to_csv(REPORT))))
    assert [r["name"] for r in table] == ["teacher", "arch_3.5ms", "narrow_256x3"]
    assert float(table[1]["fidelity_cosine"]) == 0.716 and table[0]["budget_ms"] == ""
    written = write_report(REPORT, tmp_path)
    assert sorted(p.name for p in written) == ["pareto.png", "report.csv", "report.md"]
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_the_verdict_names_the_drift_where_it_turns_it():
    slow = {**REPORT, "students": [model("arch_3.5ms", "searched", 3.8, 0.716, budget_ms=3.5, within_budget=False,
                                         latency_ms_at_table_speed=3.33, within_budget_at_table_speed=True)]}
    assert "| no (yes at the table's speed: 3.330 ms) |" in markdown(slow)
    steady = {**REPORT, "students": [model("arch_3.5ms", "searched", 3.4, 0.716, budget_ms=3.5, within_budget=True,
                                           latency_ms_at_table_speed=3.3, within_budget_at_table_speed=True)]}
    assert "| yes |" in markdown(steady) and "table's speed" not in markdown(steady)
