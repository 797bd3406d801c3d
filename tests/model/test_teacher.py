import json
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.model.teacher import load_teacher, load_teacher_config, space_for_teacher


def test_default_teacher_is_offline_minilm():
    c = load_teacher_config(None)
    assert (c.model_type, c.hidden_size, c.num_hidden_layers) == ("bert", 384, 6)
    s = space_for_teacher(None)
    assert (s.num_blocks, s.layers_per_block, s.vocab_size) == (3, 4, 30522)


def test_local_folder(tiny_teacher):
    model = load_teacher(str(tiny_teacher))
    assert model.config.num_hidden_layers == 4
    assert space_for_teacher(str(tiny_teacher)).hidden_sizes == (128,)


def test_a_checkpoint_with_extra_keys_loads_quietly_and_one_lacking_weights_is_refused(tiny_teacher, tmp_path,
                                                                                        capfd):
    import shutil

    from safetensors.torch import load_file, save_file

    weights = load_file(str(tiny_teacher / "model.safetensors"))
    extra, lacking = tmp_path / "extra", tmp_path / "lacking"
    for folder, state in ((extra, {**weights, "cls.predictions.bias": weights["pooler.dense.bias"].clone()}),
                          (lacking, {k: v for k, v in weights.items() if ".layer.1." not in k})):
        folder.mkdir()
        shutil.copyfile(tiny_teacher / "config.json", folder / "config.json")
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    eager = load_teacher(str(extra), attention="eager")
    shown = "".join(capfd.readouterr())
    assert "LOAD REPORT" not in shown and "Loading weights" not in shown  # transformers' key table, its bar
    assert eager.config._attn_implementation == "eager"
    with pytest.raises(PipelineError, match="lacks .* weights"):
        load_teacher(str(lacking))


def test_not_a_bert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64}))
    with pytest.raises(PipelineError, match="not a BERT"):
        load_teacher_config(str(tmp_path))
    with pytest.raises(PipelineError, match="could not load teacher"):
        load_teacher_config(str(tmp_path / "missing"))


def test_cached_teacher_states(tiny_teacher, monkeypatch, tmp_path):
    import torch

    from pipeline.model import teacher as t

    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    model = load_teacher(str(tiny_teacher)).eval()
    ids = torch.randint(0, 100, (5, 12), generator=torch.Generator().manual_seed(0))
    direct = t.teacher_states(model, ids, [4])[4]
    first = t.cached_teacher_states(model, ids, 4)
    assert torch.equal(first, direct)
    (entry,) = (tmp_path / "states").glob("*.pt")

    def no_compute(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(t, "teacher_states", no_compute)
    assert torch.equal(t.cached_teacher_states(model, ids, 4), direct)  # read back, not recomputed
    with pytest.raises(AssertionError):
        t.cached_teacher_states(model, ids[:4], 4)  # other chunks, another entry
    entry.write_bytes(b"not a tensor")
    monkeypatch.undo()
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    assert torch.equal(t.cached_teacher_states(model, ids, 4), direct)  # a corrupt entry is recomputed


def test_states_are_capped_by_memory_and_sampled_in_order():
    import torch

    from pipeline.model import teacher as t

    assert t.chunks_for_states(100, 128, 384, 4) == 100
    per_chunk = 128 * 768 * 4 * 7  # bert-base, 7 block boundaries
    assert t.chunks_for_states(10**9, 128, 768, 7) == t.STATES_BUDGET_BYTES // per_chunk
    ids = torch.arange(50).view(25, 2)
    assert t.sample_chunks(ids, 30, 0) is ids
    sub = t.sample_chunks(ids, 10, 0)
    assert sub.shape == (10, 2) and torch.equal(sub, t.sample_chunks(ids, 10, 0))
    assert sub[:, 0].tolist() == sorted(sub[:, 0].tolist()) and len(set(sub[:, 0].tolist())) == 10


def test_a_teacher_without_its_tokenizer_is_refused(tiny_teacher_tok, tmp_path):
    """transformers made a five-token vocabulary from a folder without tokenizer files: every word [UNK]."""
    import shutil

    from pipeline.model.teacher import load_tokenizer

    assert len(load_tokenizer(str(tiny_teacher_tok))) == 1000
    folder = tmp_path / "t"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(tiny_teacher_tok / name, folder / name)
    with pytest.raises(PipelineError, match="tokenizer has .* tokens for the model's 1000 embeddings"):
        load_tokenizer(str(folder))


@pytest.mark.parametrize("model_type", ["bert", "evil"])
def test_a_teachers_own_code_never_runs(tiny_teacher_tok, tmp_path, model_type, monkeypatch):
    """A folder whose config names its own code (auto_map): transformers asked on the terminal whether to run
    it, and ran it on a yes. Here it is never run and never asked about."""
    import shutil

    from pipeline.model.teacher import load_teacher, load_tokenizer

    folder = Path(shutil.copytree(tiny_teacher_tok, tmp_path / "t"))
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import BertConfig as EvilConfig\n"
    (folder / "evil.py").write_text(code)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr("builtins.input", lambda *_: pytest.fail("asked on the terminal"))
    if model_type == "bert":  # transformers' own BertConfig is used, not the folder's
        load_teacher(str(folder))
        load_tokenizer(str(folder))
    else:
        with pytest.raises(PipelineError):
            load_teacher(str(folder))
    assert not marker.exists()


@pytest.mark.parametrize("field, value", [("num_hidden_layers", None), ("hidden_size", "wide")])
def test_a_teacher_config_with_a_field_of_the_wrong_type_is_one_line(tiny_teacher_tok, tmp_path, field, value):
    """huggingface_hub's strict validation of a config's fields raised its own error type: a traceback."""
    import shutil

    folder = Path(shutil.copytree(tiny_teacher_tok, tmp_path / "t"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(PipelineError, match="could not load teacher"):
        load_teacher_config(str(folder))
