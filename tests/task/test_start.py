"""A distilled student's start on a task: the teacher's head, and final states adapted to the fine-tuned teacher."""

from dataclasses import replace

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.student import Student
from pipeline.space import Architecture, Block
from pipeline.task.models import HeadedTeacher, bert_task_model, mean_pool, student_task_model
from pipeline.task.start import adapt, final_states, final_states_loss, head_from_teacher, held_states, prepare
from pipeline.task.train import TaskConfig


def tiny_student(hidden: int = 32, vocab: int = 1000) -> Student:
    arch = Architecture(hidden, 16, (Block(48, ("mha", "ffn")), Block(32, ("sepconv3",))), vocab_size=vocab,
                        max_positions=64)
    torch.manual_seed(1)
    return Student(arch, dropout=0.0)


def test_the_final_states_loss_leaves_padding_out_and_matches_a_hand_computation():
    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])             # [1, 3, 2]; the third token is padding
    t = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [-5.0, 3.0]]])
    mask = torch.tensor([[1, 1, 0]])
    relative = (1.0 + 1.0) / (2.0 + 1.0)                                  # squared errors over squared targets
    cosine = (1 / 2 ** 0.5 + 1.0) / 2
    torch.testing.assert_close(final_states_loss(s, t, mask), torch.tensor(relative + 1 - cosine))
    assert float(final_states_loss(t, t, mask)) == pytest.approx(0.0, abs=1e-6)


def test_the_teachers_head_is_copied_where_it_reads_what_the_student_gives(tiny_teacher):
    from transformers import BertModel

    bert = BertModel.from_pretrained(tiny_teacher)
    teacher = bert_task_model(bert, 3).eval()
    student = student_task_model(tiny_student(bert.config.hidden_size), 3).eval()
    assert head_from_teacher(student, teacher)
    ids, mask = torch.randint(0, 1000, (2, 7)), torch.ones(2, 7, dtype=torch.int64)
    with torch.no_grad():  # the student's logits are the teacher's head on the student's own final states
        torch.testing.assert_close(student(ids, mask), teacher.head(mean_pool(student.encoder(ids, mask), mask)))
    other = student_task_model(tiny_student(bert.config.hidden_size), 2)   # another number of classes
    assert not head_from_teacher(other, teacher)
    from transformers import BertConfig, BertForSequenceClassification

    headed = HeadedTeacher(BertForSequenceClassification(BertConfig.from_pretrained(tiny_teacher, num_labels=3)))
    assert not head_from_teacher(student, headed)                          # a [CLS] head through a pooler


def test_adapting_brings_the_students_final_states_to_the_teachers_and_leaves_the_head(tiny_teacher):
    from transformers import BertModel

    bert = BertModel.from_pretrained(tiny_teacher)
    teacher = bert_task_model(bert, 3).eval()
    student = student_task_model(tiny_student(bert.config.hidden_size), 3)
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(5, 1000, (int(n),), generator=g).tolist() for n in torch.randint(4, 12, (40,), generator=g)]
    ids, mask = torch.randint(5, 1000, (8, 10), generator=g), torch.ones(8, 10, dtype=torch.int64)
    mask[3, 5:] = 0
    with torch.no_grad():
        before = float(final_states_loss(final_states(student, ids, mask), final_states(teacher, ids, mask), mask))
    head = student.head.weight.detach().clone()
    cfg = TaskConfig(adapt_steps=60, student_head="teacher", batch_size=8, adapt_lr=3e-3)
    record = prepare(student, teacher, rows, 0, cfg)
    with torch.no_grad():
        after = float(final_states_loss(final_states(student, ids, mask), final_states(teacher, ids, mask), mask))
    assert record["adapt"]["steps"] == 60 and record["head"] == "teacher"
    assert after < 0.7 * before, (before, after)
    assert not torch.equal(head, student.head.weight) and torch.equal(student.head.weight, teacher.head.weight)
    kept = student_task_model(tiny_student(bert.config.hidden_size), 3)
    random_head = kept.head.weight.detach().clone()
    distilled = TaskConfig(adapt_steps=0, student_head="random")      # the start as distilled: nothing done
    assert prepare(kept, teacher, rows, 0, distilled) == {"head": "random"}
    assert torch.equal(random_head, kept.head.weight)


