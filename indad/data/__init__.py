"""Images, masks, datasets in MVTec AD layout, MVTec AD and MTD downloads."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetLayoutError, DatasetNotFoundError, DownloadError, ImageReadError
from .folder import AnomalyDataset, device_batches, first_image_size, make_loader, read_ahead
from .images import IMAGE_EXTENSIONS, list_images, read_image, read_mask
from .layout import (
    GOOD,
    Sample,
    dataset_folders,
    is_dataset_root,
    samples_from_paths,
    scan_test,
    scan_train,
    split_holdout,
    train_paths,
)
from .mtd import MTD, layout_mtd
from .mvtec import MVTEC_CLASSES, MVTecAD
from .transforms import Preprocess

DEFAULT_DATA_ROOT = "datasets"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The dataset root: ``explicit``, else ``$INDAD_DATA_DIR``, else ``./datasets``."""
    return Path(explicit or os.environ.get("INDAD_DATA_DIR") or DEFAULT_DATA_ROOT)


def resolve_dataset(name: str, root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder of a dataset given by name or path.

    A dataset folder (:func:`~indad.data.layout.is_dataset_root`) is used as is; ``mtd`` and the MVTec AD class
    names are downloaded into the root when missing; any other name must be a
    folder under the root.
    """
    if is_dataset_root(name):
        return Path(name)
    base = data_root(root)
    if name == "mtd":
        return MTD(base, download=download).path
    if name in MVTEC_CLASSES:
        return MVTecAD(name, base, download=download).path
    folder = base / name
    if not folder.is_dir():
        found = [p.name for p in dataset_folders(base)]
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: no folder {folder}"
            + (f"; datasets under {base}: {', '.join(found)}" if found else f" (data root {base} has no datasets)")
            + f". Known downloadable names: mtd, {', '.join(MVTEC_CLASSES)}."
        )
    return folder


__all__ = [
    "GOOD",
    "IMAGE_EXTENSIONS",
    "MTD",
    "MVTEC_CLASSES",
    "AnomalyDataset",
    "DatasetLayoutError",
    "DatasetNotFoundError",
    "DownloadError",
    "ImageReadError",
    "MVTecAD",
    "Preprocess",
    "Sample",
    "data_root",
    "dataset_folders",
    "device_batches",
    "first_image_size",
    "is_dataset_root",
    "layout_mtd",
    "list_images",
    "make_loader",
    "read_ahead",
    "read_image",
    "read_mask",
    "resolve_dataset",
    "samples_from_paths",
    "scan_test",
    "scan_train",
    "split_holdout",
    "train_paths",
]
