"""Datasets in MVTec AD layout, and turning any input into batches.

Layout::

    ROOT/train/good/*                         defect-free training images
    ROOT/test/good/*                          defect-free test images
    ROOT/test/DEFECT/*                        defective test images
    ROOT/ground_truth/DEFECT/STEM_mask.EXT    optional masks, one per defective image
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import DatasetLayoutError, ImageReadError
from .images import is_image_file, list_images, read_image, read_mask, to_rgb
from .transforms import Preprocess

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
            raise DatasetLayoutError(
                f"mask {orphan} has no image in {test_dir / defect} ({len(masks)} such mask(s))"
            )
    if not samples:
        raise DatasetLayoutError(f"no test images under {test_dir}")
    return samples


class AnomalyDataset(Dataset):
    """Samples read from disk and preprocessed for a backbone.

    Each item is a dict with ``image`` (float tensor ``(3, H, W)``), ``mask``
    (bool tensor ``(H, W)``), ``label``, ``has_mask``, ``defect`` and ``path``.
    """

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocess) -> None:
        if not samples:
            raise DatasetLayoutError("a dataset needs at least one image")
        self.samples = list(samples)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        s = self.samples[index]
        image = read_image(s.path)
        if s.mask_path is not None:
            mask_arr = read_mask(s.mask_path)
            if mask_arr.shape != (image.height, image.width):
                raise ImageReadError(
                    f"mask {s.mask_path} is {mask_arr.shape[1]}x{mask_arr.shape[0]} but its image {s.path} "
                    f"is {image.width}x{image.height}"
                )
            mask = self.preprocess.mask(mask_arr)
        else:
            mask = torch.zeros(self.preprocess.output_size, dtype=torch.bool)
        return {
            "image": self.preprocess.image(image),
            "mask": mask,
            "label": s.label,
            "has_mask": s.has_mask,
            "defect": s.defect,
            "path": str(s.path),
        }


class _InMemoryImages(Dataset):
    """PIL images, numpy arrays or tensors given directly (no files)."""

    def __init__(self, images: Sequence, preprocess: Preprocess) -> None:
        self.images = list(images)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        im = self.images[index]
        if isinstance(im, np.ndarray):
            im = Image.fromarray(im)
        if not isinstance(im, Image.Image):
            raise TypeError(f"image {index}: expected a path, PIL image or numpy array, got {type(im).__name__}")
        mask = torch.zeros(self.preprocess.output_size, dtype=torch.bool)
        return {"image": self.preprocess.image(to_rgb(im)), "mask": mask, "label": -1, "has_mask": False,
                "defect": "", "path": f"<image {index}>"}


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


def make_loader(
    data,
    preprocess: Preprocess,
    split: str,
    batch_size: int,
    num_workers: int = 0,
) -> DataLoader | Iterable:
    """Batches for ``data`` given in any supported form.

    ``data`` may be a dataset root in MVTec AD layout (its ``split`` is used), a
    folder of images, a single image path, a list of paths, a list of PIL images
    or arrays, an :class:`AnomalyDataset`, or a ready ``DataLoader`` (used as is).
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        dataset = data
    elif isinstance(data, (str, os.PathLike)):
        root = Path(data)
        if (root / "train" / GOOD).is_dir() or (root / "test").is_dir():
            samples = scan_train(root) if split == "train" else scan_test(root)
        else:
            samples = samples_from_paths([root])
        dataset = AnomalyDataset(samples, preprocess)
    elif isinstance(data, Sequence) and not isinstance(data, (bytes, str)):
        if len(data) == 0:
            raise DatasetLayoutError("no images given (empty list)")
        if all(isinstance(d, (str, os.PathLike)) for d in data):
            dataset = AnomalyDataset(samples_from_paths(data), preprocess)
        else:
            dataset = _InMemoryImages(data, preprocess)
    else:
        raise TypeError(f"cannot read images from {type(data).__name__}")
    # An own generator: iterating a DataLoader would otherwise draw its worker seeds from torch's global one.
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0))


def train_paths(data, needed_for: str = "this") -> list[Path]:
    """The good training image files of ``data``: a dataset root in MVTec AD layout (its ``train/good``), a
    folder of images, or a list of image paths and folders. ``needed_for`` names the task in the error."""
    if isinstance(data, (str, os.PathLike)):
        root = Path(data)
        samples = scan_train(root) if (root / "train" / GOOD).is_dir() else samples_from_paths([root])
    elif isinstance(data, Sequence) and data and all(isinstance(d, (str, os.PathLike)) for d in data):
        samples = samples_from_paths(data)
    else:
        raise TypeError(f"{needed_for} needs a folder or a list of image paths, not {type(data).__name__}")
    return [s.path for s in samples]


def split_holdout(data, fraction: float, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Good training images split, at random with a seed, into (fit, held out for calibration).

    ``data`` is a dataset root in MVTec AD layout (its ``train/good``), a folder
    of images, or a list of image paths and folders. At least one image is held
    out and at least one kept.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    paths = train_paths(data, "a holdout split (else calibrate() on separate good images)")
    if len(paths) < 2:
        raise DatasetLayoutError(f"a holdout split needs at least 2 images, got {len(paths)}")
    n_out = min(len(paths) - 1, max(1, round(fraction * len(paths))))
    order = np.random.default_rng(seed).permutation(len(paths))
    held = sorted(int(i) for i in order[:n_out])
    kept = sorted(int(i) for i in order[n_out:])
    return [paths[i] for i in kept], [paths[i] for i in held]
