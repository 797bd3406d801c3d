import pytest
import torch

from pipeline.model.augment import text_views, views_for

CLS, SEP = 101, 102


def _chunks(n: int, s: int) -> torch.Tensor:
    body = torch.arange(1000, 1000 + n * (s - 2)).view(n, s - 2)     # every body token distinct
    return torch.cat([torch.full((n, 1), CLS), body, torch.full((n, 1), SEP)], dim=1)


def test_views_shift_the_text_and_keep_the_special_tokens():
    ids = _chunks(10, 18)                                            # bodies of 16
    v = text_views(ids, views=3, replace=0.0, seed=0)
    assert v.shape == (27, 18)
    assert (v[:, 0] == CLS).all() and (v[:, -1] == SEP).all()
    stream = ids[:, 1:-1].reshape(-1)
    for k, start in enumerate((4, 8, 12)):                           # (k + 1) / 4 of a body in
        view = v[k * 9:(k + 1) * 9, 1:-1].reshape(-1)
        assert torch.equal(view, stream[start:start + 9 * 16])


def test_replaced_share_and_source_of_the_replacements():
    ids = _chunks(200, 66)
    plain = text_views(ids, 2, 0.0, seed=0)
    noisy = text_views(ids, 2, 0.15, seed=0)
    changed = (plain != noisy).float().mean().item()
    assert 0.12 < changed < 0.16                                     # 15%, less the draws of the same token
    assert torch.isin(noisy, ids).all()                              # replacements come from the text itself
    assert torch.equal(noisy, text_views(ids, 2, 0.15, seed=0))      # seeded
    assert not torch.equal(noisy, text_views(ids, 2, 0.15, seed=1))


def test_no_views_of_too_little_text():
    assert text_views(_chunks(1, 10), 3, 0.1, 0).shape == (0, 10)
    assert text_views(_chunks(5, 10), 0, 0.1, 0).shape == (0, 10)
    with pytest.raises(ValueError):
        text_views(_chunks(5, 10), 1, 1.0, 0)


@pytest.mark.parametrize("reads, chunks, max_views, max_chunks, expected", [
    (200 * 16, 3324, 3, 32768, 0),        # run --quick: reads the text once, no views
    (2000 * 16, 3324, 3, 32768, 0),       # run's default: 9 passes, no views
    (4000 * 16, 3324, 3, 32768, 2),       # 19 passes: 2 views
    (6000 * 16, 3324, 3, 32768, 3),       # 28 passes: 3
    (20000 * 16, 3324, 3, 32768, 3),      # capped at 3
    (6000 * 16, 3324, 0, 32768, 0),       # views off
    (6000 * 16, 3324, 3, 8000, 1),        # the states' memory fits the chunks and one view
    (10**6, 1, 3, 32768, 0),
])
def test_views_for(reads, chunks, max_views, max_chunks, expected):
    assert views_for(reads, chunks, max_views, max_chunks) == expected
