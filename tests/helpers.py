"""Helpers the tests share: where the real datasets are, tiny synthetic datasets, MTD subsets, picture checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
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


# The fixed MTD subset of `make test` (fixture mtd_small): training images, good test images and test images of
# each of the 5 defect types, spread evenly over the sorted file names. MTD has 761 / 191 / 32 to 115.
MTD_SMALL = {"train": 128, "good": 40, "per_defect": 8}


def spread(items: list, n: int) -> list:
    """``n`` items spread evenly over ``items`` (all of them when there are not more than ``n``), in order."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def subset_layout(source: Path, dest: Path, n_train: int, n_good: int, n_per_defect: int) -> Path:
    """A copy of a fixed subset of an MVTec-AD-layout dataset, with the masks of its defective images.

    Copied, not linked: indad names its output pictures after the resolved input path (see
    tests/inference/test_folder.py::test_symlinked_inputs_keep_their_folder_in_output_names).
    """

    def copy(src: Path, rel: Path) -> None:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / rel)

    for p in spread(sorted((source / "train" / "good").iterdir()), n_train):
        copy(p, Path("train", "good", p.name))
    for defect_dir in sorted(d for d in (source / "test").iterdir() if d.is_dir()):
        n = n_good if defect_dir.name == "good" else n_per_defect
        for p in spread(sorted(defect_dir.iterdir()), n):
            copy(p, Path("test", defect_dir.name, p.name))
            if defect_dir.name != "good":
                mask = Path("ground_truth", defect_dir.name, f"{p.stem}_mask.png")
                copy(source / mask, mask)
    return dest


def save_image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def assert_pictures_show_the_map(
    out: Path, rel: Path, image_path: Path, amap: np.ndarray, preprocess, thresholds
) -> None:
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


def make_layout(
    root: Path,
    n_train: int = 4,
    defects: dict[str, int] | None = None,
    masks: bool = True,
    size: tuple[int, int] = (40, 48),
    seed: int = 0,
) -> Path:
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


# Each MTD test runs on the subset in `make test` and on the whole dataset in `make test-full` (marked slow):
# ``@pytest.mark.parametrize("variant", MTD_VARIANTS)`` and ``mtd_folder(request, variant)``.
MTD_VARIANTS = [pytest.param("small", id="mtd_small"), pytest.param("full", id="mtd_full", marks=pytest.mark.slow)]
MTD_TEST_IMAGES = {"small": MTD_SMALL["good"] + 5 * MTD_SMALL["per_defect"], "full": 583}
MTD_TRAIN_IMAGES = {"small": MTD_SMALL["train"], "full": 761}


def mtd_folder(request: pytest.FixtureRequest, variant: str) -> Path:
    """The MTD folder of a test's ``variant``: ``"small"`` (the :func:`mtd_small` subset) or ``"full"``."""
    return request.getfixturevalue({"small": "mtd_small", "full": "mtd"}[variant])


TINY_PARAMS = {"patchcore": {"f_coreset": 0.25, "n_reweight": 3}, "padim": {"d_reduced": 20}, "spade": {"k": 3}}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file ("" when there is none)."""
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` (killed after 15 s) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


STREAMLIT_START_S = 60


@contextlib.contextmanager
def streamlit_app(env: Mapping[str, str], log: Path) -> Iterator[str]:
    """The web app (``streamlit_app.py``) served on a free loopback port with ``env`` added: its base URL.

    Its output goes to ``log``; it is stopped on exit. Fails the test when it exits or does not answer.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1",
           # no reruns or inotify floods when files of the checkout change while the test runs
           "--server.fileWatcherType", "none"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **env}, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STREAMLIT_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{tail(log)}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response,
            ):
                if response.read().strip() == b"ok":
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {url} within {STREAMLIT_START_S} s:\n{tail(log)}")
            time.sleep(0.3)
        yield url
    finally:
        stop_process(proc)
