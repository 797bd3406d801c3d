"""Every file the tool reads, cut off, emptied or replaced by random bytes: a one-line error naming
the file and what to do (never a traceback, and the damaged file is left as it was), or, for caches
and partial measurements that the tool made itself, the work done again."""

import json
import random
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main

DAMAGES = ("truncated", "empty", "random")


def damage(path: Path, how: str) -> bytes:
    data = path.read_bytes()
    new = {"truncated": data[: max(1, len(data) // 2)], "empty": b"",
           "random": random.Random(len(data)).randbytes(max(64, min(len(data), 4096)))}[how]
    path.write_bytes(new)
    return new


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_teacher_tok, tiny_corpus, tiny_table, cpu_backend):
    """One tiny run (train, search, export; no baselines): the artifacts that later stages read."""
    from conftest import TINY_TRAIN

    from pipeline.run import RunOptions, run_all

    out = tmp_path_factory.mktemp("damage-run")
    table = out / "table.csv"
    shutil.copy(tiny_table, table)
    o = RunOptions((40.0,), str(tiny_teacher_tok), str(tiny_corpus), finetune_steps=2, top_t=1, rerank="none",
                   baselines=False, train=TINY_TRAIN)
    run_all(cpu_backend, table, out, o, progress=False, log=lambda *_: None)
    return out


def check_one_line_error(capsys, argv: list[str], name: Path) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == 1, err
    last = err.strip().splitlines()[-1]  # transformers may print its own loading bar before it
    assert last.startswith("error: ") and str(name) in last, err


# (file in the run folder, the command that reads it); {run}, {profile} and {arch} are filled in.
CASES = {
    "table": ("table.csv", ["predict", "--profile", "{profile}", "--table", "{run}/table.csv", "--arch", "{arch}"]),
    "table-profile": ("table.csv", ["profile", "--profile", "{profile}", "--table", "{run}/table.csv",
                                    "--teacher", "{teacher}", "--quiet"]),
    "architecture": ("search/arch_40ms.json", ["predict", "--profile", "{profile}", "--table", "{run}/table.csv",
                                               "--arch", "{arch}"]),
    "train-summary": ("train/train_summary.json", ["search", "--profile", "{profile}", "--table", "{run}/table.csv",
                                                   "--train-dir", "{run}/train", "--budget", "1s", "--rerank",
                                                   "none", "--out", "{run}/s2"]),
    "supernet-weights": ("train/block_1/supernet.pt", ["export", "--profile", "{profile}", "--arch", "{arch}",
                                                       "--train-dir", "{run}/train", "--out", "{run}/e2", "--quiet"]),
    "search-record": ("search/search.json", ["export", "--profile", "{profile}", "--search-dir", "{run}/search",
                                             "--train-dir", "{run}/train", "--out", "{run}/e2", "--quiet"]),
    "search-architecture": ("search/arch_40ms.json", ["export", "--profile", "{profile}", "--search-dir",
                                                      "{run}/search", "--train-dir", "{run}/train", "--out",
                                                      "{run}/e2", "--quiet"]),
}
BENCH = ["benchmark", "--profile", "{profile}", "--table", "{run}/table.csv", "--export-dir", "{run}/export",
         "--out", "{run}/b2", "--no-baselines", "--json"]
for name, rel in {"export-record": "export/export.json", "student-config": "export/arch_40ms/model/config.json",
                  "student-weights": "export/arch_40ms/model/model.safetensors",
                  "student-onnx": "export/arch_40ms/model.opt.onnx"}.items():
    CASES[name] = (rel, BENCH)


@pytest.mark.slow
@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_artifact_is_a_one_line_error(case, how, tiny_run, tmp_path, tiny_profile_path, tiny_teacher_tok,
                                              capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    rel, argv = CASES[case]
    # the records name absolute paths of the original run: point them at the copy
    for record in run.rglob("*.json"):
        text = record.read_text()
        if str(tiny_run) in text:
            record.write_text(text.replace(str(tiny_run), str(run)))
    arch = run / "search" / "arch_40ms.json"
    if case not in ("architecture", "search-architecture"):
        shutil.copy(arch, tmp_path / "arch.json")
        arch = tmp_path / "arch.json"
    fill = {"run": str(run), "profile": str(tiny_profile_path), "arch": str(arch), "teacher": str(tiny_teacher_tok)}
    target = run / rel
    left = damage(target, how)
    check_one_line_error(capsys, [a.format(**fill) for a in argv], target)
    assert target.read_bytes() == left  # the damaged file is kept as it was, for the user to look at


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_profile_is_a_one_line_error(how, tmp_path, tiny_profile_path, capsys):
    bad = tmp_path / "p.yaml"
    shutil.copy(tiny_profile_path, bad)
    damage(bad, how)
    check_one_line_error(capsys, ["predict", "--profile", str(bad), "--arch", str(tmp_path / "a.json")], bad)


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_corpus_is_a_one_line_error(how, tmp_path, tiny_corpus, tiny_teacher_tok, capsys):
    from pipeline.errors import PipelineError
    from pipeline.model.corpus import load_corpus
    from pipeline.model.teacher import load_tokenizer

    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in tiny_corpus.read_text().split("\n\n")))
    damage(jsonl, how)
    with pytest.raises(PipelineError, match=str(jsonl)) as e:
        load_corpus(load_tokenizer(str(tiny_teacher_tok)), 16, str(jsonl))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_text_corpus_is_a_one_line_error_or_read(how, tmp_path, tiny_corpus, tiny_teacher_tok):
    from pipeline.errors import PipelineError
    from pipeline.model.corpus import load_corpus
    from pipeline.model.teacher import load_tokenizer

    text = tmp_path / "c.txt"
    shutil.copy(tiny_corpus, text)
    damage(text, how)
    tok = load_tokenizer(str(tiny_teacher_tok))
    if how == "truncated":  # half a text file is still text: it is read, and is shorter
        assert load_corpus(tok, 16, str(text)).train.shape[0] > 0
        return
    with pytest.raises(PipelineError, match=str(text)):
        load_corpus(tok, 16, str(text))


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_caches_are_rebuilt(how, tiny_corpus, tiny_teacher_tok):
    """The tokenised corpus and the teacher's states in $PIPELINE_CACHE: recomputed, never trusted."""
    import torch

    from pipeline.artifacts import cache_dir
    from pipeline.model.corpus import load_corpus
    from pipeline.model.teacher import cached_teacher_states, load_teacher, load_tokenizer

    tok = load_tokenizer(str(tiny_teacher_tok))
    first = load_corpus(tok, 16, str(tiny_corpus))
    teacher = load_teacher(str(tiny_teacher_tok))
    states = cached_teacher_states(teacher, first.validation, 2)
    for sub in ("corpus", "states"):
        for f in (cache_dir() / sub).glob("*.pt"):
            damage(f, how)
    again = load_corpus(tok, 16, str(tiny_corpus))
    assert torch.equal(again.train, first.train) and torch.equal(again.validation, first.validation)
    assert torch.allclose(cached_teacher_states(teacher, first.validation, 2), states)


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_partial_profile_is_measured_again(how, tmp_path, cpu_backend, tiny_space):
    from pipeline.latency import LatencyTable
    from pipeline.profile.probes import partial_path, profile_device

    table = tmp_path / "t.csv"
    partial = partial_path(table)
    partial.write_text(json.dumps({"fingerprint": "x", "samples": [[[1.0]]]}))
    damage(partial, how)
    profile_device(cpu_backend, tiny_space, table, progress=False)
    assert len(LatencyTable.load(table).df) and not partial.exists()


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_training_files(how, tiny_trained, tmp_path):
    """A block's result is retrained; its checkpoint is an error that says to delete it or --force."""
    from pipeline.errors import PipelineError
    from pipeline.train.blockwise import _load_checkpoint
    from pipeline.train.job import _result

    out, _, _ = tiny_trained
    result = tmp_path / "block_1" / "result.json"
    result.parent.mkdir()
    shutil.copy(out / "block_1" / "result.json", result)
    damage(result, how)
    assert _result(result.parent) is None
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"x" * 1000)
    damage(ckpt, how)
    with pytest.raises(PipelineError, match=f"checkpoint {ckpt} is corrupt .*delete it or pass --force"):
        _load_checkpoint(ckpt, "settings")


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_damaged_teacher_is_a_one_line_error(name, how, tiny_teacher, tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.model.teacher import load_teacher

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    damage(teacher / name, how)
    with pytest.raises(PipelineError, match=str(teacher)) as e:
        load_teacher(str(teacher))
    assert "\n" not in str(e.value)
