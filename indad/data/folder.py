"""Images on disk or in memory as preprocessed tensors, in batches: the torch side of the data."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import DatasetLayoutError, ImageReadError, InputError
from ..progress import Progress, track
from .images import image_size, read_image, read_mask, to_rgb
from .layout import Sample, is_paths, path_samples
from .transforms import Preprocess

T = TypeVar("T")


def read_ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` in their order, the next ``depth`` of them made by a background thread meanwhile.

    Decoding and resizing images (Pillow, which releases the GIL) then overlap
    with scoring the batch before. An exception raised while making an item is
    raised here, at that item; leaving the loop early stops the thread. A
    DataLoader with worker processes already reads ahead: its batches come as they are.
    """
    if getattr(items, "num_workers", 0) > 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # raised again in the consuming thread
            put((end, exc))

    thread = threading.Thread(target=produce, name="indad-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = slots.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


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
            raise InputError(f"image {index}: expected a path, PIL image or numpy array, got {type(im).__name__}")
        mask = torch.zeros(self.preprocess.output_size, dtype=torch.bool)
        return {
            "image": self.preprocess.image(to_rgb(im)),
            "mask": mask,
            "label": -1,
            "has_mask": False,
            "defect": "",
            "path": f"<image {index}>",
        }


def first_image_size(data: Any) -> tuple[int, int]:
    """``(height, width)`` of the first image of ``data`` (any form :func:`make_loader` takes but a DataLoader).

    Only the first file's header is read.
    """
    if isinstance(data, torch.Tensor):
        return int(data.shape[-2]), int(data.shape[-1])
    if is_paths(data):
        path = path_samples(data, "train")[0].path
        try:
            width, height = image_size(path)
            return height, width
        except OSError as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    if isinstance(data, Sequence) and data and isinstance(data[0], (Image.Image, np.ndarray)):
        first = data[0]
        return (first.height, first.width) if isinstance(first, Image.Image) else (first.shape[0], first.shape[1])
    if isinstance(data, Dataset):
        image = data[0]["image"]
        return int(image.shape[-2]), int(image.shape[-1])
    raise InputError(f"cannot take an image size from {type(data).__name__}: give files, images or a tensor")


def make_loader(
    data: Any,
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
    elif is_paths(data):
        dataset = AnomalyDataset(path_samples(data, split), preprocess)
    elif isinstance(data, Sequence) and not isinstance(data, (bytes, str)):
        if len(data) == 0:
            raise DatasetLayoutError("no images given (empty list)")
        dataset = _InMemoryImages(data, preprocess)
    else:
        raise InputError(f"cannot read images from {type(data).__name__}")
    # An own generator: iterating a DataLoader would otherwise draw its worker seeds from torch's global one.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
    )


def device_batches(
    data: Any,
    preprocess: Preprocess,
    split: str,
    batch_size: int,
    num_workers: int,
    device: torch.device | str,
    desc: str,
    progress: Progress,
) -> Iterator[dict[str, Any]]:
    """Batches of ``data`` (any form :func:`make_loader` takes, or a normalised ``(B, 3, H, W)`` tensor) with the
    images on ``device``, reported to ``progress`` as ``desc``; a thread (or the loader's worker processes) reads
    the next batches while one is used."""
    if isinstance(data, torch.Tensor):
        if data.ndim != 4 or data.shape[1] != 3:
            raise InputError(f"a tensor input must be a normalised batch (B, 3, H, W), got {tuple(data.shape)}")
        offset = 0
        for chunk in data.split(batch_size):
            n = chunk.shape[0]
            yield {"image": chunk.to(device), "path": [f"<tensor {offset + i}>" for i in range(n)]}
            offset += n
        return
    loader = make_loader(data, preprocess, split, batch_size, num_workers)
    total = len(loader) if isinstance(loader, Sized) else None
    for batch in track(read_ahead(loader), desc, total, progress):
        if isinstance(batch, (list, tuple)):  # a plain (images, ...) DataLoader
            batch = {"image": batch[0]}
        batch["image"] = batch["image"].to(device, non_blocking=True)
        yield batch
