"""The task report: the preamble says how the students learnt; the choice of what to deploy."""

import re

from pipeline.task.report import choice_lines, choices, markdown, start_of, transfer_of


def test_the_preamble_names_the_start_and_the_dropout():
    assert start_of({"adapt_steps": 0, "student_head": "random", "student_dropout": 0.0}) == ""
    said = start_of({"adapt_steps": 1500, "student_head": "teacher", "student_dropout": 0.1})
    assert said == ("; the distilled students first adapt their final states to the teacher's for 1500 steps and "
                    "start with the teacher's head and train with dropout 0.1 inside")
    assert start_of({"student_head": "random"}) == ""  # reports written before the field existed


def _model(name, kind, ms, dev, test=None):
    return {"name": name, "kind": kind, "latency_ms": ms, "dev_accuracy": dev, "test_accuracy": test}


def test_the_choice_at_each_searched_students_latency_is_the_best_dev_score_no_slower_than_it():
    models = [_model("teacher", "teacher", 20.0, 0.90, 0.89), _model("fast", "searched", 5.0, 0.70, 0.72),
              _model("slow", "searched", 8.0, 0.75, 0.74), _model("pkd_2", "pkd", 7.0, 0.78, 0.70),
              _model("pkd_3", "pkd", 9.0, 0.85, 0.85), _model("narrow", "narrow", 4.0, 0.70, 0.60)]
    picks = {c["searched"]: c for c in choices(models)}
    # at 5 ms: the searched student ties the faster narrow BERT on dev, and the tie goes to the faster
    assert picks["fast"]["pick"] == "narrow"
    # at 8 ms: PKD's two-layer student on dev (0.78), though its test score is lower: test never chooses
    assert picks["slow"]["pick"] == "pkd_2" and picks["slow"]["test_accuracy"] == 0.70
    assert "pkd_3" not in [c["pick"] for c in picks.values()]  # slower than every searched student
    report = {"models": models, "choices": choices(models)}
    lines = choice_lines(report)
    assert lines[1] == ("within 8.000 ms (latency of slow): deploy pkd_2 (pkd, 7.000 ms, dev 0.780, ahead of slow's "
                        "0.750; test 0.700), models/pkd_2/")
    assert choice_lines({"models": models}) == lines                # reports written before the field existed
    alone = [_model("only", "searched", 5.0, 0.70)]
    assert choice_lines({"models": alone}) == ["within 5.000 ms (latency of only): deploy only (searched, 5.000 ms, "
                                               "dev 0.700), models/only/"]
    assert choices([_model("s", "searched", 5.0, None)]) == []     # no dev scores: nothing chosen


def test_with_budgets_the_choice_is_within_each_budget_of_every_model_and_precision():
    models = [_model("teacher", "teacher", 20.0, 0.90), dict(_model("teacher-int8", "teacher", 9.5, 0.89),
                                                             precision="int8", onnx_path="/m/teacher/model.int8.onnx"),
              dict(_model("arch_10ms", "searched", 9.0, 0.80), budget_ms=10.0),
              dict(_model("arch_10ms-int8", "searched", 6.0, 0.50), budget_ms=10.0, precision="int8"),
              dict(_model("arch_5ms", "searched", 4.9, 0.70), budget_ms=5.0), _model("pkd_1", "pkd", 5.5, 0.75)]
    picks = {c["budget_ms"]: c for c in choices(models)}
    assert sorted(picks) == [5.0, 10.0]                             # one per budget, not one per int8 file
    assert picks[10.0]["pick"] == "teacher-int8" and picks[10.0]["precision"] == "int8"  # the teacher too
    assert picks[5.0]["pick"] == "arch_5ms"                        # pkd_1 is better but 0.5 ms over the budget
    line = choice_lines({"models": models})[1]
    assert line.startswith("within 10.000 ms (budget arch_10ms): deploy teacher-int8 (teacher, int8, 9.500 ms")
    assert line.endswith("/m/teacher/model.int8.onnx")


def test_the_preamble_names_the_unlabelled_text_the_students_learnt_from():
    teacher = {"kind": "teacher", "train": {"steps": 10}}
    with_text = [teacher, {"kind": "searched", "train": {"unlabeled": 240}},
                 {"kind": "pkd", "train": {"unlabeled": 240}}]
    assert transfer_of({"models": with_text}) == (", also from the teacher's predictions on 240 unlabelled examples "
                                                  "(a batch beside each labelled one)")
    assert transfer_of({"models": [teacher, {"kind": "searched", "train": {"unlabeled": 0}}]}) == ""
    assert transfer_of({"models": [teacher, {"kind": "searched", "train": {}}]}) == ""   # older records


def test_an_architecture_in_the_markdown_table_stays_in_its_cell():
    models = [dict(_model("teacher", "teacher", 20.0, 0.9, 0.9), describe="bert fine-tuned"),
              dict(_model("s", "searched", 5.0, 0.7, 0.7), describe="384:mha,ffn | 256:sepconv3")]
    report = {"task": {"name": "t", "kind": "classification", "classes": ["a", "b"], "train_examples": 8,
                       "dev_examples": 2, "test_examples": 2}, "device": "cpu", "teacher": "bert",
              "config": {"method": "pkd", "pkd": "skip", "steps": 10}, "statistic": "minimum", "models": models}
    table = [line for line in markdown(report).splitlines() if line.startswith("|")]
    cells = [len(re.split(r"(?<!\\)\|", line)) for line in table]   # split on the pipes not escaped
    assert len(set(cells)) == 1 and "384:mha,ffn \\| 256:sepconv3" in table[-1]
