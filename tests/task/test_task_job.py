"""The task stage end to end on the tiny teacher and the tiny exported students."""

import json
from pathlib import Path

import pytest

from pipeline.task.data import load_files
from pipeline.task.job import exported_students, run_task
from pipeline.task.train import TaskConfig
from pipeline.task.wordnet import wordnet_task


@pytest.fixture(scope="module")
def two_class_files(tmp_path_factory):
    """Real glosses of two lexicographer files (nouns of animals, verbs of motion) as JSONL files,
    balanced, so that chance is 0.5 and a model that always says one class scores no better."""
    t = wordnet_task({"train": 60000, "dev": 1, "test": 1})  # half of WordNet: hundreds of each class
    names = {"noun.animal": "animal", "verb.motion": "motion"}
    by_class = {name: [x for s in (t.train, t.dev, t.test) for x, y in zip(s.texts, s.labels, strict=True)
                       if t.classes[y] == lexname] for lexname, name in names.items()}
    folder = tmp_path_factory.mktemp("task")
    paths, start = {}, 0
    for split, n in (("train", 120), ("dev", 40), ("test", 40)):
        rows = [{"text": x, "label": name} for name, texts in by_class.items() for x in texts[start:start + n]]
        start += n
        path = folder / f"{split}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))
        paths[split] = path
    return paths


