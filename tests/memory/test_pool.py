"""A seeded uniform sample of a stream of rows in bounded memory."""

from __future__ import annotations

import torch

from indad.memory.pool import PatchPool


def _rows(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)


def test_the_sample_does_not_depend_on_how_the_stream_is_cut():
    rows = _rows(1000)
    one, many = PatchPool(100, seed=3), PatchPool(100, seed=3)
    one.add(rows)
    for part in rows.split(37):
        many.add(part)
    (a,), (b,) = one.chunks(), many.chunks()
    assert a.shape == (100, 3) and torch.equal(a, b)
    assert bool((a[1:, 0] > a[:-1, 0]).all())  # distinct rows, in stream order
    assert one.seen == many.seen == 1000


def test_fewer_rows_than_the_capacity_are_all_kept_and_the_seed_matters():
    small = PatchPool(50, seed=0)
    small.add(_rows(20))
    assert torch.equal(small.chunks()[0], _rows(20))
    a, b = PatchPool(10, seed=0), PatchPool(10, seed=1)
    a.add(_rows(500))
    b.add(_rows(500))
    assert not torch.equal(a.chunks()[0], b.chunks()[0])
    assert PatchPool(5).chunks() == []


def test_the_sample_is_uniform():
    counts = torch.zeros(40)
    for seed in range(300):
        pool = PatchPool(10, seed=seed)
        for part in _rows(40).split(7):
            pool.add(part)
        counts[pool.chunks()[0][:, 0].long()] += 1
    assert counts.sum() == 3000
    assert float(counts.min()) > 40 and float(counts.max()) < 110  # each row kept 75 times in expectation
