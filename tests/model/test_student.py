import random

import torch

from pipeline.model.student import Student, example_inputs
from pipeline.space import SearchSpace


def test_output_is_in_the_teachers_hidden_space():
    space = SearchSpace.from_teacher(384, 6, vocab_size=1000, max_positions=64)
    arch = space.sample(random.Random(0))
    out = Student(arch).eval()(**example_inputs(2, 20, 1000))
    assert out.shape == (2, 20, 384)


def test_padding_does_not_change_real_tokens():
    space = SearchSpace.from_teacher(256, 4, vocab_size=1000, max_positions=64)
    torch.manual_seed(0)
    model = Student(space.sample(random.Random(3))).eval()
    ids = torch.randint(0, 1000, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.int64)
    mask[0, 10:] = 0
    ids2 = ids.clone()
    ids2[0, 10:] = 7
    with torch.no_grad():
        a, b = model(ids, mask), model(ids2, mask)
    torch.testing.assert_close(a[:, :10], b[:, :10])
