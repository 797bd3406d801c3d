"""Shared fixtures: a tiny BERT teacher built from a config and a fast device profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import load_profile
from pipeline.devices import get_backend
from pipeline.space import SearchSpace
from pipeline.train.blockwise import TrainConfig
from pipeline.train.job import run_train

TINY = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=2, intermediate_size=256,
            vocab_size=1000, max_position_embeddings=64)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 4-layer BERT with random weights saved as a Hugging Face folder."""
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(**TINY)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_space() -> SearchSpace:
    return SearchSpace.from_teacher(TINY["hidden_size"], TINY["num_hidden_layers"], TINY["vocab_size"],
                                    TINY["max_position_embeddings"])


def write_profile(path: Path, **overrides) -> Path:
    settings = dict(name="tiny-cpu", backend="onnxruntime-cpu", precision="fp32", threads=1, batch=1,
                    seq_lens=[16], warmup=1, rounds=2, runs_per_round=3, min_round_s=0.0, stack=2,
                    calibration_archs=3)
    settings.update(overrides)
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="session")
def tiny_profile_path(tmp_path_factory) -> Path:
    return write_profile(tmp_path_factory.mktemp("profiles") / "tiny-cpu.yaml")


@pytest.fixture(scope="session")
def cpu_backend(tiny_profile_path):
    return get_backend(load_profile(tiny_profile_path))


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory, cpu_backend, tiny_space) -> Path:
    """A real (small) profile of the tiny space on ONNX Runtime CPU, measured once per session."""
    from pipeline.profile.probes import profile_device

    path = tmp_path_factory.mktemp("tables") / "tiny-cpu.csv"
    profile_device(cpu_backend, tiny_space, path, progress=False)
    return path


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Tokenised corpora and timing caches go to a temp folder, not the user's ~/.cache; this machine's
    latency tables to another, so that no test sees a table of the repository or of the user."""
    import os

    private = {"PIPELINE_CACHE": tmp_path_factory.mktemp("cache"), "PIPELINE_TABLES": tmp_path_factory.mktemp("tt")}
    old = {k: os.environ.get(k) for k in private}
    os.environ.update({k: str(v) for k, v in private.items()})
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_teacher_tok(tmp_path_factory) -> Path:
    """The tiny BERT with a real WordPiece tokenizer of its 1000-token vocabulary, trained on pydoc text
    (same vocabulary size as the tiny latency table's embedding)."""
    from pydoc_data.topics import topics

    from transformers import BertConfig, BertModel

    from pipeline.model.teacher import load_tokenizer

    tokenizer = load_tokenizer(None).train_new_from_iterator([topics[k] for k in sorted(topics)], TINY["vocab_size"])
    assert len(tokenizer) == TINY["vocab_size"]
    path = tmp_path_factory.mktemp("tiny-bert-tok")
    torch.manual_seed(0)
    config = BertConfig(**TINY)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """About 4k tokens of real English (the start of 40 pydoc topics), documents split by blank lines."""
    from pydoc_data.topics import topics

    docs = [" ".join(topics[k].split()[:60]) for k in sorted(topics)[:40]]
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("\n\n".join(docs))
    return path


# seq 16 matches the tiny latency table, so the bins are hardware-aware; 5 bins x 2 = 10 tau paths.
TINY_TRAIN = TrainConfig(seq_len=16, batch_size=8, lr=3e-3, warmup_steps=5, epochs=4, warmup_epochs=1, bins=5,
                         samples_per_bin=12, keep_per_bin=2, score_batches=1, eval_paths=4, tau_paths=10,
                         tau_steps=3, checkpoint_every=4)


def tiny_train(out, teacher, corpus, table, cfg=TINY_TRAIN, **kw):
    logs = []
    summary = run_train(out, cfg, str(teacher), corpus=str(corpus), table=table, target="tiny-cpu",
                        progress=False, log=logs.append, **kw)
    return summary, logs


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory, tiny_teacher_tok, tiny_corpus, tiny_table):
    """A supernet of the tiny teacher trained once per session: (folder, summary, log lines)."""
    out = tmp_path_factory.mktemp("train")
    summary, logs = tiny_train(out, tiny_teacher_tok, tiny_corpus, tiny_table)
    return out, summary, logs


def summary_only_train_dir(folder: Path, space: SearchSpace) -> Path:
    """A train folder that reads as a trained supernet (its summary only): enough for a stage to get past
    reading it, to the check a test is about."""
    import json

    folder.mkdir(parents=True)
    s = space
    frame = {"teacher_hidden": s.teacher_hidden, "embed_dim": s.embed_dim, "vocab_size": s.vocab_size,
             "max_positions": s.max_positions, "hidden_sizes": list(s.hidden_sizes),
             "layers_per_block": s.layers_per_block, "num_blocks": s.num_blocks}
    (folder / "train_summary.json").write_text(json.dumps({"space": frame, "blocks": []}))
    return folder


def pool_arch(trained, picks):
    """The architecture made of pool entry picks[n] of each block n."""
    from pipeline.space import Architecture, Block

    f = trained.frame
    pairs = zip(trained.pools, picks, strict=True)
    blocks = tuple(Block(pool[i]["hidden"], tuple(pool[i]["layers"])) for pool, i in pairs)
    return Architecture(f.teacher_hidden, f.embed_dim, blocks, f.vocab_size, f.max_positions)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_trained, cpu_backend):
    """Two students of the tiny supernet exported once per session (3 fine-tuning steps, int8 too)."""
    from pipeline.export.job import ExportConfig, Target, run_export
    from pipeline.finetune.distill import DistillConfig
    from pipeline.train.trained import TrainedSupernet

    out_train, _, _ = tiny_trained
    trained = TrainedSupernet(out_train)
    targets = [Target("arch_a", pool_arch(trained, (0, 0)), {"budget_ms": 50.0, "predicted_ms": 0.5}),
               Target("arch_b", pool_arch(trained, (-1, -1)), {"budget_ms": 60.0, "predicted_ms": 0.4})]
    cfg = ExportConfig(finetune=DistillConfig(steps=3, batch_size=4), embed_steps=20, int8=True)
    out = tmp_path_factory.mktemp("export")
    logs = []
    records = run_export(out_train, targets, out, cpu_backend, cfg, log=logs.append)
    return out, records, targets, cfg, logs
