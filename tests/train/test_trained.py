"""The trained supernet as the later stages read it: pools, frame, content hash, chained students."""

import json
import shutil

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.train.trained import SUMMARY, TrainedSupernet


def test_pools_frame_and_chain(tiny_trained, tiny_space):
    from conftest import pool_arch

    out, summary, _ = tiny_trained
    trained = TrainedSupernet(out)
    assert trained.num_blocks == tiny_space.num_blocks and len(trained.pools) == tiny_space.num_blocks
    assert trained.frame.teacher_hidden == tiny_space.teacher_hidden and trained.seq_len == summary["config"]["seq_len"]
    arch = pool_arch(trained, (0, 0))
    chain = trained.chain(arch)
    x = torch.randn(2, 16, tiny_space.teacher_hidden)
    assert chain(x, torch.ones(2, 16, dtype=torch.int64)).shape == x.shape
    with pytest.raises(PipelineError, match="architecture has 1 blocks"):
        trained.chain(type(arch)(arch.teacher_hidden, arch.embed_dim, arch.blocks[:1], arch.vocab_size,
                                 arch.max_positions))


def test_content_hash_ignores_when_it_was_written(tiny_trained, tmp_path):
    out, _, _ = tiny_trained
    copy = tmp_path / "t"
    shutil.copytree(out, copy)
    summary = json.loads((copy / SUMMARY).read_text())
    (copy / SUMMARY).write_text(json.dumps({**summary, "written": "another day"}))
    assert TrainedSupernet(copy).content_hash == TrainedSupernet(out).content_hash
    (copy / SUMMARY).write_text(json.dumps({**summary, "missing_blocks": [2]}))
    with pytest.raises(PipelineError, match=r"blocks \[2\] .* are not trained yet"):
        TrainedSupernet(copy)
    with pytest.raises(PipelineError, match="run `train` first"):
        TrainedSupernet(tmp_path / "none")
