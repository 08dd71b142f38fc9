"""Defect regions against a slow, obvious flood fill."""

import numpy as np
import pytest

from indad.errors import InputError
from indad.regions import find_regions


def flood_fill_regions(amap: np.ndarray, threshold: float) -> list[dict]:
    """8-connected components of ``amap >= threshold``, one pixel at a time."""
    h, w = amap.shape
    seen = np.zeros((h, w), dtype=bool)
    out = []
    for y0 in range(h):
        for x0 in range(w):
            if seen[y0, x0] or amap[y0, x0] < threshold:
                continue
            stack, pixels = [(y0, x0)], []
            seen[y0, x0] = True
            while stack:
                y, x = stack.pop()
                pixels.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < h and 0 <= nx < w and not seen[ny, nx] and amap[ny, nx] >= threshold:
                            seen[ny, nx] = True
                            stack.append((ny, nx))
            ys, xs = np.array(pixels).T
            values = amap[ys, xs]
            out.append(
                {
                    "area": len(pixels),
                    "bbox": (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                    "centroid": (float(xs.mean()), float(ys.mean())),
                    "peak": float(values.max()),
                    "mean": float(values.mean()),
                }
            )
    return sorted(out, key=lambda r: -r["peak"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regions_match_a_flood_fill(seed):
    rng = np.random.default_rng(seed)
    amap = rng.random((37, 53)).astype(np.float32)
    expected = flood_fill_regions(amap, 0.8)
    regions = find_regions(amap, 0.8)
    assert len(regions) == len(expected) > 5
    for got, want in zip(regions, expected, strict=True):
        assert got.area == want["area"] and got.bbox == want["bbox"]
        assert got.area_share == pytest.approx(want["area"] / amap.size)
        assert got.centroid == pytest.approx(want["centroid"])
        assert got.peak == pytest.approx(want["peak"]) and got.mean == pytest.approx(want["mean"])


def test_min_area_and_empty_maps():
    amap = np.zeros((20, 20), dtype=np.float32)
    amap[2:4, 2:4] = 1.0  # 4 pixels
    amap[10:15, 10:16] = 2.0  # 30 pixels
    amap[19, 0] = 3.0  # 1 pixel, touching nothing
    assert [r.area for r in find_regions(amap, 0.5)] == [1, 30, 4]  # largest peak first
    assert [r.area for r in find_regions(amap, 0.5, min_area=4)] == [30, 4]
    assert find_regions(amap, 5.0) == []
    big = find_regions(amap, 1.5, min_area=5)[0]
    assert big.bbox == (10, 10, 16, 15) and big.centroid == (12.5, 12.0)
    assert big.to_dict()["area"] == 30
    with pytest.raises(InputError, match="anomaly map is"):
        find_regions(np.zeros((2, 3, 4)), 0.5)


def test_prediction_regions_follow_its_masks(tiny_model, tiny_root):
    pred = tiny_model.predict(tiny_root)
    assert any(pred.regions()) and pred.regions(min_area=10**6) == [[]] * len(pred)
    for regions, mask in zip(pred.regions(), pred.masks, strict=True):
        assert sum(r.area for r in regions) == int(mask.sum())
        for r in regions:
            x0, y0, x1, y1 = r.bbox
            assert mask[y0:y1, x0:x1].any() and r.peak >= tiny_model.thresholds.pixel
