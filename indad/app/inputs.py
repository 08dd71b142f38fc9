"""What the app reads: dataset folders, uploaded images and masks, the region of interest; its progress line."""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data import GOOD, dataset_folders, list_images
from ..data.images import decode_image, to_rgb
from ..data.transforms import Preprocess
from ..errors import ImageReadError, InputError
from ..inference.visualize import map_to_original
from ..methods import AnomalyModel
from ..progress import ProgressEvent
from ..roi import roi_mask


# ----------------------------------------------------------------- data sources
@dataclass(frozen=True)
class DatasetInfo:
    """A dataset folder in MVTec AD layout found under the data root."""

    path: Path
    n_train: int
    n_test: int

    @property
    def summary(self) -> str:
        return f"{self.n_train} good images to train, {self.n_test} to test"


def find_datasets(root: str | os.PathLike) -> list[DatasetInfo]:
    """The datasets under ``root`` (:func:`~indad.data.dataset_folders`) with images in ``train/good``."""
    found = []
    for folder in dataset_folders(root):
        n_train = len(list_images(folder / "train" / GOOD))
        if n_train:
            n_test = len(list_images(folder / "test", recursive=True))
            found.append(DatasetInfo(folder, n_train, n_test))
    return found


@dataclass
class UploadCheck:
    """Uploaded images read and checked: the usable ones and what is wrong with the others."""

    images: list[Image.Image] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _odd_ones(names: Sequence[str], values: Sequence[str], what: str, role: str) -> str | None:
    """A message naming the images whose ``values`` differ from the most common one, or None."""
    counts = Counter(values)
    if len(counts) < 2:
        return None
    common, n_common = counts.most_common(1)[0]
    odd = [f"{n} ({v})" for n, v in zip(names, values, strict=True) if v != common]
    shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
    return (
        f"The {role} images mix {what}s: {n_common} are {common}, but {shown}. "
        f"Every image is resized to the same size and read as RGB, so they can be scored, "
        f"but images from another camera or setting often look anomalous."
    )


def read_uploads(files: Sequence[tuple[str, bytes]], role: str, min_count: int = 0) -> UploadCheck:
    """Uploaded files ``(name, content)`` read as RGB images and checked.

    Errors: a file that is not a readable image, fewer than ``min_count``
    images. Warnings: images of different sizes or colour modes.
    """
    check = UploadCheck()
    sizes, modes = [], []
    for name, content in files:
        try:
            im = decode_image(io.BytesIO(content), name)
        except ImageReadError as exc:
            cause = exc.__cause__
            reason = "not an image" if isinstance(cause, UnidentifiedImageError) else f"unreadable image ({cause})"
            check.errors.append(f"{name} ({role}): {reason}.")
            continue
        check.images.append(to_rgb(im))
        check.names.append(name)
        modes.append(im.mode)
        sizes.append(f"{im.width}x{im.height}")
    if len(check.images) < min_count:
        check.errors.append(
            f"At least {min_count} good images are needed to learn what normal looks like; "
            f"{len(check.images)} readable {'was' if len(check.images) == 1 else 'were'} uploaded."
        )
    for what, values in (("size", sizes), ("colour mode", modes)):
        message = _odd_ones(check.names, values, what, role)
        if message:
            check.warnings.append(message)
    return check


def read_roi_upload(name: str, content: bytes) -> np.ndarray:
    """An uploaded region-of-interest picture as a bool mask ``(h, w)`` at its own size, True (white) = inspect.

    Read as ``indad --roi`` reads its file (:func:`~indad.roi.roi_mask`).

    Raises
    ------
    InputError
        Not a readable image, or no white pixel; the message names ``name``.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="indad-app-") as tmp:
        path = Path(tmp) / (Path(name).name or "roi.png")
        path.write_bytes(content)
        try:
            return roi_mask(path)
        except InputError as exc:
            raise type(exc)(str(exc).replace(str(path), name)) from None


def apply_roi(model: AnomalyModel, mask: np.ndarray, name: str) -> None:
    """Give an unfitted ``model`` the region of interest ``mask`` (``(h, w)`` bool, the images' aspect ratio).

    The mask is resized (letterboxed, cropped) as the images are; ``name``
    stands for its source in the model's parameters (as in a loaded model).
    """
    model.set_roi_mask(model.preprocess.mask(mask))
    model.roi = name


def roi_on_original(roi: Any, preprocess: Preprocess, size: tuple[int, int]) -> np.ndarray | None:
    """A model's ``roi_mask`` (working size; None: no region of interest) on an image of ``size = (w, h)``."""
    if roi is None:
        return None
    working = np.asarray(roi.cpu() if hasattr(roi, "cpu") else roi, dtype=np.float32)
    return map_to_original(working, preprocess, size) >= 0.5


# ----------------------------------------------------------------- progress
class ThrottledProgress:
    """A progress callback that forwards at most one event per ``interval`` seconds (and every stage's end).

    ``show(fraction, text)`` gets a fraction in [0, 1] and a line of text.
    """

    def __init__(
        self, show: Callable[[float, str], Any], interval: float = 0.2, clock: Callable[[], float] | None = None
    ) -> None:
        import time

        self.show, self.interval, self.clock = show, interval, clock or time.monotonic
        self.last = float("-inf")

    def __call__(self, event: ProgressEvent) -> None:
        now = self.clock()
        final = event.total is not None and event.done >= event.total
        if not final and event.done and now - self.last < self.interval:
            return
        self.last = now
        fraction = event.fraction
        count = f"{event.done}/{event.total}" if event.total else f"{event.done}"
        self.show(0.0 if fraction is None else fraction, f"{event.stage}: {count}")
