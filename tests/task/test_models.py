"""Task models: heads, intermediate states, and a teacher that has a head already."""

import torch

from pipeline.model.student import Student
from pipeline.space import Architecture, Block
from pipeline.task.models import bert_task_model, headed_teacher, mean_pool, student_task_model


def test_a_student_gives_its_block_boundaries_in_the_teachers_width():
    arch = Architecture(32, 16, (Block(64, ("mha", "ffn")), Block(48, ("sepconv3",)), Block(32, ("ffn",))),
                        vocab_size=50, max_positions=16)
    model = student_task_model(Student(arch, dropout=0.0), 3).eval()
    ids, mask = torch.randint(0, 50, (4, 10)), torch.ones(4, 10, dtype=torch.int64)
    mask[1, 6:] = 0
    logits, states = model.features(ids, mask)
    assert logits.shape == (4, 3) and model.intermediate_layers == 2
    assert [s.shape for s in states] == [(4, 32), (4, 32)]  # projected from 64 and 48 to the teacher's 32
    torch.testing.assert_close(model(ids, mask), logits)
    final = model.encoder(ids, mask)
    torch.testing.assert_close(logits, model.head(mean_pool(final, mask)))
    torch.testing.assert_close(model.encoder.block_outputs(ids, mask)[-1], final)


def test_a_bert_gives_its_layers_cls_states(tiny_teacher):
    from transformers import BertModel

    model = bert_task_model(BertModel.from_pretrained(tiny_teacher), 2).eval()
    ids, mask = torch.randint(0, 1000, (2, 8)), torch.ones(2, 8, dtype=torch.int64)
    logits, states = model.features(ids, mask, [1, 3])
    out = model.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    torch.testing.assert_close(states[1], out.hidden_states[3][:, 0])
    assert logits.shape == (2, 2) and model.intermediate_layers == 3


def test_a_classifier_teacher_is_used_with_its_head_in_the_tasks_class_order(tiny_teacher, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig.from_pretrained(tiny_teacher, num_labels=2, id2label={0: "motion", 1: "animal"},
                                        label2id={"motion": 0, "animal": 1})
    torch.manual_seed(0)
    original = BertForSequenceClassification(config).eval()
    original.save_pretrained(tmp_path / "clf")
    teacher, why = headed_teacher(str(tmp_path / "clf"), ["animal", "motion"], 2)
    assert teacher is not None and "reordered" in why
    ids, mask = torch.randint(0, 1000, (3, 8)), torch.ones(3, 8, dtype=torch.int64)
    with torch.no_grad():
        torch.testing.assert_close(teacher(ids, mask), original(input_ids=ids, attention_mask=mask).logits[:, [1, 0]])
    assert headed_teacher(str(tmp_path / "clf"), None, 1)[0] is None  # a regression: another head
    none, why = headed_teacher(str(tiny_teacher), ["a", "b"], 2)
    assert none is None and "no sequence-classification head" in why


def test_mean_states_are_the_pooled_intermediate_layers_of_a_student_and_a_bert(tiny_teacher):
    from transformers import BertModel

    arch = Architecture(32, 16, (Block(64, ("mha", "ffn")), Block(32, ("ffn",))), vocab_size=50, max_positions=16)
    student = student_task_model(Student(arch, dropout=0.0), 3).eval()
    ids, mask = torch.randint(0, 50, (4, 10)), torch.ones(4, 10, dtype=torch.int64)
    mask[2, 4:] = 0
    _, states = student.features(ids, mask, pool="mean")
    block = student.encoder.block_outputs(ids, mask)[0]                     # [B, S, 64]
    torch.testing.assert_close(states[0], student.projections[0](mean_pool(block, mask)))
    assert not torch.allclose(states[0], student.features(ids, mask)[1][0])  # not the [CLS] state

    bert = bert_task_model(BertModel.from_pretrained(tiny_teacher), 2).eval()
    ids = torch.randint(0, 1000, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[0, 5:] = 0
    _, states = bert.features(ids, mask, [2], pool="mean")
    out = bert.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    torch.testing.assert_close(states[0][0], out.hidden_states[2][0, :5].mean(0))


def test_token_states_are_every_tokens_and_fit_runs_the_teacher_beside_the_student(tiny_teacher):
    import pytest
    from transformers import BertModel

    from pipeline.task.train import TaskConfig, fit, teacher_targets

    torch.manual_seed(0)
    teacher = bert_task_model(BertModel.from_pretrained(tiny_teacher), 2).eval()
    hidden = teacher.encoder.config.hidden_size
    arch = Architecture(hidden, 16, (Block(32, ("mha", "ffn")), Block(32, ("ffn",))), vocab_size=1000,
                        max_positions=64)
    student = student_task_model(Student(arch, dropout=0.0), 2)
    ids, mask = torch.randint(5, 1000, (3, 7)), torch.ones(3, 7, dtype=torch.int64)
    _, states = student.features(ids, mask, pool="tokens")
    assert states[0].shape == (3, 7, hidden)                               # projected to the teacher's width
    rows = [[2] + torch.randint(5, 1000, (n,)).tolist() + [3] for n in (3, 5, 8, 4)]
    cfg = TaskConfig(pkd_states="tokens", steps=3, batch_size=4)
    targets = teacher_targets(teacher, rows, 0, pool="tokens")
    assert targets[1].shape[1] == 0                                        # not held: fit asks the teacher
    record = fit(student, rows, [0, 1, 0, 1], 0, cfg, False, targets, [1], teacher=teacher)
    assert record["steps"] == 3 and record["loss_last"] > 0
    with pytest.raises(ValueError, match="needs the teacher"):
        fit(student, rows, [0, 1, 0, 1], 0, cfg, False, targets, [1])


def test_student_dropout_acts_in_training_only():
    arch = Architecture(32, 16, (Block(64, ("mha", "ffn")), Block(32, ("sepconv3",))), vocab_size=50,
                        max_positions=16)
    model = student_task_model(Student(arch, dropout=0.0), 3, dropout=0.5)
    assert {m.p for m in model.encoder.modules() if isinstance(m, torch.nn.Dropout)} == {0.5}
    assert model.dropout.p == 0.1  # the head's own (BERT's classifier dropout) is left as it is
    ids, mask = torch.randint(0, 50, (2, 10)), torch.ones(2, 10, dtype=torch.int64)
    torch.manual_seed(0)
    trained = model.train()(ids, mask)
    evaluated = model.eval()(ids, mask)
    assert not torch.allclose(trained, evaluated)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    torch.testing.assert_close(model.train()(ids, mask), evaluated)  # eval mode is the network without dropout
