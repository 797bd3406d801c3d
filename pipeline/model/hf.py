"""A student as a Hugging Face-style folder: config.json, model.safetensors, tokenizer files, the
network's source, and the teacher's sentence-transformers modules when it has them.

    from pipeline.model.hf import load_student
    model, tokenizer = load_student("runs/cpu/export/arch_3ms/model")
    batch = tokenizer(["a sentence"], return_tensors="pt")
    states = model(batch["input_ids"], batch["attention_mask"])   # [B, S, teacher_hidden]

The model is a plain torch module (pipeline.model.student.Student), trainable as it is, so downstream
fine-tuning puts a head on its output states exactly as on the teacher's `last_hidden_state`.
config.json holds the architecture JSON plus where the student came from.

Without this project, the folder loads where its teacher does: the files of pipeline.portable are
copied into it verbatim and config.json's auto_map names them, so that
`transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)` builds the same network
(its output's `last_hidden_state` is load_student's states), and with the teacher's modules.json,
pooling and normalisation copied too, `SentenceTransformer(folder, trust_remote_code=True)` encodes
as the teacher's pipeline does. A teacher without them (a plain BERT) gives none, and
sentence-transformers then falls back to mean pooling without normalisation.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

import pipeline.portable
from pipeline.artifacts import inside, write_atomic, write_folder_atomic, write_json_atomic
from pipeline.errors import PipelineError
from pipeline.model.student import Student
from pipeline.space import architecture_from_dict

# configuration_nasbert.NasBertStudentConfig.model_type too (a test checks); not imported from there,
# which would import transformers with this module.
MODEL_TYPE = "nasbert-student"
WEIGHTS = "model.safetensors"
PORTABLE = Path(pipeline.portable.__file__).parent
AUTO_MAP = {"AutoConfig": "configuration_nasbert.NasBertStudentConfig",
            "AutoModel": "modeling_nasbert.NasBertStudentModel"}
# A sentence-transformers folder's own files: the module list, the transformer module's settings (max_seq_length...)
# and the whole model's (prompts, similarity function).
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def copy_sentence_modules(teacher: str | Path, folder: str | Path) -> list[str]:
    """Copy a sentence-transformers teacher's module list and every module after the transformer
    (pooling, normalisation, dense...) into the student folder, whose root is the transformer module;
    the names copied, none when the teacher is a plain Hugging Face model (no modules.json)."""
    teacher, folder = Path(teacher), Path(folder)
    try:
        modules = json.loads((teacher / "modules.json").read_text())
    except FileNotFoundError:
        return []
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PipelineError(f"{teacher / 'modules.json'} is corrupt (not JSON)") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise PipelineError(f"{teacher / 'modules.json'} is not a list of modules")
    transformer = [m for m in modules if str(m.get("type", "")).endswith("Transformer")]
    if len(transformer) != 1:
        raise PipelineError(f"{teacher / 'modules.json'} does not hold exactly one Transformer module")
    where = f"{teacher / 'modules.json'} module path"  # a path read from a file (a hub's, maybe) never leaves
    home = inside(teacher, transformer[0].get("path") or ".", where)  # its sentence_bert_config.json's folder
    copied = []
    for name in SENTENCE_FILES[1:]:
        for src in (home / name, teacher / name):
            if src.is_file():
                write_atomic(folder / name, lambda tmp, src=src: shutil.copyfile(src, tmp))
                copied.append(name)
                break
    for m in modules:
        if m is transformer[0] or not m.get("path"):  # Normalize may have no folder
            continue
        src, dst = inside(teacher, m["path"], where), inside(folder, m["path"], where)
        if dst.exists() and not dst.is_dir():  # config.json, ops.py...: the student's own files come first
            raise PipelineError(f"{where}: {m['path']!r} is the name of one of the student folder's own files; "
                                "rename that module's folder in the teacher")
        if src.is_dir():
            write_folder_atomic(dst, lambda tmp, src=src: shutil.copytree(src, tmp, dirs_exist_ok=True), replace=True)
            copied.append(m["path"])
    # The student folder is the transformer module: it sits at the root whatever the teacher's layout.
    write_json_atomic(folder / "modules.json", [{**m, "path": ""} if m is transformer[0] else m for m in modules])
    return ["modules.json", *copied]


@functools.lru_cache(maxsize=8)  # export asks once per student; a plain id's failed hub query once per process
def sentence_modules_folder(teacher: str | Path, cache_dir: str | Path | None = None) -> Path | None:
    """Where a teacher's sentence-transformers files lie: its folder, or for a Hugging Face id its snapshot
    in the hub cache, the module files fetched into it where the hub can be reached (from_pretrained
    fetches only the transformer's). None for an id whose files can be had from neither (offline, or
    not a model of the hub), and for an id that lists modules whose folders cannot be had."""
    if Path(teacher).is_dir():
        return Path(teacher)
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError:
        return None

    def fetch(offline: bool, **kw: Any) -> str | None:
        try:
            if "filename" in kw:
                return hf_hub_download(str(teacher), cache_dir=cache_dir, local_files_only=offline, **kw)
            return snapshot_download(str(teacher), cache_dir=cache_dir, local_files_only=offline, **kw)
        except Exception:  # noqa: BLE001 - not cached, offline, not on the hub, no such file: all mean "none"
            return None

    listing = fetch(True, filename="modules.json") or fetch(False, filename="modules.json")
    if listing is None:
        return None
    try:
        modules = json.loads(Path(listing).read_text())
        folders = {m["path"] for m in modules if m.get("path") and not str(m.get("type", "")).endswith("Normalize")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # copy_sentence_modules says what is wrong with a listing it is given; here there is none
    patterns = [*SENTENCE_FILES, *(f"{f}/*" for f in folders)]
    home = Path(listing).parent
    if any(not (home / f).is_dir() for f in folders):
        got = fetch(False, allow_patterns=patterns)
        home = Path(got) if got else home
    return home if all((home / f).is_dir() for f in folders) else None


def save_student(student: Student, folder: str | Path, tokenizer=None, meta: dict[str, Any] | None = None,
                 sentence_modules_from: str | Path | None = None) -> Path:
    """Write the folder as a whole (atomic: a folder there is replaced by the new one, never mixed with it);
    tokenizer is a transformers tokenizer or None; sentence_modules_from is the teacher's folder, whose
    sentence-transformers modules are copied."""
    state = {k: v.detach().contiguous() for k, v in student.state_dict().items()}

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        for name in pipeline.portable.FILES:  # verbatim: tests/model/test_hf.py checks they match the package
            shutil.copyfile(PORTABLE / name, tmp / name)
        if sentence_modules_from is not None:
            copy_sentence_modules(sentence_modules_from, tmp)
        config = {
            "model_type": MODEL_TYPE,
            "architectures": ["NasBertStudentModel"],
            "auto_map": AUTO_MAP,
            "loader": "pipeline.model.hf.load_student",
            "torch_dtype": "float32",
            "hidden_size": student.arch.teacher_hidden,  # of the output states, as the teacher's
            "vocab_size": student.arch.vocab_size,
            "max_position_embeddings": student.arch.max_positions,
            "architecture": student.arch.to_dict(),
            **(meta or {}),
        }
        write_json_atomic(tmp / "config.json", config)

    return write_folder_atomic(folder, write, replace=True)


def load_student(folder: str | Path, with_tokenizer: bool = True) -> tuple[Student, Any]:
    """(Student in eval mode, tokenizer or None) from a folder written by save_student."""
    folder = Path(folder)
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{folder} is not a student folder ({path.name} is missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PipelineError(f"{path} is corrupt (not JSON)") from None
    if config.get("model_type") != MODEL_TYPE:
        raise PipelineError(f"{folder} holds a {config.get('model_type')!r} model, not a {MODEL_TYPE}")
    student = Student(architecture_from_dict(config["architecture"], where=f"{path}"), dropout=0.0)
    try:
        state = load_file(str(folder / WEIGHTS))
    except FileNotFoundError:
        raise PipelineError(f"{folder / WEIGHTS} is missing") from None
    except Exception as e:
        raise PipelineError(f"{folder / WEIGHTS} is corrupt ({type(e).__name__})") from None
    try:
        student.load_state_dict(state)
    except RuntimeError as e:
        raise PipelineError(f"{folder / WEIGHTS} does not fit its config: {str(e).splitlines()[0]}") from None
    tokenizer = None
    if with_tokenizer and (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer, PretrainedConfig

        # Without a config AutoTokenizer reads config.json, whose auto_map would have it ask to run the
        # folder's code (or warn) only to learn the model type; tokenizer_config.json names the class.
        tokenizer = AutoTokenizer.from_pretrained(str(folder), config=PretrainedConfig(), trust_remote_code=False)
    return student.eval(), tokenizer

