"""MVTec AD (Bergmann et al. 2019): the 15 classes, downloaded one class at a time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import DatasetNotFoundError, DownloadError
from ..progress import Progress
from .download import fetch_and_build
from .layout import GOOD, verify_layout

_SHARE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download"
MVTEC_URLS: dict[str, str] = {
    "bottle": f"{_SHARE}/420937370-1629951468/bottle.tar.xz",
    "cable": f"{_SHARE}/420937413-1629951498/cable.tar.xz",
    "capsule": f"{_SHARE}/420937454-1629951595/capsule.tar.xz",
    "carpet": f"{_SHARE}/420937484-1629951672/carpet.tar.xz",
    "grid": f"{_SHARE}/420937487-1629951814/grid.tar.xz",
    "hazelnut": f"{_SHARE}/420937545-1629951845/hazelnut.tar.xz",
    "leather": f"{_SHARE}/420937607-1629951964/leather.tar.xz",
    "metal_nut": f"{_SHARE}/420937637-1629952063/metal_nut.tar.xz",
    "pill": "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download/420938129-1629953099/pill.tar.xz",
    "screw": f"{_SHARE}/420938130-1629953152/screw.tar.xz",
    "tile": f"{_SHARE}/420938133-1629953189/tile.tar.xz",
    "toothbrush": f"{_SHARE}/420938134-1629953256/toothbrush.tar.xz",
    "transistor": f"{_SHARE}/420938166-1629953277/transistor.tar.xz",
    "wood": f"{_SHARE}/420938383-1629953354/wood.tar.xz",
    "zipper": f"{_SHARE}/420938385-1629953449/zipper.tar.xz",
}
MVTEC_CLASSES: tuple[str, ...] = tuple(MVTEC_URLS)


class MVTecAD(os.PathLike):
    """One MVTec AD class on disk, downloaded on first use.

    Usable wherever a dataset folder is accepted (``model.fit(MVTecAD("bottle"))``).

    Parameters
    ----------
    class_name:
        One of :data:`MVTEC_CLASSES`.
    root:
        The data root holding one folder per class.
    download:
        Download the class when its folder is missing.
    """

    def __init__(
        self, class_name: str, root: str | os.PathLike = "datasets", download: bool = True, progress: Progress = True
    ) -> None:
        if class_name not in MVTEC_URLS:
            raise DatasetNotFoundError(
                f"unknown MVTec AD class {class_name!r}; the classes are {', '.join(MVTEC_CLASSES)}"
            )
        self.class_name = class_name
        self.path = Path(root) / class_name
        if not self.path.exists():
            if not download:
                raise DatasetNotFoundError(f"MVTec AD class {class_name!r} not found at {self.path} (download=False)")
            fetch_and_build(MVTEC_URLS[class_name], self.path, self._build, f"MVTec AD {class_name}", progress)
        verify_layout(self.path)

    def _build(self, unpacked: Path, out: Path) -> None:
        candidates = [p for p in unpacked.rglob(self.class_name) if p.is_dir() and (p / "train" / GOOD).is_dir()]
        if not candidates:
            raise DownloadError(f"the archive for {self.class_name!r} holds no {self.class_name}/train/good folder")
        shutil.move(str(candidates[0]), out)
        verify_layout(out)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"MVTecAD({self.class_name!r}, root={str(self.path.parent)!r})"
