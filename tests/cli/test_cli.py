import json
import random
import subprocess
import sys

import pytest
import torch

from pipeline.cli import main
from pipeline.space import save_architecture


@pytest.fixture
def arch_file(tmp_path, tiny_space):
    return str(save_architecture(tiny_space.sample(random.Random(5)), tmp_path / "arch.json"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, needle):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_help_lists_the_stages(capsys):
    code, out, _ = run(capsys)
    assert code == 0
    for stage in ("profile", "train", "search", "export", "benchmark", "task", "predict", "cache"):
        assert stage in out


def test_profile_predict_benchmark(capsys, tmp_path, tiny_teacher, tiny_profile_path, arch_file):
    table = str(tmp_path / "t.csv")
    code, out, err = run(capsys, "profile", "--profile", str(tiny_profile_path), "--teacher", str(tiny_teacher),
                         "--table", table, "--quiet")
    assert code == 0 and "wrote" in out and "calibrated" in err
    code, out, _ = run(capsys, "predict", "--profile", str(tiny_profile_path), "--table", table,
                       "--arch", arch_file, "--json")
    pred = json.loads(out)
    assert code == 0 and pred["predicted_ms"] > 0 and pred["fingerprint_match"] is True
    assert pred["seq"] == 16 and pred["statistic"] == "minimum of all timed runs"
    code, out, _ = run(capsys, "benchmark", "--profile", str(tiny_profile_path), "--table", table,
                       "--arch", arch_file, "--json")
    bench = json.loads(out)
    assert code == 0 and bench["measured_ms"] > 0
    assert bench["predicted_ms"] == pytest.approx(pred["predicted_ms"])
    assert bench["p50_ms"] >= bench["measured_ms"] and bench["params"] == pred["params"]
    code, out, _ = run(capsys, "predict", "--profile", str(tiny_profile_path), "--table", table, "--arch", arch_file)
    assert code == 0 and "predicted" in out and "ms" in out
    assert {name for name, _ in pred["parts_ms"]} >= {"call", "embedding", "linear 128->128"}
    code, out, _ = run(capsys, "profile", "--profile", str(tiny_profile_path), "--teacher", str(tiny_teacher),
                       "--table", table, "--quiet")
    assert code == 0 and "already holds every part" in out  # complete: nothing measured again


def test_benchmark_without_a_table_says_so(capsys, tmp_path, tiny_profile_path, arch_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "benchmark", "--profile", str(tiny_profile_path), "--arch", arch_file)
    assert code == 0 and "measured" in out and "no latency table" in err


def test_space_samples(capsys, tmp_path, tiny_teacher):
    code, out, _ = run(capsys, "space", "--teacher", str(tiny_teacher), "--sample", "2", "--out", str(tmp_path))
    assert code == 0 and len(list(tmp_path.glob("arch_*.json"))) == 2 and "2 blocks of 4 layers" in out


@pytest.mark.parametrize("content, needle", [
    ("{oops", "not valid JSON"),
    ('{"teacher_hidden": 128, "embed_dim": 128, "blocks": [{"hidden": 128, "layers": ["lstm"]}]}', "unknown op"),
    ('{"teacher_hidden": 128, "embed_dim": 128, "blocks": [{"hidden": 100, "layers": ["mha"]}]}',
     "not in the space"),
    ('{"embed_dim": 128}', "missing key"),
])
def test_bad_architectures(capsys, tmp_path, tiny_table, tiny_profile_path, content, needle):
    arch = tmp_path / "a.json"
    arch.write_text(content)
    code, _, err = run(capsys, "predict", "--profile", str(tiny_profile_path), "--table", str(tiny_table),
                       "--arch", str(arch))
    assert_one_line_error(code, err, needle)


def test_bad_devices_and_files(capsys, tmp_path, tiny_table, tiny_profile_path, arch_file):
    code, _, err = run(capsys, "predict", "--device", "tpu", "--arch", arch_file)
    assert_one_line_error(code, err, "unknown device 'tpu'")
    code, _, err = run(capsys, "predict", "--profile", str(tiny_profile_path), "--arch", str(tmp_path / "no.json"),
                       "--table", str(tiny_table))
    assert_one_line_error(code, err, "architecture file not found")
    code, _, err = run(capsys, "predict", "--profile", str(tiny_profile_path), "--arch", arch_file,
                       "--table", str(tmp_path / "none.csv"))
    assert_one_line_error(code, err, "latency table not found")
    code, _, err = run(capsys, "predict", "--profile", str(tiny_profile_path), "--arch", arch_file,
                       "--table", str(tiny_table), "--seq", "-3")
    assert_one_line_error(code, err, "--seq")
    code, _, err = run(capsys, "predict", "--device", "cpu", "--table", str(tiny_table), "--arch", arch_file)
    assert_one_line_error(code, err, "no row for")  # the shipped cpu profile is at seq 128; the tiny table at 16


def test_profile_writes_this_machines_table_which_predict_then_finds(capsys, tmp_path, tiny_teacher,
                                                                     tiny_profile_path, arch_file, monkeypatch):
    monkeypatch.setenv("PIPELINE_TABLES", str(tmp_path / "tables"))
    code, _, err = run(capsys, "predict", "--profile", str(tiny_profile_path), "--arch", arch_file)
    assert_one_line_error(code, err, f"make it with `python -m pipeline profile --profile {tiny_profile_path}`")
    code, _, err = run(capsys, "search", "--profile", str(tiny_profile_path), "--budget", "1s",
                       "--train-dir", str(tmp_path / "none"))
    assert_one_line_error(code, err, "run `train` first")  # the missing supernet is named first
    code, out, _ = run(capsys, "profile", "--profile", str(tiny_profile_path), "--teacher", str(tiny_teacher),
                       "--quiet")
    (made,) = list((tmp_path / "tables" / "tiny-cpu").glob("*.csv"))
    assert code == 0 and f"wrote {made}" in out
    code, out, _ = run(capsys, "predict", "--profile", str(tiny_profile_path), "--arch", arch_file, "--json")
    assert code == 0 and json.loads(out)["table"] == str(made) and json.loads(out)["fingerprint_match"] is True


def test_train_refuses_a_table_that_lacks_the_space(capsys, tmp_path, tiny_teacher_tok, tiny_corpus, tiny_table):
    import pandas as pd

    df = pd.read_csv(tiny_table, dtype=str, keep_default_na=False)
    partial = tmp_path / "partial.csv"
    df[df["name"] != "sepconv7"].to_csv(partial, index=False)  # a table of a space without one op
    code, _, err = run(capsys, "train", "--teacher", str(tiny_teacher_tok), "--corpus", str(tiny_corpus),
                       "--target", "cpu", "--table", str(partial), "--seq-len", "16", "--out", str(tmp_path),
                       "--quiet", "--foreign-table")
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # (transformers' own loading bar comes before it)
    assert last.startswith(f"error: latency table {partial} ") and "sepconv7" in last, err


def test_table_from_another_fingerprint(capsys, tmp_path, tiny_table, arch_file):
    from conftest import write_profile

    two = str(write_profile(tmp_path / "two.yaml", threads=2))  # same runtime, other thread count
    code, _, err = run(capsys, "predict", "--profile", two, "--table", str(tiny_table), "--arch", arch_file)
    assert_one_line_error(code, err, "differs in threads")
    code, out, err = run(capsys, "predict", "--profile", two, "--table", str(tiny_table), "--arch", arch_file,
                         "--json", "--foreign-table")
    assert code == 0 and json.loads(out)["fingerprint_match"] is False and "warning" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_absent_gpu_is_a_one_line_error(capsys, arch_file):
    code, _, err = run(capsys, "benchmark", "--device", "gpu", "--arch", arch_file)
    assert_one_line_error(code, err, "CUDA")
    code, _, err = run(capsys, "profile", "--device", "gpu")
    assert_one_line_error(code, err, "CUDA")


def test_corrupt_table_is_refused_and_kept(capsys, tmp_path, tiny_profile_path, arch_file, tiny_teacher):
    table = tmp_path / "t.csv"
    table.write_text("kind,name\nop,\x00\x00broken")
    before = table.read_bytes()
    code, _, err = run(capsys, "predict", "--profile", str(tiny_profile_path), "--table", str(table),
                       "--arch", arch_file)
    assert_one_line_error(code, err, "corrupt")
    code, _, err = run(capsys, "profile", "--profile", str(tiny_profile_path), "--table", str(table),
                       "--teacher", str(tiny_teacher), "--quiet")
    assert_one_line_error(code, err, "corrupt")
    assert table.read_bytes() == before


def test_teacher_that_is_not_a_bert(capsys, tmp_path, tiny_profile_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    code, _, err = run(capsys, "profile", "--profile", str(tiny_profile_path), "--teacher", str(tmp_path),
                       "--table", str(tmp_path / "t.csv"))
    assert_one_line_error(code, err, "not a BERT")


def test_python_dash_m_in_a_real_process(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "profile" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "pipeline", "predict", "--device", "nope", "--arch", "x.json"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: unknown device")
    assert "Traceback" not in bad.stderr


def test_profile_longer_than_the_teacher_is_a_one_line_error(capsys, tmp_path, tiny_teacher):
    code, _, err = run(capsys, "profile", "--device", "cpu", "--teacher", str(tiny_teacher), "--table",
                       str(tmp_path / "t.csv"), "--quiet")  # cpu measures sequence 128; the tiny teacher has 64
    assert_one_line_error(code, err, "longer than the teacher's 64 positions")
    assert not (tmp_path / "t.csv").exists()


def test_missing_unlabelled_text_is_a_one_line_error(capsys, tmp_path):
    code, _, err = run(capsys, "task", "--student", str(tmp_path), "--unlabeled", str(tmp_path / "none.csv"))
    assert_one_line_error(code, err, "task file not found")
    code, _, err = run(capsys, "run", "--device", "cpu", "--budget", "5ms", "--task", "--task-unlabeled",
                       str(tmp_path / "none.csv"),
                       "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "--task-unlabeled: no such file")


def test_task_quick_scales_only_the_schedules_not_given(capsys, tmp_path, monkeypatch):
    import pipeline.task.job as job

    seen = []
    monkeypatch.setattr(job, "load_task", lambda *a, **k: None)
    monkeypatch.setattr(job, "student_folder", lambda folder: {"name": "s"})
    monkeypatch.setattr(job, "run_task", lambda task, students, backend, out, teacher, cfg, *a, **k:
                        seen.append(cfg) or {"models": []})
    assert run(capsys, "task", "--student", str(tmp_path), "--quick")[0] == 0
    assert run(capsys, "task", "--student", str(tmp_path), "--quick", "--adapt-steps", "7")[0] == 0
    assert (seen[0].steps, seen[0].adapt_steps) == (300, 300)          # TaskConfig.quick()
    assert (seen[1].steps, seen[1].adapt_steps, seen[1].teacher_steps) == (300, 7, 300)


def test_task_teaches_with_the_teacher_the_export_was_made_from(capsys, tmp_path, monkeypatch, tiny_export,
                                                                tiny_teacher):
    import pipeline.task.job as job

    seen = []
    monkeypatch.setattr(job, "load_task", lambda *a, **k: None)
    monkeypatch.setattr(job, "run_task", lambda task, students, backend, out, teacher, *a, **k:
                        seen.append(teacher) or {"models": []})
    export_dir = str(tiny_export[0])
    made_from = json.loads((tiny_export[0] / "export.json").read_text())["teacher"]
    assert run(capsys, "task", "--export-dir", export_dir, "--out", str(tmp_path / "a"))[0] == 0
    assert seen == [made_from]                       # not the default MiniLM
    assert run(capsys, "task", "--export-dir", export_dir, "--teacher", made_from, "--out", str(tmp_path / "b"))[0] == 0
    code, _, err = run(capsys, "task", "--export-dir", export_dir, "--teacher", str(tiny_teacher),
                       "--out", str(tmp_path / "c"))
    assert_one_line_error(code, err, "is not the teacher the students of")
    assert len(seen) == 2
