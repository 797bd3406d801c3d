"""Imports only go downward: a module imports modules of lower layers (or its own folder), and no
stage imports another stage's command module (job.py); only run and the CLI chain the stages."""

import re
from pathlib import Path

import pipeline

# lower number = lower layer; modules of one layer do not import each other, except where noted
LAYERS = {
    "errors": 0, "schedule": 0,
    "portable": 0,  # imports nothing of the pipeline (student folders carry it)
    "artifacts": 1, "budget": 1, "textfiles": 1,
    "options": 1,  # its float type raises errors.PipelineError
    "config": 2, "space": 2, "onnxio": 2, "cache": 2,
    "model": 3, "devices": 3, "latency": 3,
    "tables": 4, "compute": 4,
    "profile": 5, "train": 6, "finetune": 7, "search": 8, "export": 9, "benchmark": 10, "task": 11,
    "run": 12, "cli": 13, "__main__": 14,
}
SIBLINGS = {("devices", "model"), ("latency", "devices"), ("latency", "model"), ("devices", "latency")}
ROOT = Path(pipeline.__file__).parent


def _imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts == ("__init__",):
            continue
        for name in re.findall(r"^\s*(?:from|import) pipeline\.([\w.]+)", path.read_text(), re.M):
            found.append((str(path.relative_to(ROOT)), parts[0], name))
    return found


def test_every_module_has_a_layer():
    tops = {p.relative_to(ROOT).with_suffix("").parts[0] for p in ROOT.rglob("*.py")} - {"__init__"}
    assert tops <= set(LAYERS), f"give {sorted(tops - set(LAYERS))} a layer"


def test_imports_only_go_down():
    up = [f"{path} imports pipeline.{name}" for path, top, name in _imports()
          if (dep := name.split(".")[0]) != top and LAYERS[dep] >= LAYERS[top] and (top, dep) not in SIBLINGS]
    assert not up, "\n".join(up)


def test_no_stage_imports_another_stages_command_module():
    bad = [f"{path} imports pipeline.{name}" for path, top, name in _imports()
           if name.endswith(".job") and name.split(".")[0] != top and top not in ("run", "cli")]
    assert not bad, "\n".join(bad)
