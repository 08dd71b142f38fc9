"""Which image files a dataset or an input holds: the MVTec AD layout, folders and lists of images.

Layout::

    ROOT/train/good/*                         defect-free training images
    ROOT/test/good/*                          defect-free test images
    ROOT/test/DEFECT/*                        defective test images
    ROOT/ground_truth/DEFECT/STEM_mask.EXT    optional masks, one per defective image
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetLayoutError, ImageReadError, InputError
from .images import is_image_file, list_images

log = logging.getLogger(__name__)

GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    ``label`` is 0 for good and 1 for defective; ``mask_path`` is None for good
    images (their mask is empty) and for defect types without masks.
    """

    path: Path
    label: int
    defect: str = GOOD
    mask_path: Path | None = None

    @property
    def has_mask(self) -> bool:
        """Whether the pixel ground truth is known (always for good images)."""
        return self.label == 0 or self.mask_path is not None


def is_dataset_root(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a dataset in MVTec AD layout: a folder with ``train/good`` or ``test``."""
    root = Path(path)
    return (root / "train" / GOOD).is_dir() or (root / "test").is_dir()


def dataset_folders(root: str | os.PathLike) -> list[Path]:
    """The datasets in MVTec AD layout directly under ``root`` (hidden folders aside), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and is_dataset_root(p))


def _nonempty_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetLayoutError(f"folder not found: {folder}")
    images = list_images(folder)
    if not images:
        raise DatasetLayoutError(f"no images in {folder}")
    return images


def scan_train(root: str | os.PathLike) -> list[Sample]:
    """The training samples (``ROOT/train/good``) of a dataset in MVTec AD layout."""
    return [Sample(p, 0) for p in _nonempty_images(Path(root) / "train" / GOOD)]


def scan_test(root: str | os.PathLike) -> list[Sample]:
    """The test samples of a dataset in MVTec AD layout, with their masks.

    Raises
    ------
    DatasetLayoutError
        When the test folder is missing or empty, when a defective image lacks its
        mask in a folder that has masks, or when a mask has no image.
    """
    root = Path(root)
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise DatasetLayoutError(f"no test folder: {test_dir}")
    samples: list[Sample] = []
    defects = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not defects:
        raise DatasetLayoutError(f"no subfolders (good, DEFECT...) in {test_dir}")
    for defect in defects:
        images = list_images(test_dir / defect)
        if not images:
            log.warning("test folder %s holds no images; skipped", test_dir / defect)
            continue
        if defect == GOOD:
            samples += [Sample(p, 0) for p in images]
            continue
        gt_dir = root / "ground_truth" / defect
        masks = {p.stem: p for p in list_images(gt_dir)} if gt_dir.is_dir() else {}
        if not masks:
            log.warning("no masks for defect type %r (%s): image-level metrics only", defect, gt_dir)
            samples += [Sample(p, 1, defect) for p in images]
            continue
        for p in images:
            mask = masks.pop(f"{p.stem}_mask", None)
            if mask is None:
                raise DatasetLayoutError(f"image {p} has no mask: expected {gt_dir / (p.stem + '_mask.png')}")
            samples.append(Sample(p, 1, defect, mask))
        if masks:
            orphan = sorted(masks.values())[0]
            raise DatasetLayoutError(f"mask {orphan} has no image in {test_dir / defect} ({len(masks)} such mask(s))")
    if not samples:
        raise DatasetLayoutError(f"no test images under {test_dir}")
    return samples


def verify_layout(root: str | os.PathLike) -> None:
    """Raise :class:`DatasetLayoutError` unless ``root`` is a complete MVTec-AD-layout dataset."""
    scan_train(root)
    scan_test(root)


def samples_from_paths(paths: Iterable[str | os.PathLike]) -> list[Sample]:
    """Samples for files and folders (folders are searched recursively for images)."""
    samples: list[Sample] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found = list_images(p, recursive=True)
            if not found:
                raise DatasetLayoutError(f"no images in {p}")
            samples += [Sample(f, -1, "") for f in found]
        elif p.is_file():
            if not is_image_file(p):
                raise ImageReadError(f"not an image file (by its extension): {p}")
            samples.append(Sample(p, -1, ""))
        else:
            raise ImageReadError(f"no such file or folder: {p}")
    if not samples:
        raise DatasetLayoutError("no images given")
    return samples


def is_paths(data: Any) -> bool:
    """Whether ``data`` names image files on disk: one path, or a non-empty list of paths."""
    if isinstance(data, (str, os.PathLike)):
        return True
    return (
        isinstance(data, Sequence)
        and not isinstance(data, bytes)
        and len(data) > 0
        and all(isinstance(d, (str, os.PathLike)) for d in data)
    )


def path_samples(data: str | os.PathLike | Sequence[str | os.PathLike], split: str) -> list[Sample]:
    """The samples of images on disk, whatever form names them.

    Parameters
    ----------
    data:
        A dataset root in MVTec AD layout (see :func:`is_dataset_root`), a folder
        of images, one image file, or a list of image files and folders.
    split:
        ``"train"`` or ``"test"``: the part of a dataset root taken.
    """
    if isinstance(data, (str, os.PathLike)) and is_dataset_root(data):
        return scan_train(data) if split == "train" else scan_test(data)
    return samples_from_paths([data] if isinstance(data, (str, os.PathLike)) else data)


def train_paths(data: Any, needed_for: str = "this") -> list[Path]:
    """The good training image files of ``data``: a dataset root in MVTec AD layout (its ``train/good``), a
    folder of images, or a list of image paths and folders. ``needed_for`` names the task in the error."""
    if not is_paths(data):
        raise InputError(f"{needed_for} needs a folder or a list of image paths, not {type(data).__name__}")
    return [s.path for s in path_samples(data, "train")]


def split_holdout(data: Any, fraction: float, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Good training images split, at random with a seed, into (fit, held out for calibration).

    ``data`` is a dataset root in MVTec AD layout (its ``train/good``), a folder
    of images, or a list of image paths and folders. At least one image is held
    out and at least one kept.
    """
    if not 0 < fraction < 1:
        raise InputError(f"holdout fraction must be in (0, 1), got {fraction}")
    paths = train_paths(data, "a holdout split (else calibrate() on separate good images)")
    if len(paths) < 2:
        raise DatasetLayoutError(f"a holdout split needs at least 2 images, got {len(paths)}")
    n_out = min(len(paths) - 1, max(1, round(fraction * len(paths))))
    order = np.random.default_rng(seed).permutation(len(paths))
    held = sorted(int(i) for i in order[:n_out])
    kept = sorted(int(i) for i in order[n_out:])
    return [paths[i] for i in kept], [paths[i] for i in held]
