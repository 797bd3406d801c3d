"""Export of searched students: every artifact exists, loads, and matches the PyTorch student."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.export import EXPORT
from pipeline.export.job import run_export
from pipeline.model.hf import load_student, save_student
from pipeline.model.student import example_inputs
from pipeline.onnxio import ort_outputs


def test_every_artifact_is_written_and_checked(tiny_export):
    out, records, targets, _, _ = tiny_export
    assert [r["name"] for r in records] == ["arch_a", "arch_b"]
    summary = json.loads((out / EXPORT).read_text())
    assert [m["name"] for m in summary["models"]] == ["arch_a", "arch_b"]
    for r, t in zip(records, targets, strict=True):
        kinds = [a["kind"] for a in r["artifacts"]]
        assert kinds == ["hf", "onnx", "onnx-optimized", "onnx-int8", "device:onnxruntime-cpu"]
        for a in r["artifacts"]:
            assert Path(a["path"]).exists()
            limit = 1.5 if a["kind"] == "onnx-int8" else 1e-3  # int8: no gross error (its cost is scored)
            assert 0 <= a["max_abs_diff"] <= limit, a
        assert r["finetune"]["steps"] == 3 and r["arch"] == t.arch.to_dict()
        assert r["search"]["budget_ms"] == t.search["budget_ms"]


def test_onnx_files_take_any_batch_and_sequence(tiny_export):
    out, records, _, _, _ = tiny_export
    student, _ = load_student(records[0]["model_dir"], with_tokenizer=False)
    inputs = example_inputs(3, 29, student.arch.vocab_size, seed=5)  # a shape never exported
    with torch.inference_mode():
        ref = student(*inputs.values()).numpy()
    for name in ("model.onnx", "model.opt.onnx"):
        got = ort_outputs(out / "arch_a" / name, inputs)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    got = ort_outputs(out / "arch_a" / "model.int8.onnx", inputs)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 0.5 * np.abs(ref).max()


def test_deployed_student_fuses_the_adapter_pairs(tiny_export):
    _, records, targets, _, _ = tiny_export
    student, tokenizer = load_student(records[1]["model_dir"])
    assert tokenizer is not None and len(tokenizer) == student.arch.vocab_size
    hs = [b.hidden for b in targets[1].arch.blocks]
    assert [tuple(a.weight.shape) for a in student.adapters] == [(b, a) for a, b in zip(hs, hs[1:], strict=False)]
    batch = tokenizer(["A sentence to embed."], return_tensors="pt")
    assert student(batch["input_ids"], batch["attention_mask"]).shape[-1] == targets[1].arch.teacher_hidden


def _own_copy(out, tmp_path):
    """The session's export folder copied, so that a test that writes does not change it for others."""
    import shutil

    return Path(shutil.copytree(out, tmp_path / "export"))


def test_a_second_export_reuses_and_force_redoes(tiny_export, tiny_trained, cpu_backend, tmp_path):
    out, records, targets, cfg, _ = tiny_export
    out = _own_copy(out, tmp_path)
    train_dir = tiny_trained[0]
    stamp = (out / "arch_a" / "model.onnx").stat().st_mtime_ns
    logs = []
    again = run_export(train_dir, targets[:1], out, cpu_backend, cfg, log=logs.append)
    assert any("reusing" in line for line in logs) and again[0]["key"] == records[0]["key"]
    assert (out / "arch_a" / "model.onnx").stat().st_mtime_ns == stamp
    logs.clear()
    run_export(train_dir, targets[:1], out, cpu_backend, cfg, force=True, log=logs.append)
    assert any(line.startswith("exported arch_a") for line in logs)


