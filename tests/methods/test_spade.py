import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from indad.errors import InputError
from indad.memory import TorchNearestNeighbors
from indad.methods.anomaly_map import AnomalyMapGenerator
from indad.methods.spade import SPADE, SPADEModule, batch_block, gallery_distances
from tests.helpers import make_layout


def slow_spade(
    train: list[np.ndarray], test: list[np.ndarray], k: int, kappa: int, aligned: bool, size: int, pixel_k: int = 0
):
    """SPADE with loops: train/test are per stage (N, C, h, w), the last stage pooled for the neighbours.

    The pixel gallery is the nearest ``pixel_k`` of the ``k`` images (0: all ``k``).
    """
    pooled_train = train[-1].mean(axis=(2, 3))
    scores, maps = [], []
    for i in range(test[0].shape[0]):
        pooled = test[-1][i].mean(axis=(1, 2))
        d_img = np.array([np.linalg.norm(pooled - p) for p in pooled_train])
        nearest = np.argsort(d_img, kind="stable")[:k]
        scores.append(np.sort(d_img)[:k].mean())
        nearest = nearest[: pixel_k or k]
        stage_maps = []
        for tr, te in zip(train[:-1], test[:-1], strict=True):
            _, h, w = te[i].shape
            dmap = np.zeros((h, w))
            for y in range(h):
                for x in range(w):
                    if aligned:
                        cand = [np.linalg.norm(te[i, :, y, x] - tr[n, :, y, x]) for n in nearest]
                    else:
                        cand = [
                            np.linalg.norm(te[i, :, y, x] - tr[n, :, yy, xx])
                            for n in nearest
                            for yy in range(h)
                            for xx in range(w)
                        ]
                    dmap[y, x] = np.mean(np.sort(cand)[:kappa])
            up = F.interpolate(
                torch.from_numpy(dmap)[None, None].float(), size=(size, size), mode="bilinear", align_corners=False
            )
            stage_maps.append(up[0, 0].numpy())
        maps.append(np.mean(stage_maps, axis=0))
    return np.array(scores), np.array(maps)


@pytest.mark.parametrize(
    "aligned,kappa,pixel_k", [(False, 1, 0), (False, 3, 0), (True, 1, 0), (True, 2, 0), (False, 1, 2), (True, 1, 3)]
)
def test_matches_the_slow_version(aligned, kappa, pixel_k):
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 6, 6), (5, 3, 3), (7, 2, 2)]
    train = [torch.randn(9, *s, generator=gen) for s in shapes]
    test = [torch.randn(3, *s, generator=gen) for s in shapes]
    module = SPADEModule(
        nn.Identity(),
        train[-1].mean(dim=(2, 3)),
        [t.half() for t in train[:-1]],
        k=4,
        kappa=kappa,
        aligned=aligned,
        map_generator=AnomalyMapGenerator((12, 12), sigma=0.0),
        searcher=TorchNearestNeighbors(),
        pixel_k=pixel_k,
    )
    scores, maps = module.score_features(test)
    half_train = [t.half().float().numpy() for t in train[:-1]] + [train[-1].numpy()]
    ref_scores, ref_maps = slow_spade(half_train, [t.numpy() for t in test], 4, kappa, aligned, 12, pixel_k)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-4)
    np.testing.assert_allclose(maps.numpy(), ref_maps, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 5, 40])
def test_gallery_blocks_sized_by_the_batch_change_no_distance(batch):
    gen = torch.Generator().manual_seed(batch)
    bank = torch.randn(12, 6, 48, 48, generator=gen).half()
    query = torch.randn(batch, 6, 48, 48, generator=gen)
    neighbours = torch.randint(0, 12, (batch, 3), generator=gen)
    rows, cols = batch_block(batch)
    assert rows < 48 * 48 and cols < 48 * 48  # several blocks each way
    by_batch = gallery_distances(query, bank, neighbours, kappa=2, aligned=False)
    tiny = gallery_distances(query, bank, neighbours, kappa=2, aligned=False, block=(7, 11))
    torch.testing.assert_close(by_batch, tiny, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = make_layout(tmp_path_factory.mktemp("tiny") / "ds", n_train=6, size=(64, 64))
    return SPADE(image_size=64, k=3, batch_size=4, progress=False).fit(root), root


def test_batch_size_never_changes_a_score(fitted):
    model, root = fitted
    one, many = model.predict(root, batch_size=1), model.predict(root, batch_size=5)
    np.testing.assert_allclose(one.scores, many.scores, rtol=1e-4)
    np.testing.assert_allclose(one.maps, many.maps, rtol=1e-4, atol=1e-5)
    assert [p.dtype for p in model.pyramids] == [torch.float16] * 3
    # A training image is in the gallery: its nearest image is itself, its map is (nearly) zero.
    train = model.predict(sorted((root / "train" / "good").iterdir())[:1])
    assert train.maps.max() < one.maps.max(axis=(1, 2)).min()


def test_k_larger_than_the_training_set_is_clipped(fitted):
    model, root = fitted
    big = SPADE(image_size=64, k=50, batch_size=4, progress=False).fit(root)
    assert big.module.k == 6 and np.all(np.isfinite(big.predict(root).scores))
    every = SPADE(image_size=64, k=6, batch_size=4, progress=False).fit(root)  # k = all 6 training images
    a, b = big.predict(root), every.predict(root)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps, b.maps)
    assert not np.allclose(a.scores, model.predict(root).scores)  # k = 3 averages fewer neighbours


def test_parameters_are_checked():
    with pytest.raises(InputError, match="k must be >= 1, got 0"):
        SPADE(k=0)
    with pytest.raises(InputError, match="kappa must be an integer, got 1.5"):
        SPADE(kappa=1.5)
    with pytest.raises(InputError, match="at least two strides"):
        SPADE(strides=[8])


def test_end_to_end_hazelnut(hazelnut):
    for aligned in (False, True):
        result = SPADE(aligned=aligned, progress=False).fit(hazelnut).evaluate(hazelnut)
        assert result["pixel_auroc"] >= 0.95 and result["aupro"] >= 0.8, aligned
        assert result["image_auroc"] >= 0.7  # 10 test images: a coarse check
