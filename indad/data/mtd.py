"""Magnetic Tile Defects (Huang et al. 2020) in MVTec AD layout, with the DifferNet split."""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from PIL import Image

from ..errors import DatasetNotFoundError, DownloadError
from ..progress import Progress
from .download import fetch_and_build
from .layout import GOOD, verify_layout

MTD_URL = "https://github.com/abin24/Magnetic-tile-defect-datasets./archive/refs/heads/master.zip"
# Raw folder -> defect type. MT_Free holds the defect-free tiles.
MTD_DEFECTS: dict[str, str] = {
    "MT_Blowhole": "blowhole",
    "MT_Break": "break",
    "MT_Crack": "crack",
    "MT_Fray": "fray",
    "MT_Uneven": "uneven",
}
MTD_FREE = "MT_Free"


def differnet_train_list() -> list[str]:
    """File names of the 761 defect-free training images of the DifferNet split (shipped with indad)."""
    text = resources.files("indad.data").joinpath("mtd_differnet_train_list.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def _raw_root(unpacked: Path) -> Path:
    found = [p.parent for p in unpacked.rglob(MTD_FREE) if p.is_dir()]
    if not found:
        raise DownloadError(f"no {MTD_FREE} folder in the MTD archive ({unpacked})")
    return found[0]


def layout_mtd(raw: Path, out: Path, train_list: list[str] | None = None) -> None:
    """Lay out the raw MTD repository tree (``MT_*/Imgs/*.jpg`` beside ``*.png`` masks) in MVTec AD form.

    Defect-free images named in ``train_list`` train, the others test; every
    defective image tests, with its mask thresholded at 127 and saved as
    ``ground_truth/DEFECT/STEM_mask.png`` (0 / 255). Image files are copied byte for byte.
    """
    raw = _raw_root(raw)
    train_names = set(differnet_train_list() if train_list is None else train_list)
    free = sorted((raw / MTD_FREE / "Imgs").glob("*.jpg"))
    missing = train_names - {p.name for p in free}
    if missing:
        raise DownloadError(
            f"{len(missing)} training images of the split are missing from {raw / MTD_FREE}, e.g. {sorted(missing)[0]}"
        )
    for sub in ("train/good", "test/good"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for p in free:
        shutil.copyfile(p, out / ("train" if p.name in train_names else "test") / GOOD / p.name)
    for folder, defect in MTD_DEFECTS.items():
        images = sorted((raw / folder / "Imgs").glob("*.jpg"))
        if not images:
            raise DownloadError(f"no images in {raw / folder / 'Imgs'}")
        (out / "test" / defect).mkdir(parents=True)
        (out / "ground_truth" / defect).mkdir(parents=True)
        for p in images:
            shutil.copyfile(p, out / "test" / defect / p.name)
            mask_src = p.with_suffix(".png")
            if not mask_src.is_file():
                raise DownloadError(f"MTD image {p} has no mask {mask_src.name}")
            with Image.open(mask_src) as m:
                gray = m.convert("L")
            binary = gray.point(lambda v: 255 if v > 127 else 0)
            binary.save(out / "ground_truth" / defect / f"{p.stem}_mask.png")


class MTD(os.PathLike):
    """The Magnetic Tile Defects dataset on disk, downloaded and laid out on first use.

    Parameters
    ----------
    root:
        The data root; the dataset lives in ``ROOT/mtd``.
    download:
        Download the public GitHub repository when the folder is missing.
    """

    def __init__(self, root: str | os.PathLike = "datasets", download: bool = True, progress: Progress = True) -> None:
        self.path = Path(root) / "mtd"
        if not self.path.exists():
            if not download:
                raise DatasetNotFoundError(f"MTD not found at {self.path} (download=False)")
            fetch_and_build(MTD_URL, self.path, self._build, "MTD", progress)
        verify_layout(self.path)

    @staticmethod
    def _build(unpacked: Path, out: Path) -> None:
        layout_mtd(unpacked, out)
        verify_layout(out)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"MTD(root={str(self.path.parent)!r})"