def test_int8_is_added_to_a_reused_export_without_distilling_again(tiny_export, tiny_trained, cpu_backend, tmp_path):
    from dataclasses import replace

    out, records, targets, cfg, _ = tiny_export
    out = _own_copy(out, tmp_path)
    (out / "arch_a" / "model.int8.onnx").unlink()
    record = json.loads((out / "arch_a" / EXPORT).read_text())
    record["artifacts"] = [a for a in record["artifacts"] if a["kind"] != "onnx-int8"]  # as --no-int8 wrote it
    (out / "arch_a" / EXPORT).write_text(json.dumps(record))
    logs = []
    plain = run_export(tiny_trained[0], targets[:1], out, cpu_backend, replace(cfg, int8=False), log=logs.append)
    assert "onnx-int8" not in [a["kind"] for a in plain[0]["artifacts"]] and any("reusing" in x for x in logs)
    logs.clear()
    again = run_export(tiny_trained[0], targets[:1], out, cpu_backend, cfg, log=logs.append)
    assert not any(line.startswith("exported") for line in logs) and any("int8 file" in x for x in logs)
    (q,) = [a for a in again[0]["artifacts"] if a["kind"] == "onnx-int8"]
    assert q["settings"] == cpu_backend.int8.describe() and Path(q["path"]).is_file()
    assert again[0]["key"] == records[0]["key"]
    assert json.loads((out / "arch_a" / EXPORT).read_text()) == again[0]  # the record rewritten after the file
    # the export names the teacher its students were distilled from (what `task --export-dir` teaches with)
    from pipeline.train.trained import TrainedSupernet

    assert json.loads((out / EXPORT).read_text())["teacher"] == TrainedSupernet(tiny_trained[0]).teacher


def test_student_folder_errors_are_one_line(tmp_path, tiny_export):
    _, records, _, _, _ = tiny_export
    with pytest.raises(PipelineError, match="not a student folder"):
        load_student(tmp_path)
    student, _ = load_student(records[0]["model_dir"], with_tokenizer=False)
    folder = save_student(student, tmp_path / "s")
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(PipelineError, match="corrupt"):
        load_student(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(PipelineError, match="corrupt"):
        load_student(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(PipelineError, match="not a nasbert-student"):
        load_student(folder)


def test_export_command(tiny_trained, tiny_profile_path, tmp_path, capsys):
    from conftest import pool_arch

    from pipeline.cli import main
    from pipeline.space import save_architecture
    from pipeline.train.trained import TrainedSupernet

    train_dir = tiny_trained[0]
    arch = save_architecture(pool_arch(TrainedSupernet(train_dir), (1, 2)), tmp_path / "mine.json")
    rc = main(["export", "--profile", str(tiny_profile_path), "--arch", str(arch), "--train-dir", str(train_dir),
               "--out", str(tmp_path / "exp"), "--quiet"])
    assert rc == 0
    assert "max |diff|" in capsys.readouterr().out
    assert (tmp_path / "exp" / "mine" / "model" / "model.safetensors").is_file()
    assert main(["export", "--profile", str(tiny_profile_path), "--search-dir", str(tmp_path / "none"),
                 "--train-dir", str(train_dir)]) == 1
    assert "run `search` first" in capsys.readouterr().err
    assert main(["export", "--profile", str(tiny_profile_path), "--arch", str(arch), "--finetune-steps", "-2"]) == 1


def test_budgets_that_pick_one_architecture_share_its_export(tiny_export, tiny_trained, cpu_backend, tmp_path):
    from pipeline.export.job import Target

    out, records, targets, cfg, _ = tiny_export
    out = _own_copy(out, tmp_path)
    twin = Target("arch_a_twin", targets[0].arch, {"budget_ms": 70.0, "predicted_ms": 0.5})
    logs = []
    got = run_export(tiny_trained[0], [targets[0], twin], out, cpu_backend, cfg, log=logs.append)
    assert any("same architecture as arch_a" in line for line in logs)
    assert got[1]["model_dir"] == got[0]["model_dir"] and got[1]["search"]["budget_ms"] == 70.0
    assert json.loads((out / "arch_a_twin" / EXPORT).read_text())["same_as"] == "arch_a"


def test_long_fine_tuning_learns_from_augmented_views(tiny_trained):
    from pipeline.finetune.builder import BuildConfig, StudentBuilder
    from pipeline.finetune.distill import DistillConfig
    from pipeline.model.teacher import teacher_states
    from pipeline.train.trained import TrainedSupernet

    trained = TrainedSupernet(tiny_trained[0])
    teacher = trained.teacher_model
    last = trained.summary["space"]["teacher_layers"]
    logs = []
    # Steps only count here: the builder prepares the text and the teacher's states, student() would train.
    ex = StudentBuilder(trained, BuildConfig(finetune=DistillConfig(steps=100_000), embed_steps=2), log=logs.append)
    n = ex.data.train.shape[0]
    assert ex.views == 3 and ex.train_ids.shape[0] == n + 3 * (n - 1) == ex.targets.shape[0]
    assert torch.equal(ex.train_ids[:n], ex.data.train)
    views = ex.train_ids[n:]
    assert not torch.equal(views[: n - 1], ex.data.train[: n - 1])
    expected = teacher_states(teacher, views[-3:], [last])[last]
    torch.testing.assert_close(ex.targets[-3:], expected, rtol=1e-4, atol=1e-4)   # labelled by the teacher
    assert any("3 augmented views" in m for m in logs)
    plain = StudentBuilder(trained, BuildConfig(finetune=DistillConfig(steps=100_000, views=0), embed_steps=2),
                           log=logs.append)
    assert plain.views == 0 and torch.equal(plain.train_ids, ex.data.train)


def _consistent(folder):
    """The folder's weights and its optimised graph are the same student (not one run's weights beside
    another run's graphs)."""
    student, _ = load_student(folder / "model", with_tokenizer=False)
    inputs = example_inputs(1, 16, student.arch.vocab_size, seed=3)
    with torch.inference_mode():
        ref = student(*inputs.values()).numpy()
    return np.abs(ort_outputs(folder / "model.opt.onnx", inputs) - ref).max() < 1e-3


def test_an_interrupted_re_export_leaves_the_old_folder_whole(tiny_export, tiny_trained, cpu_backend, tmp_path,
                                                               monkeypatch):
    """Killed after model/ was rewritten, a re-export with other settings was reused as if valid."""
    import dataclasses

    import pipeline.export.job as job

    out, records, targets, cfg, _ = tiny_export
    out = _own_copy(out, tmp_path)
    weights = (out / "arch_a" / "model" / "model.safetensors").read_bytes()

    def killed(*_args, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "optimize_onnx", killed)  # model/ and model.onnx written, then the kill
    other = dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune, steps=1))
    with pytest.raises(KeyboardInterrupt):
        run_export(tiny_trained[0], targets[:1], out, cpu_backend, other, log=lambda _: None)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp folder left
    assert (out / "arch_a" / "model" / "model.safetensors").read_bytes() == weights and _consistent(out / "arch_a")
    logs = []
    again = run_export(tiny_trained[0], targets[:1], out, cpu_backend, other, log=logs.append)
    assert any(line.startswith("exported arch_a") for line in logs) and again[0]["finetune"]["steps"] == 1
    assert _consistent(out / "arch_a") and Path(again[0]["model_dir"]) == out / "arch_a" / "model"
    assert (out / "arch_a" / "model" / "model.safetensors").read_bytes() != weights