def test_task_students_beat_chance_and_every_artifact_is_reported(tiny_export, tiny_teacher_tok, cpu_backend,
                                                                  two_class_files, tmp_path):
    export_dir = tiny_export[0]
    task = load_files(two_class_files["train"], two_class_files["dev"], two_class_files["test"])
    assert task.classes == ["animal", "motion"]
    # The tiny teacher starts from random weights, not pretrained ones: BERT-small's rate, not BERT's.
    cfg = TaskConfig(steps=150, teacher_steps=200, teacher_lr=1e-3, lr=1e-3, adapt_steps=30, adapt_lr=1e-3)
    logs = []
    report = run_task(task, exported_students(export_dir), cpu_backend, tmp_path, str(tiny_teacher_tok), cfg,
                      log=logs.append)
    kinds = [m["kind"] for m in report["models"] if m["precision"] == "fp32"]
    assert kinds[0] == "teacher" and kinds.count("searched") == 2 and "pkd" in kinds
    for m in report["models"]:
        for key in ("kind", "name", "dev_accuracy", "test_accuracy", "latency_ms", "speedup", "dev_f1"):
            assert m[key] is not None, (m["name"], key)
        assert m["precision"] == "int8" or m["max_abs_diff"] < 1e-3  # the deployed artifact matches PyTorch
    teacher = report["models"][0]
    assert teacher["test_accuracy"] > 0.7 and teacher["test_f1"] > 0.6
    best = max((m for m in report["models"] if m["kind"] == "searched" and m["precision"] == "fp32"),
               key=lambda m: m["test_accuracy"])
    assert best["test_accuracy"] > 0.65 and best["test_f1"] > 0.5  # balanced: chance and one class are 0.5
    for name in ("task_report.json", "task_report.md", "task_report.csv"):
        assert (tmp_path / name).is_file()
    text = (tmp_path / "task_report.md").read_text()
    assert "| teacher |" in text and "(skip layer map, cls states)" in text and "Training ran on cpu." in text
    student = next(m for m in report["models"] if m["kind"] == "searched")
    assert (tmp_path / "models" / student["name"] / "model.opt.onnx").is_file()
    searched = {m["name"]: m for m in report["models"] if m["kind"] == "searched"}
    from pipeline.model.hf import load_student

    for s in exported_students(export_dir):  # the count of the student taught, the head left out as the teacher's
        encoder = load_student(s["model_dir"], with_tokenizer=False)[0]
        assert searched[s["name"]]["params"] == sum(p.numel() for p in encoder.parameters())
    fp32 = [n for n, m in searched.items() if m["precision"] == "fp32"]
    assert sorted(c["searched"] for c in report["choices"]) == sorted(fp32)  # one choice at each one's budget
    for c in report["choices"]:
        assert c["within_ms"] == searched[c["searched"]]["budget_ms"] and c["latency_ms"] <= c["within_ms"]
        assert Path(c["file"]).is_file() and "What to deploy" in text
    # every model in int8 too, scored as deployed; PKD's student at every depth of the 4-layer teacher
    names = [m["name"] for m in report["models"]]
    assert {"teacher-int8", "pkd_1", "pkd_2", "pkd_3", "pkd_3-int8"} <= set(names)
    for m in report["models"]:
        if m["precision"] == "int8":
            assert m["onnx_path"].endswith("model.int8.onnx") and 0 <= m["dev_accuracy"] <= 1
    assert json.loads((tmp_path / "models" / student["name"] / "task.json").read_text())["classes"] == task.classes
    # a second run is reused, the fine-tuned teacher too
    again = run_task(task, exported_students(export_dir), cpu_backend, tmp_path, str(tiny_teacher_tok), cfg,
                     log=logs.append)
    assert again == json.loads((tmp_path / "task_report.json").read_text()) and "reused" in logs[-1]
    # with unlabelled text (the dev texts, unlabelled) and another seed: the students learn the teacher's
    # predictions on it, from the same teacher (the students' seed is not the teacher's)
    from dataclasses import replace

    from pipeline.task.data import Split

    extra = replace(task, unlabeled=Split(task.dev.texts, None, []))
    fresh = run_task(extra, exported_students(export_dir), cpu_backend, tmp_path / "b", str(tiny_teacher_tok),
                     replace(cfg, transfer=True, seed=1, adapt_steps=10, student_head="teacher"), baselines=False,
                     log=logs.append)
    assert any("reused the teacher" in line for line in logs)  # its fine-tuning never reads unlabelled text
    assert any(f"on {len(task.dev)} unlabelled examples" in line for line in logs)
    assert [m["kind"] for m in fresh["models"] if m["precision"] == "fp32"] == ["teacher", "searched", "searched"]
    students = [m for m in fresh["models"] if m["kind"] == "searched"]  # fp32 and int8 files of each
    assert len(students) == 4 and all(m["train"]["unlabeled"] == len(task.dev) for m in students)
    assert fresh["task"]["unlabeled_examples"] == len(task.dev)
    # and starting from the teacher's head, their final states first adapted on the labelled and unlabelled text
    assert all(m["start"]["head"] == "teacher" and m["start"]["adapt"]["rows"] == len(task.train) + len(task.dev)
               for m in students)
    assert "teacher's for 10 steps and start with the teacher's head" in (tmp_path / "b" / "task_report.md").read_text()


def test_the_benchmarks_narrowed_berts_are_baselines_keyed_by_the_benchmark_that_made_them(tmp_path):
    from pipeline.task.job import benchmark_narrow

    assert benchmark_narrow(tmp_path / "report.json") == []  # no benchmark yet: no narrow baselines
    (tmp_path / "narrow_64x2" / "model").mkdir(parents=True)
    rows = [{"name": "narrow_64x2", "kind": "narrow", "arch": "64x2", "params": 10,
             "model_dir": str(tmp_path / "narrow_64x2" / "model")},
            {"name": "narrow_32x2", "kind": "narrow", "model_dir": None},  # a report older than the folders
            {"name": "pkd_1", "kind": "pkd"}]
    keys = []
    for key in ("bench-a", "bench-b"):
        (tmp_path / "report.json").write_text(json.dumps({"key": key, "baselines": rows}))
        (b,) = benchmark_narrow(tmp_path / "report.json")
        assert b["name"] == "narrow_64x2" and b["kind"] == "narrow" and b["model_dir"] == rows[0]["model_dir"]
        keys.append(b["key"])
    assert keys[0] != keys[1]  # re-distilled by another benchmark: the task stage must not reuse its old report
