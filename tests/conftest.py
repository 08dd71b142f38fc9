"""Shared fixtures: where the real datasets are, small synthetic images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def shared_datasets() -> Path:
    """The read-only real datasets (../shared/datasets beside the checkout, or $INDAD_DATA_DIR)."""
    for candidate in (REPO.parent / "shared" / "datasets", Path(os.environ.get("INDAD_DATA_DIR", "/nonexistent"))):
        if (candidate / "hazelnut_reduced").is_dir():
            return candidate
    pytest.skip("the shared datasets (../shared/datasets) are not available")


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    return shared_datasets()


@pytest.fixture(scope="session")
def hazelnut(datasets_root: Path) -> Path:
    return datasets_root / "hazelnut_reduced"


@pytest.fixture(scope="session")
def mtd(datasets_root: Path) -> Path:
    path = datasets_root / "mtd"
    if not path.is_dir():
        pytest.skip("MTD is not available")
    return path


def save_image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def assert_pictures_show_the_map(out: Path, rel: Path, image_path: Path, amap: np.ndarray, preprocess,
                                 thresholds) -> None:
    """The pictures predict_folder wrote for one image (``out/KIND/rel``) show ``amap``, that image's anomaly map.

    The heatmap colours the map brought back to the original size from 0 to twice the pixel threshold (jet), the
    mask is the map at or above the pixel threshold, the overlay is the original image under the heatmap. ``amap``
    may come from another run than the pictures (batch size, runtime): a step of the jet colour table (at most 5
    levels) and 0.1% of the mask pixels (those on the threshold) may differ.
    """
    from indad.data import read_image
    from indad.inference.visualize import heatmap_image, map_to_original

    original = read_image(image_path)
    full = map_to_original(amap, preprocess, original.size)
    heat = np.asarray(heatmap_image(full, 2.0 * thresholds.pixel), dtype=int)
    got = {kind: np.asarray(Image.open(out / kind / rel), dtype=int) for kind in ("heatmaps", "overlays", "masks")}
    assert got["heatmaps"].shape == heat.shape and np.abs(got["heatmaps"] - heat).max() <= 5, rel
    assert np.mean((got["masks"] == 255) != (full >= thresholds.pixel)) <= 1e-3, rel
    assert set(np.unique(got["masks"]).tolist()) <= {0, 255}, rel
    # Off the defect outlines (white): 0.55 x image + 0.45 x heatmap.
    blend = 0.55 * np.asarray(original, dtype=float) + 0.45 * heat
    off_outline = (got["overlays"] != 255).any(axis=-1)
    assert np.abs(got["overlays"] - blend)[off_outline].max() <= 3, rel


def make_layout(root: Path, n_train: int = 4, defects: dict[str, int] | None = None, masks: bool = True,
                size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """A tiny MVTec-AD-layout dataset of random images (and square defect masks)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(n_train):
        save_image(root / "train" / "good" / f"{i:03d}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    for i in range(2):
        save_image(root / "test" / "good" / f"{i:03d}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    for defect, count in (defects or {"scratch": 2}).items():
        for i in range(count):
            save_image(root / "test" / defect / f"{i:03d}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            if masks:
                m = np.zeros((h, w), dtype=np.uint8)
                m[5:15, 10:20] = 255
                save_image(root / "ground_truth" / defect / f"{i:03d}_mask.png", m)
    return root


TINY_PARAMS = {"patchcore": {"f_coreset": 0.25, "n_reweight": 3}, "padim": {"d_reduced": 20}, "spade": {"k": 3}}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("tiny") / "ds", n_train=8, size=(64, 64))


@pytest.fixture(scope="session", params=sorted(TINY_PARAMS))
def tiny_model(request, tiny_root):
    """Each method fitted on tiny random images at 64 px, thresholds from 2 held-out images."""
    from indad.methods import METHODS

    cls = METHODS[request.param]
    return cls(image_size=64, batch_size=4, progress=False, **TINY_PARAMS[request.param]).fit(tiny_root, holdout=0.25)


def pytest_collection_modifyitems(items: list) -> None:
    """The long end-to-end runs first, so that the two CI workers finish together."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
