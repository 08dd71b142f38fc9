import numpy as np
import pytest
import torch

from indad.memory import GreedyCoresetSampler, greedy_k_center, greedy_k_center_plain, random_projection


def slow_greedy_k_center(points: np.ndarray, n: int, start: int) -> list[int]:
    """Algorithm 1 of Roth et al. 2021, written out plainly in float64."""
    chosen = [start]
    while len(chosen) < n:
        best, best_dist = None, -1.0
        for i, p in enumerate(points):
            if i in chosen:
                continue
            nearest = min(float(np.sqrt(((p - points[c]) ** 2).sum())) for c in chosen)
            if nearest > best_dist:
                best, best_dist = i, nearest
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_slow_obvious_version(seed):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(150, 6))
    expected = slow_greedy_k_center(points, 25, start=seed)
    for dtype in (torch.float64, torch.float32):
        x = torch.from_numpy(points).to(dtype)
        assert greedy_k_center_plain(x, 25, start=seed).tolist() == expected
        assert greedy_k_center(x, 25, start=seed, bound_dims=2).tolist() == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_pruned_equals_plain_on_clustered_data(seed):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(20, 64, generator=gen) * 5
    x = centres[torch.randint(20, (4000,), generator=gen)] + torch.randn(4000, 64, generator=gen)
    x[:, :8] *= 4  # a few dominant directions, as in CNN features
    plain = greedy_k_center_plain(x, 400, start=7)
    assert torch.equal(greedy_k_center(x, 400, start=7, bound_dims=8), plain)


def test_duplicates_are_never_chosen_twice():
    x = torch.zeros(50, 4)
    x[:5] = torch.eye(4)[torch.arange(5) % 4] * 3
    idx = greedy_k_center_plain(x, 50, start=0)
    assert sorted(idx.tolist()) == list(range(50))
    assert sorted(greedy_k_center(x, 50, start=0).tolist()) == list(range(50))


def test_covering_radius_beats_random_choice():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 16, generator=gen)
    x[:30] += 25  # a rare mode that random sampling misses
    idx = greedy_k_center(x, 60, start=0)
    rand = torch.randperm(3000, generator=gen)[:60]

    def radius(sel):
        return torch.cdist(x, x[sel]).min(dim=1).values.max()

    assert radius(idx) < radius(rand)


def test_sampler_fraction_and_seed():
    x = torch.randn(1000, 200, generator=torch.Generator().manual_seed(0))
    s = GreedyCoresetSampler(0.1, projection_dim=32, seed=3, progress=False)
    a, b = s.select(x), s.select(x)
    assert a.shape == (100,) and torch.equal(a, b) and a.unique().numel() == 100
    assert GreedyCoresetSampler(1.0).select(x).shape == (1000,)
    with pytest.raises(ValueError, match="fraction"):
        GreedyCoresetSampler(0.0)


def test_random_projection_is_seeded_and_roughly_isometric():
    x = torch.randn(200, 512, generator=torch.Generator().manual_seed(0))
    p1, p2 = random_projection(x, 128, seed=1), random_projection(x, 128, seed=1)
    assert p1.shape == (200, 128) and torch.equal(p1, p2)
    ratio = torch.pdist(p1) / torch.pdist(x)
    assert 0.7 < float(ratio.min()) and float(ratio.max()) < 1.3
    assert random_projection(x[:, :64], 128).shape[1] == 64  # already small enough: unchanged


def test_continuing_from_existing_centres_matches_the_slow_version():
    rng = np.random.default_rng(3)
    old, new = rng.normal(size=(12, 5)), rng.normal(size=(80, 5))
    # Slow: the farthest new point from all centres so far, one at a time.
    centres, expected = list(old), []
    for _ in range(10):
        d = [min(np.linalg.norm(p - c) for c in centres) if i not in expected else -1 for i, p in enumerate(new)]
        expected.append(int(np.argmax(d)))
        centres.append(new[expected[-1]])
    sampler = GreedyCoresetSampler(fraction=10 / 80, projection_dim=0, progress=False)
    assert sampler.extend(torch.from_numpy(old), torch.from_numpy(new)).tolist() == expected
    # A point already among the centres is never chosen again.
    again = sampler.extend(torch.from_numpy(new[:5]), torch.from_numpy(new))
    assert not set(again.tolist()) & set(range(5))
