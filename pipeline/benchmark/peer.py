"""The cheap peer: model2vec's static token embeddings, distilled from the same teacher.

What a user would try first for speed: model2vec passes every token of the teacher's vocabulary
through the teacher once (no training data) and keeps one vector per token; a text's embedding is
the mean of its tokens' vectors. It needs no search, no training and no accelerator, so the report
says what a searched student buys over it. It is distilled with no PCA, so its vectors stay in the
teacher's width and space and its cosine to the teacher means what a student's does.

It runs in numpy on the host CPU whatever the device is; its runner times model2vec's own code
after tokenisation (lookup and mean of the bound ids, then normalisation), as the other models are
timed on token ids.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.artifacts import cache_kind, content_key, write_folder_atomic
from pipeline.devices.base import Runner
from pipeline.errors import PipelineError
from pipeline.model.teacher import quiet_loading

PEER_NAME = "model2vec"
RUNS_ON = "numpy on the host CPU (model2vec)"


def peer_folder(teacher_key: str) -> Path:
    return cache_kind("model2vec") / content_key("model2vec", 1, teacher=teacher_key, pca_dims=None)


def load_peer(teacher_path: str, teacher_key: str, log: Callable[[str], None] = print) -> Any:
    """model2vec's StaticModel of the teacher at `teacher_path`, distilled once per teacher content
    (`teacher_key`, the hash of its weights) and kept in $PIPELINE_CACHE/model2vec."""
    try:
        from model2vec import StaticModel
        from model2vec.distill import distill
    except ImportError:
        raise PipelineError("the cheap peer needs model2vec: pip install 'model2vec[distill]'") from None
    folder = peer_folder(teacher_key)
    if (folder / "model.safetensors").is_file():
        try:
            model = StaticModel.from_pretrained(str(folder))
            os.utime(folder)  # its last use, for `cache clear --older-than`
            return model
        except Exception:  # damaged: distilled again, never trusted
            shutil.rmtree(folder, ignore_errors=True)
    log(f"distilling the model2vec peer from the teacher (once per teacher; cached in {folder.parent}) ...")
    start = time.perf_counter()
    with quiet_loading():  # model2vec loads the teacher through transformers
        model = distill(model_name=teacher_path, pca_dims=None)
    try:  # atomic: a half-written folder is never taken for a model
        write_folder_atomic(folder, lambda tmp: model.save_pretrained(str(tmp)))
    except OSError:
        if not folder.is_dir():  # else another process got there first
            raise
    log(f"model2vec peer: {model.embedding.shape[0]} token vectors of {model.dim} in "
        f"{time.perf_counter() - start:.0f} s")
    return model


def peer_embeddings(model: Any, texts: list[str]) -> torch.Tensor:
    """Normalised sentence embeddings [N, D] of texts, by model2vec's own encode."""
    out = torch.from_numpy(np.asarray(model.encode(texts), dtype=np.float64))
    return torch.nn.functional.normalize(out, dim=-1)


class PeerRunner(Runner):
    """model2vec on `batch` texts of `seq` token ids each (random ids of its vocabulary, as the students'
    example inputs are): timed from the ids to the normalised embeddings."""

    def __init__(self, model: Any, batch: int, seq: int, seed: int = 0):
        self.model = model
        rng = np.random.default_rng(seed)
        self.ids = [rng.integers(0, model.embedding.shape[0], seq).tolist() for _ in range(batch)]

    def run(self) -> np.ndarray:
        out = np.stack([self.model._encode_helper(ids).mean(axis=0) for ids in self.ids])
        if self.model.normalize:
            out = out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-32)
        return out.astype(np.float32)

    def timed_run(self) -> float:
        start = time.perf_counter()
        self.run()
        return (time.perf_counter() - start) * 1000

    def close(self) -> None:
        """Drop this runner's hold on the model and its bound inputs (the report keeps its own reference to
        the model for its quality): no runtime, thread pool or device memory to release."""
        self.model = None
        self.ids = []
