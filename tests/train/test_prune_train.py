"""`train --prune`: the teacher's pruned layers trained beside NAS-BERT's ops, from the teacher's weights."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from pipeline.artifacts import content_key
from pipeline.errors import PipelineError
from pipeline.space import SearchSpace
from pipeline.train.blockwise import TrainConfig, config_record, settings_hash
from pipeline.train.trained import TrainedSupernet


@pytest.fixture(scope="module")
def shapes_table(tmp_path_factory, cpu_backend):
    from conftest import TINY

    from pipeline.profile.probes import profile_device

    space = SearchSpace.from_teacher(TINY["hidden_size"], TINY["num_hidden_layers"], TINY["vocab_size"],
                                     TINY["max_position_embeddings"], heads=TINY["num_attention_heads"],
                                     inner=TINY["intermediate_size"])
    path = tmp_path_factory.mktemp("tables") / "tiny-shapes.csv"
    profile_device(cpu_backend, space, path, progress=False)
    return path


@pytest.mark.slow
def test_a_pruned_supernet_trains_its_teacher_paths_and_pools_them(tmp_path, tiny_teacher_tok, tiny_corpus,
                                                                   shapes_table, tiny_table):
    from conftest import TINY_TRAIN, tiny_train

    cfg = replace(TINY_TRAIN, prune="activation")
    summary, logs = tiny_train(tmp_path / "train", tiny_teacher_tok, tiny_corpus, shapes_table, cfg=cfg)
    assert any("ranked the teacher's heads and FFN neurons by activation" in line for line in logs)
    assert summary["space"]["teacher_attention"] == ["att1x64", "att2x64"]
    pooled = [p for b in summary["blocks"] for p in b["pool"]]
    teacher_paths = [p for p in pooled if any(op.startswith("att") and op != "att" or op[3:].isdigit()
                                              for op in p["layers"])]
    assert teacher_paths, "the teacher's own (pruned) layers start from its weights: some reach the pools"
    trained = TrainedSupernet(tmp_path / "train")
    assert trained.teacher_shapes == (("att1x64", "att2x64"), ("ffn64", "ffn128", "ffn192", "ffn256"))
    assert trained.supernet_block(1).layers[1].teacher_ops == ("ffn64", "ffn128", "ffn192", "ffn256")
    # a table without the teacher's shapes is refused before any training, with the command that fixes it
    with pytest.raises(PipelineError, match="--teacher-shapes"):
        tiny_train(tmp_path / "other", tiny_teacher_tok, tiny_corpus, tiny_table, cfg=cfg)
    assert json.loads((tmp_path / "train" / "train_summary.json").read_text())["config"]["prune"] == "activation"


def test_prune_off_keeps_the_key_of_blocks_trained_before_it():
    cfg = TrainConfig()
    old = asdict(cfg)
    del old["prune"]
    key = content_key("train-block", 1, teacher={"t": 1}, corpus={"c": 1}, config=old, block=1, tables={},
                      target=None)
    assert settings_hash({"t": 1}, {"c": 1}, cfg, 1, {}, None) == key
    assert settings_hash({"t": 1}, {"c": 1}, replace(cfg, prune="activation"), 1, {}, None) != key
    # the summary records the same (its hash keys the search, export and benchmark of a run)
    assert "prune" not in config_record(cfg) and config_record(replace(cfg, prune="magnitude"))["prune"] == "magnitude"


def test_prune_needs_the_teachers_weights():
    with pytest.raises(PipelineError, match="needs --init teacher"):
        TrainConfig(prune="magnitude", init="random")
    with pytest.raises(PipelineError, match="prune must be one of"):
        TrainConfig(prune="loudest")


@pytest.mark.slow
def test_a_run_with_prune_searches_exports_and_reports_teacher_shaped_students(tmp_path, tiny_teacher_tok,
                                                                               tiny_corpus, cpu_backend):
    """From nothing: the profile adds the teacher's shapes, training ranks and inherits, the search sees both
    kinds, and whatever it picks exports (ONNX checked against PyTorch) and is benchmarked."""
    from conftest import TINY_TRAIN

    from pipeline.run import RunOptions, run_all

    table = tmp_path / "table.csv"
    o = RunOptions((40.0, 3.0), str(tiny_teacher_tok), str(tiny_corpus), finetune_steps=2, top_t=2, rerank_steps=2,
                   prune="activation", train=replace(TINY_TRAIN, prune="activation"), baselines=False)
    report = run_all(cpu_backend, table, tmp_path / "run", o, progress=False, log=lambda _m: None)
    search = json.loads((tmp_path / "run" / "search" / "search.json").read_text())
    seen = [c["describe"] for r in search["choices"] for c in r["candidates"]]
    assert seen and report["students"]
    pools = json.loads((tmp_path / "run" / "train" / "train_summary.json").read_text())["blocks"]
    assert any(op.startswith("att") for b in pools for p in b["pool"] for op in p["layers"])


def test_the_predictor_prices_teacher_shaped_students(shapes_table):
    import random

    from conftest import TINY

    from pipeline.latency import LatencyTable, Predictor, family
    from pipeline.space import Architecture, Block, adapter_shapes

    p = Predictor(LatencyTable.load(shapes_table), 1, 16)
    space = SearchSpace.from_teacher(TINY["hidden_size"], TINY["num_hidden_layers"], TINY["vocab_size"],
                                     TINY["max_position_embeddings"], heads=2, inner=256)
    cal = p.table.calibration_rows(1, 16)
    assert any(op.startswith("att") for a, _ in cal for b in a.blocks for op in b.layers)  # calibrated on them
    assert family("att1x64@128") == "mha" and family("ffn192@128") == "ffn" and family("linear 128->128") == "fixed"
    small = Block(128, ("att1x64", "ffn64", "identity", "ffn64"))
    large = Block(128, ("att2x64", "ffn256", "att2x64", "ffn256"))
    assert 0 < p.block_ms(small) < p.block_ms(large)
    for seed in range(5):  # the terms the search adds up are the prediction, teacher shapes included
        a = space.sample(random.Random(seed))
        terms = p.base_terms(a.teacher_hidden, a.vocab_size, a.embed_dim, a.max_positions)
        terms = terms + sum(p.block_terms(b) for b in a.blocks)
        terms = terms + sum(p.link_terms(i, o) for i, o in adapter_shapes(a))
        assert abs(float(p.predict_terms(terms)) - p(a)) < 1e-6 * max(1.0, p(a))
    frame = (space.vocab_size, space.max_positions)
    assert p(Architecture(128, 128, (large, large), *frame)) > p(Architecture(128, 128, (small, small), *frame))


def test_teacher_blocks_have_no_adapters_and_the_search_prices_them_so(shapes_table):
    """Between two blocks of the teacher's own layers and after the last, no linear: in the student, in
    the parameter count and in the exact search's sums, which equal the predictor on every combination."""
    from conftest import TINY

    from pipeline.latency import LatencyTable, Predictor
    from pipeline.model.student import Student
    from pipeline.search.exact import search
    from pipeline.space import Architecture, Block, Frame, adapter_shapes, count_params

    own = Block(128, ("att1x64", "ffn128", "identity", "ffn64"))
    nas = Block(128, ("mha", "sepconv3", "identity", "identity"))
    frame = Frame(128, 128, TINY["vocab_size"], TINY["max_position_embeddings"])
    arch = Architecture(128, 128, (own, own), frame.vocab_size, frame.max_positions)
    assert adapter_shapes(arch) == [(128, 128)]  # the embedding's only
    student = Student(arch)
    assert isinstance(student.adapters[0], torch.nn.Identity) and isinstance(student.out_proj, torch.nn.Identity)
    assert count_params(arch) == sum(p.numel() for p in student.parameters())
    mixed = Architecture(128, 128, (own, nas), frame.vocab_size, frame.max_positions)
    assert adapter_shapes(mixed) == [(128, 128)] * 3
    p = Predictor(LatencyTable.load(shapes_table), 1, 16)
    import itertools

    for b1, b2 in itertools.product((own, nas), repeat=2):  # every pair of ends: own-own, own-nas, ...
        pools = [[{"hidden": 128, "layers": list(b1.layers), "val_loss": 0.1}],
                 [{"hidden": 128, "layers": list(b2.layers), "val_loss": 0.1}]]
        (choice,) = search(pools, frame, p, [1e6])
        want = p(Architecture(128, 128, (b1, b2), frame.vocab_size, frame.max_positions))
        assert abs(choice.predicted_ms - want) < 1e-9 * want, (b1, b2)
    both = [[{"hidden": b.hidden, "layers": list(b.layers), "val_loss": loss} for b, loss in ((own, 0.1), (nas, 0.2))]
            for _ in range(2)]
    assert search(both, frame, p, [1e6])[0].arch == arch  # the lowest loss
