import numpy as np
import pytest
import torch

from indad.errors import InputError
from indad.memory import GreedyCoresetSampler, greedy_k_center, random_projection, take_rows
from tests.memory.reference import exact_grid, greedy_k_center_plain


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


def clustered(seed: int, n: int = 4000, dims: int = 64) -> torch.Tensor:
    """Points in 20 clusters with a few dominant directions, as CNN features have."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(20, dims, generator=gen) * 5
    x = centres[torch.randint(20, (n,), generator=gen)] + torch.randn(n, dims, generator=gen)
    x[:, :8] *= 4
    return x


@pytest.mark.parametrize("seed", [0, 1])
def test_pruned_equals_plain_on_the_exact_grid(seed):
    x = exact_grid(clustered(seed))
    plain = greedy_k_center_plain(x, 400, start=7)
    # Any threshold share: few or many hot points, rare or frequent catch-ups of the cold ones.
    for share in (0.5, 0.9, 0.99):
        assert torch.equal(greedy_k_center(x, 400, start=7, bound_dims=8, hot_share=share), plain)


def test_pruned_equals_plain_on_real_features(mtd):
    """Patch features of MTD tiles, as the sampler sees them: every index the same."""
    from indad.data import AnomalyDataset, scan_train
    from indad.methods import PatchCore

    model = PatchCore(image_size=128, progress=False)
    loader = torch.utils.data.DataLoader(AnomalyDataset(scan_train(mtd)[:24], model.preprocess), batch_size=8)
    with torch.inference_mode():
        bank = torch.cat([model.embed(b["image"]) for b in loader])
    x = exact_grid(random_projection(bank, 128))
    assert torch.equal(greedy_k_center(x, 600, start=3), greedy_k_center_plain(x, 600, start=3))


def test_projection_of_chunks_equals_projection_of_the_whole():
    x = torch.randn(700, 200, generator=torch.Generator().manual_seed(0))
    chunks = [x[:300].half(), x[300:301].half(), x[301:].half()]
    whole = random_projection(x.half().float(), 64, seed=2)
    assert torch.allclose(random_projection(chunks, 64, seed=2), whole, atol=1e-4)
    kept = random_projection(chunks, 256)  # nothing to project: a float32 copy of the rows
    assert kept.dtype == torch.float32 and torch.equal(kept, x.half().float())


def test_exact_grid_makes_float32_distances_exact():
    gen = torch.Generator().manual_seed(0)
    both = exact_grid(
        torch.cat(
            [
                torch.randn(300, 128, generator=gen, dtype=torch.float64) * 1e3,
                torch.randn(50, 128, generator=gen, dtype=torch.float64) * 300,
            ]
        )
    )
    x, y = both[:300], both[300:]
    assert x.dtype == torch.float32 and torch.equal(x, x.round()) and float(x.abs().max()) == 181
    exact = ((x.double()[:, None] - y.double()[None]) ** 2).sum(-1)
    assert float(exact.max()) < 2**24
    # Any order of summation gives the exact value: a matrix product, and a difference of squares.
    fast = (x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2.0 * (x @ y.T)
    assert torch.equal(fast.double(), exact)
    assert exact_grid(torch.zeros(3, 4)).abs().max() == 0


def test_continuing_from_given_distances_equals_plain():
    x = exact_grid(clustered(2, n=3000, dims=48))
    initial = (x[:, None] - x[:40][None]).square().sum(-1).min(dim=1).values  # as if x[:40] were centres
    plain = greedy_k_center(x, 200, bound_dims=0, initial_sq_dist=initial)
    assert torch.equal(greedy_k_center(x, 200, bound_dims=6, initial_sq_dist=initial), plain)
    assert not set(plain.tolist()) & set(range(40))


def test_duplicates_are_never_chosen_twice():
    x = torch.zeros(50, 4)
    x[:5] = torch.eye(4)[torch.arange(5) % 4] * 3
    idx = greedy_k_center_plain(x, 50, start=0)
    assert sorted(idx.tolist()) == list(range(50))
    assert sorted(greedy_k_center(x, 50, start=0).tolist()) == list(range(50))
    many = torch.zeros(600, 16)
    many[::7] = torch.randn(86, 16, generator=torch.Generator().manual_seed(0)).round()
    plain = greedy_k_center_plain(many, 600)
    assert torch.equal(greedy_k_center(many, 600, bound_dims=2, hot_share=0.95), plain)  # ties: lowest index first


def test_non_finite_features_are_refused():
    x = torch.randn(100, 8)
    x[17, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        greedy_k_center(x, 10)


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
    assert GreedyCoresetSampler(1.0).select(x).tolist() == list(range(1000))  # every point, in order
    with pytest.raises(InputError, match="fraction"):
        GreedyCoresetSampler(0.0)


def test_random_projection_is_seeded_and_roughly_isometric():
    x = torch.randn(200, 512, generator=torch.Generator().manual_seed(0))
    p1, p2 = random_projection(x, 128, seed=1), random_projection(x, 128, seed=1)
    assert p1.shape == (200, 128) and torch.equal(p1, p2)
    ratio = torch.pdist(p1) / torch.pdist(x)
    assert float(ratio.min()) > 0.7 and float(ratio.max()) < 1.3
    assert random_projection(x[:, :64], 128).shape[1] == 64  # already small enough: unchanged
    assert torch.equal(random_projection(x[:, :64], 128), x[:, :64])


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


def test_take_rows_of_chunks_equals_indexing_their_concatenation():
    gen = torch.Generator().manual_seed(0)
    chunks = [torch.randn(n, 6, generator=gen).half() for n in (5, 1, 9, 3)]
    index = torch.randperm(18, generator=gen)[:11]
    rows = take_rows(chunks, index)
    assert rows.dtype == torch.float16 and torch.equal(rows, torch.cat(chunks)[index])