def test_a_killed_export_leaves_no_record_to_trust(tiny_export, tiny_trained, cpu_backend, tmp_path):
    """kill -9 runs no `finally`: what it leaves is a temp folder beside the student's, removed by the next
    write, and never read as the student."""
    import os

    out, records, targets, cfg, _ = tiny_export
    out = _own_copy(out, tmp_path)
    dead = out / ".arch_a.999999999.abc.tmp"  # a process id no process has
    (dead / "model").mkdir(parents=True)
    (dead / EXPORT).write_text(json.dumps({**records[0], "key": "x"}))
    assert not os.path.exists("/proc/999999999")
    run_export(tiny_trained[0], targets[:1], out, cpu_backend, cfg, force=True, log=lambda _: None)
    assert not dead.exists() and _consistent(out / "arch_a")


def test_a_reused_export_clears_a_killed_writers_temp_folder(tiny_export, tiny_trained, cpu_backend, tmp_path):
    out, _, targets, cfg, _ = tiny_export
    out = _own_copy(out, tmp_path)
    dead = out / ".arch_a.999999999.abc.tmp"
    (dead / "model").mkdir(parents=True)
    logs = []
    run_export(tiny_trained[0], targets[:1], out, cpu_backend, cfg, log=logs.append)
    assert any("reusing" in line for line in logs) and not dead.exists()
