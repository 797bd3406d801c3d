"""Where task training runs (--task-device): the steps on the compute device, the models back on the CPU."""

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.student import Student
from pipeline.options import options_of
from pipeline.space import Architecture, Block
from pipeline.task.models import bert_task_model, student_task_model
from pipeline.task.start import held_states, prepare
from pipeline.task.train import TaskConfig, fit, teacher_targets

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _teacher(tiny_teacher):
    from transformers import BertModel

    torch.manual_seed(0)
    return bert_task_model(BertModel.from_pretrained(tiny_teacher), 2).eval()


def _student(hidden: int):
    torch.manual_seed(1)
    arch = Architecture(hidden, 16, (Block(32, ("mha", "ffn")), Block(32, ("sepconv3",))), vocab_size=1000,
                        max_positions=64)
    return student_task_model(Student(arch, dropout=0.0), 2)


def _rows(n: int = 24):
    g = torch.Generator().manual_seed(0)
    return [[2] + torch.randint(5, 1000, (int(k),), generator=g).tolist() + [3]
            for k in torch.randint(3, 12, (n,), generator=g)]


def _train_everything(teacher, device: str):
    """The task stage's steps for one student on `device`: targets, held states, adaptation, PKD."""
    rows, labels = _rows(), [i % 2 for i in range(24)]
    cfg = TaskConfig(steps=12, batch_size=8, adapt_steps=6, adapt_lr=3e-3, lr=1e-3, device=device)
    targets = teacher_targets(teacher, rows, 0, device=device)                 # [24, 2], [24, L - 1, T]
    held = held_states(teacher, rows, 0, device=device)
    student = _student(teacher.encoder.config.hidden_size)
    start = prepare(student, teacher, rows, 0, cfg, held=held)
    record = fit(student, rows, labels, 0, cfg, False, targets, [1])
    return targets, held, start["adapt"], record, student


def test_task_training_on_the_cpu_records_where_it_ran_and_leaves_every_model_there(tiny_teacher):
    teacher = _teacher(tiny_teacher)
    targets, held, adapted, record, student = _train_everything(teacher, "cpu")
    assert adapted["device"] == "cpu" and record["device"] == "cpu" and record["loss_last"] > 0
    assert all(h.device.type == "cpu" for h in held) and targets[0].device.type == "cpu"
    for model in (student, teacher):
        assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_an_unknown_or_absent_task_device_is_a_one_line_error(tiny_teacher):
    with pytest.raises(PipelineError, match="--task-device 'tpu'"):
        TaskConfig(device="tpu")
    with pytest.raises(PipelineError, match="--student-dropout must be in"):
        TaskConfig(student_dropout=1.0)
    with pytest.raises(PipelineError, match="--task-lr must be positive"):
        TaskConfig(lr=0.0)
    if not torch.cuda.is_available():
        teacher = _teacher(tiny_teacher)
        with pytest.raises(PipelineError, match="CUDA"):
            fit(teacher, _rows(), [0, 1] * 12, 0, TaskConfig(steps=2, device="gpu"), False)


def test_the_task_device_reaches_the_recipe_from_task_and_from_run(tmp_path):
    from pipeline.cli.parser import RUN_FLAGS, TASK_FLAGS, build_parser
    from pipeline.run import RunOptions, task_config

    args = build_parser().parse_args(["task", "--export-dir", "x", "--task-device", "cpu"])
    assert TaskConfig(**options_of(args, TaskConfig, TASK_FLAGS)).device == "cpu"
    args = build_parser().parse_args(["run", "--budget", "4x", "--task", "--finetune-device", "cpu", "--quick"])
    o = RunOptions((), **options_of(args, RunOptions, ["teacher", "corpus", "dataset", *RUN_FLAGS]))
    assert task_config(o) == TaskConfig(device="cpu").quick()              # where the export's fine-tuning runs
    unlabeled = tmp_path / "u.txt"
    unlabeled.write_text("some text\n")
    assert task_config(RunOptions((), task_unlabeled=str(unlabeled), seed=2)) == TaskConfig(seed=2, transfer=True)
    # unlabelled text is learnt from unless the user says not to
    for argv, transfer in ([], True), (["--no-transfer"], False), (["--unlabeled", str(unlabeled), "--no-transfer"],
                                                                    False):
        args = build_parser().parse_args(["task", "--export-dir", "x", *argv])
        assert TaskConfig(**options_of(args, TaskConfig, TASK_FLAGS)).transfer is transfer


@pytest.mark.gpu
@CUDA
def test_task_training_on_cuda_matches_the_cpu_and_returns_the_models_to_the_cpu(tiny_teacher):
    runs = {device: _train_everything(_teacher(tiny_teacher), device) for device in ("cpu", "gpu")}
    (t_cpu, h_cpu, a_cpu, r_cpu, _), (t_gpu, h_gpu, a_gpu, r_gpu, s_gpu) = runs["cpu"], runs["gpu"]
    assert a_gpu["device"] == "cuda" and r_gpu["device"] == "cuda"
    torch.testing.assert_close(t_gpu, t_cpu, atol=1e-4, rtol=1e-3)           # targets and held states alike
    for g, c in zip(h_gpu, h_cpu, strict=True):
        assert g.device.type == "cpu"
        torch.testing.assert_close(g, c, atol=1e-4, rtol=1e-3)
    # The same seeded batches on both: the curves agree to float error, not bit for bit.
    assert a_gpu["loss_last"] == pytest.approx(a_cpu["loss_last"], rel=1e-2)
    assert r_gpu["loss_last"] == pytest.approx(r_cpu["loss_last"], rel=1e-2)
    assert {p.device.type for p in s_gpu.parameters()} == {"cpu"}
