"""The task report's preamble says how the students learnt."""

from pipeline.task.report import start_of


def test_the_preamble_names_the_start_and_the_dropout():
    assert start_of({"adapt_steps": 0, "student_head": "random", "student_dropout": 0.0}) == ""
    said = start_of({"adapt_steps": 1500, "student_head": "teacher", "student_dropout": 0.1})
    assert said == ("; the distilled students first adapt their final states to the teacher's for 1500 steps and "
                    "start with the teacher's head and train with dropout 0.1 inside")
    assert start_of({"student_head": "random"}) == ""  # reports written before the field existed
