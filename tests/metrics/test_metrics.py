import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import f1_score

from indad.metrics import aupro, evaluate_predictions, f1_max, image_auroc, pixel_auroc


def brute_force_aupro(masks: np.ndarray, maps: np.ndarray, limit: float = 0.3) -> float:
    """PRO curve threshold by threshold (every distinct score), then the same integration."""
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    normal = ~masks
    points = [(0.0, 0.0)]
    for t in np.sort(np.unique(maps))[::-1]:
        above = maps >= t
        fpr = (above & normal).sum() / normal.sum()
        pro = np.mean([above[i][r].mean() for i, r in regions])
        points.append((fpr, pro))
    fprs, pros = np.array(points).T
    keep = fprs <= limit
    x, y = list(fprs[keep]), list(pros[keep])
    nxt = np.argmax(fprs > limit) if (fprs > limit).any() else None
    if nxt is not None and x[-1] < limit:
        x0, x1, y0, y1 = fprs[nxt - 1], fprs[nxt], pros[nxt - 1], pros[nxt]
        x.append(limit)
        y.append(y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
    return float(np.trapezoid(y, x) / limit)


@pytest.mark.parametrize("seed", range(4))
def test_aupro_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 12, 12), dtype=bool)
    masks[0, 2:5, 2:6] = True
    masks[0, 8:11, 8:10] = True  # two regions in one image
    masks[1, 0:3, 9:12] = True
    maps = rng.random((3, 12, 12)) + masks * rng.random() * 0.8
    if seed == 3:
        maps = np.round(maps, 1)  # many tied scores
    assert aupro(masks, maps) == pytest.approx(brute_force_aupro(masks, maps), abs=1e-9)


def test_aupro_extremes():
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, :2, :2] = True
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    assert aupro(masks, 1.0 - masks) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(aupro(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4))))


def test_f1_max_against_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = labels * 0.5 + rng.random(200)
    f1, thr = f1_max(labels, scores)
    best = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    assert f1 == pytest.approx(best)
    assert f1_score(labels, scores >= thr) == pytest.approx(f1)


def test_aurocs_and_single_class():
    assert image_auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert np.isnan(image_auroc([1, 1], [0.2, 0.3]))
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, 0] = True
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 1
    assert pixel_auroc(masks, maps) == 1.0


def test_evaluate_predictions_per_defect():
    out = evaluate_predictions(
        np.array([0, 0, 1, 1]), np.array([0.1, 0.5, 0.9, 0.3]), defects=["good", "good", "crack", "hole"]
    )
    assert out["image_auroc_per_defect"] == {"crack": 1.0, "hole": 0.5}
    assert np.isnan(out["pixel_auroc"]) and out["n_pixel_images"] == 0


@pytest.mark.parametrize("ties", [False, True])
def test_pixel_auroc_and_aupro_are_exact_in_little_memory(ties, monkeypatch):
    """pixel ROC AUC against scikit-learn's; AUPRO the same whether its curve is built in one chunk or many."""
    from sklearn.metrics import roc_auc_score

    import indad.metrics as metrics

    rng = np.random.default_rng(3)
    masks = np.zeros((12, 40, 40), dtype=bool)
    for i in range(0, 12, 2):
        y, x = rng.integers(0, 30, 2)
        masks[i, y : y + rng.integers(2, 10), x : x + rng.integers(2, 10)] = True
    maps = (rng.random(masks.shape) + 0.5 * masks).astype(np.float32)
    if ties:
        maps = (np.round(maps * 20) / 20).astype(np.float32)
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    whole = aupro(masks, maps)
    assert whole == pytest.approx(brute_force_aupro(masks, maps), abs=1e-9)
    monkeypatch.setattr(metrics, "_CHUNK", 97)
    assert aupro(masks, maps) == pytest.approx(whole, abs=1e-12)