def test_held_teacher_states_adapt_a_student_as_the_teacher_beside_each_step_does(tiny_teacher):
    from transformers import BertModel

    teacher = bert_task_model(BertModel.from_pretrained(tiny_teacher), 3).eval()
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(5, 1000, (int(n),), generator=g).tolist() for n in torch.randint(3, 12, (30,), generator=g)]
    held = held_states(teacher, rows, 0)
    assert [len(h) for h in held] == [len(r) for r in rows]              # each row's own tokens, no padding
    ids = torch.tensor([rows[4]])
    with torch.no_grad():                                                 # the row alone, unpadded
        torch.testing.assert_close(held[4], final_states(teacher, ids, torch.ones_like(ids))[0], atol=1e-5, rtol=0)
    assert held_states(teacher, rows, 0, limit=100) is None               # too large to hold: None
    width = teacher.encoder.config.hidden_size
    beside, holding = (student_task_model(tiny_student(width), 3) for _ in range(2))
    recipe = dict(steps=20, batch_size=8, lr=3e-3, weight_decay=0.01, warmup_frac=0.1, seed=0)
    a = adapt(beside, teacher, rows, 0, **recipe)       # adapt itself: prepare would reuse the first from the cache
    b = adapt(holding, teacher, rows, 0, **recipe, held=held)
    assert a["loss_first"] == pytest.approx(b["loss_first"], rel=1e-4)
    assert a["loss_last"] == pytest.approx(b["loss_last"], rel=1e-3)
    for p, q in zip(beside.parameters(), holding.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-3)


def test_an_adapted_student_is_reused_by_content_and_only_by_it(tiny_teacher, tmp_path, monkeypatch):
    from transformers import BertModel

    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    teacher = bert_task_model(BertModel.from_pretrained(tiny_teacher), 3).eval()
    width = teacher.encoder.config.hidden_size
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(5, 1000, (int(n),), generator=g).tolist() for n in torch.randint(3, 12, (30,), generator=g)]
    cfg = TaskConfig(adapt_steps=20, batch_size=8, adapt_lr=3e-3, student_head="random")
    calls = []

    def held():
        calls.append(1)
        return held_states(teacher, rows, 0)

    first = student_task_model(tiny_student(width), 3)
    done = prepare(first, teacher, rows, 0, cfg, held=held)["adapt"]
    assert calls == [1] and "reused" not in done
    again = student_task_model(tiny_student(width), 3)                  # the same distilled student, a new run
    reused = prepare(again, teacher, rows, 0, cfg, held=held)["adapt"]
    assert calls == [1], "the teacher's states were computed for a reused adaptation"
    assert reused["reused"] and reused["loss_last"] == done["loss_last"]
    for p, q in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    # Anything that changes the adapted encoder is a new entry: the recipe, the text, the student's dropout.
    for other, kept_rows in ((replace(cfg, adapt_steps=21), rows), (cfg, rows[:-1])):
        assert "reused" not in prepare(student_task_model(tiny_student(width), 3), teacher, kept_rows, 0, other,
                                       held=held)["adapt"]
    dropped = student_task_model(tiny_student(width), 3, dropout=0.1)
    assert "reused" not in prepare(dropped, teacher, rows, 0, cfg, held=held)["adapt"]
    assert len(calls) == 4
    # A damaged entry is adapted again, never trusted.
    for f in (tmp_path / "task-adapt").iterdir():
        f.write_bytes(b"cut off")
    assert "reused" not in prepare(student_task_model(tiny_student(width), 3), teacher, rows, 0, cfg)["adapt"]


def test_bad_start_settings_are_one_line_errors():
    with pytest.raises(PipelineError, match="--student-head"):
        TaskConfig(student_head="pretrained")
    with pytest.raises(PipelineError, match="--adapt-steps"):
        TaskConfig(adapt_steps=-1)
