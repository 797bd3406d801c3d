"""A searched architecture as a standalone student with the supernet's weights and folded adapters."""

import torch
import torch.nn.functional as F

from pipeline.finetune.assemble import assemble, fit_embedding, svd_init
from pipeline.model.teacher import load_teacher
from pipeline.space import Architecture, Block
from pipeline.train.trained import TrainedSupernet


def test_embedding_fit_and_folded_student_match_the_chain(tiny_trained, tiny_teacher_tok):
    out, _, _ = tiny_trained
    trained = TrainedSupernet(out)
    teacher = load_teacher(str(tiny_teacher_tok))
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (64, 16))
    f = svd_init(teacher, trained.frame.embed_dim)
    with torch.no_grad():
        before = F.mse_loss(f(ids), teacher.embeddings(input_ids=ids)).item()
    fit_embedding(f, teacher, ids, steps=60, batch_size=16)
    with torch.no_grad():
        after = F.mse_loss(f(ids), teacher.embeddings(input_ids=ids)).item()
    assert after < 0.5 * before

    picked = (trained.pools[0][3], trained.pools[1][7])
    arch = Architecture(128, trained.frame.embed_dim, tuple(Block(e["hidden"], tuple(e["layers"])) for e in picked),
                        trained.frame.vocab_size, trained.frame.max_positions)
    student = assemble(arch, trained, f.eval())
    mask = torch.ones(4, 16, dtype=torch.int64)
    mask[1, 12:] = 0
    with torch.no_grad():
        expected = trained.chain(arch)(f(ids[:4]), mask)
        got = student(ids[:4], mask)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # the adapters between blocks are one matrix each
    assert len(student.adapters) == 1 and student.adapters[0].weight.shape == (picked[1]["hidden"], picked[0]["hidden"])


def test_fitted_embeddings_are_cached_and_a_corrupt_entry_is_refitted(tiny_teacher_tok, tmp_path, monkeypatch):
    import pipeline.finetune.assemble as extract

    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    teacher = load_teacher(str(tiny_teacher_tok))
    ids = torch.randint(0, 1000, (32, 16), generator=torch.Generator().manual_seed(0))
    first, loss = extract.fitted_embedding(teacher, 64, ids, steps=20)
    entries = list((tmp_path / "embeddings").glob("*.pt"))
    assert len(entries) == 1

    def refit(*args, **kw):
        raise AssertionError("refitted although cached")

    monkeypatch.setattr(extract, "fit_embedding", refit)
    again, loss_again = extract.fitted_embedding(teacher, 64, ids, steps=20)
    assert loss_again == loss
    for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    monkeypatch.undo()
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    entries[0].write_bytes(b"not a checkpoint")
    refitted, loss_refit = extract.fitted_embedding(teacher, 64, ids, steps=20)
    assert loss_refit == loss  # the same deterministic fit, written anew
    torch.load(entries[0], weights_only=True)
    other, _ = extract.fitted_embedding(teacher, 64, ids, steps=21)  # other settings: another entry
    assert len(list((tmp_path / "embeddings").glob("*.pt"))) == 2
