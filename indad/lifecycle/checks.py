"""``indad check``: what is wrong with a dataset before a model learns it.

Unreadable files, exact duplicates (SHA-256) and near duplicates (a 64-bit
difference hash), the same image in train and test, image sizes and modes that
differ, masks that do not match their image, and training images that look
defective: each good training image is scored by a model fitted on the other
folds (k-fold) and those far above the rest (robust z-score: distance from the
median in median absolute deviations) are listed with their score and heatmap.
"""

from __future__ import annotations

import collections
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.images import list_images
from ..data.layout import GOOD, is_dataset_root
from ..errors import InputError
from ..lineage import file_sha256
from ..progress import Progress

NEAR_BITS = 6
"""Largest Hamming distance (of 64 bits) between difference hashes of near duplicates."""
NEAR_GREY = (1.5, 10.0)
"""Largest mean and 99th-percentile absolute difference (grey levels, 32x32 thumbnails) of near duplicates: images
of one kind of part (hazelnuts on black) often share a difference hash; the thumbnails tell a resized copy
(hazelnut: mean 0.1, 99 % 1) from another part (mean 3.4 to 3.9, 99 % 24 to 28)."""
OUTLIER_Z = 3.5
"""Robust z-score above which a training image looks defective."""


def difference_hash(image: Image.Image) -> int:
    """A 64-bit perceptual hash: whether each pixel of a 9x8 grey thumbnail is brighter than its right neighbour."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    """Bits in which two hashes differ."""
    return (a ^ b).bit_count()


@dataclass
class ImageInfo:
    """One file's facts: where it is, its part of the dataset, hashes, size and mode (or why it is unreadable)."""

    path: Path
    part: str
    sha256: str = ""
    dhash: int = 0
    size: tuple[int, int] = (0, 0)
    mode: str = ""
    error: str = ""
    thumb: np.ndarray | None = None


def inspect_image(path: Path, part: str) -> ImageInfo:
    """The facts of one image file (never raises: an unreadable file gets its error)."""
    info = ImageInfo(path, part)
    try:
        info.sha256 = file_sha256(path)
        with Image.open(path) as im:
            im.load()
            info.size, info.mode, info.dhash = im.size, im.mode, difference_hash(im)
            info.thumb = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)
    except Exception as exc:  # any unreadable file is a finding, not a crash
        info.error = f"{type(exc).__name__}: {exc}"
    return info


@dataclass
class CheckReport:
    """What :func:`check_dataset` found (paths as strings)."""

    root: str
    counts: dict[str, int] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    test_in_train: list[dict[str, Any]] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    odd_formats: list[dict[str, str]] = field(default_factory=list)
    masks: list[dict[str, str]] = field(default_factory=list)
    suspects: list[dict[str, Any]] = field(default_factory=list)
    folds: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the JSON report)."""
        return asdict(self)

    def findings(self) -> int:
        """How many problems were found."""
        found: list[list[Any]] = [self.unreadable, self.duplicates, self.near_duplicates, self.test_in_train]
        return sum(len(x) for x in [*found, self.odd_formats, self.masks, self.suspects])

    def table(self) -> list[str]:
        """The report as terminal lines: a summary table, then each finding."""
        return self.summary() + self.details()

    def summary(self) -> list[str]:
        """The counts as terminal lines."""
        lines = [f"{self.root}: " + ", ".join(f"{n} {part}" for part, n in self.counts.items())]
        rows = [
            ("unreadable files", len(self.unreadable)),
            ("exact duplicate groups", len(self.duplicates)),
            (f"near duplicates (<= {NEAR_BITS} of 64 bits)", len(self.near_duplicates)),
            ("test images also in train", len(self.test_in_train)),
            ("images of a rare size or mode", len(self.odd_formats)),
            ("mask problems", len(self.masks)),
            (f"training images that look defective ({self.folds}-fold)" if self.folds else "k-fold: skipped",
             len(self.suspects)),
        ]  # fmt: skip
        return lines + [f"  {name:<46} {n:>5}" for name, n in rows]

    def details(self) -> list[str]:
        """Each finding as a terminal line."""
        lines = [f"unreadable: {u['path']}: {u['error']}" for u in self.unreadable]
        lines += ["duplicates: " + " = ".join(group) for group in self.duplicates]
        lines += [f"near duplicates ({n['bits']} bits): {n['a']} ~ {n['b']}" for n in self.near_duplicates]
        lines += [f"test in train ({t['how']}): {t['test']} ~ {t['train']}" for t in self.test_in_train]
        lines += [f"size/mode {o['format']} (most are {o['usual']}): {o['path']}" for o in self.odd_formats]
        lines += [f"mask: {m['path']}: {m['problem']}" for m in self.masks]
        lines += [
            f"looks defective: {s['path']} score {s['score']:.4g} (z {s['z']:.1f})"
            + (f" heatmap {s['heatmap']}" if s.get("heatmap") else "")
            for s in self.suspects
        ]
        return lines


def dataset_files(root: Path) -> dict[str, list[Path]]:
    """The image files by part: ``train`` (train/good), ``test`` (test/*), ``masks`` (ground_truth/*); a plain
    folder of images is all ``train``."""
    if not is_dataset_root(root):
        return {"train": list_images(root, recursive=True), "test": [], "masks": []}
    parts: dict[str, list[Path]] = {"train": [], "test": [], "masks": []}
    if (root / "train" / GOOD).is_dir():
        parts["train"] = list_images(root / "train" / GOOD)
    for name, sub in (("test", "test"), ("masks", "ground_truth")):
        if (root / sub).is_dir():
            parts[name] = [p for d in sorted((root / sub).iterdir()) if d.is_dir() for p in list_images(d)]
    return parts


def _duplicates(infos: list[ImageInfo], report: CheckReport) -> None:
    by_hash: dict[str, list[ImageInfo]] = collections.defaultdict(list)
    for info in infos:
        by_hash[info.sha256].append(info)
    for group in by_hash.values():
        for part in ("train", "test"):
            same = [str(i.path) for i in group if i.part == part]
            if len(same) > 1:
                report.duplicates.append(same)
        trains = [i for i in group if i.part == "train"]
        for t in (i for i in group if i.part == "test" and trains):
            report.test_in_train.append({"test": str(t.path), "train": str(trains[0].path), "how": "identical"})
    exact = {(i.path, j.path) for g in by_hash.values() for i in g for j in g}
    hashes = np.asarray([i.dhash for i in infos], dtype=np.uint64)
    for a, info in enumerate(infos):
        diff = np.bitwise_xor(hashes[a + 1 :], np.uint64(info.dhash))
        bits = np.unpackbits(diff.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1) if diff.size else diff
        for b in np.flatnonzero(bits <= NEAR_BITS):
            other = infos[a + 1 + int(b)]
            if (info.path, other.path) in exact or not _same_thumb(info, other):
                continue
            if {info.part, other.part} == {"train", "test"}:
                test, train = (info, other) if info.part == "test" else (other, info)
                how = f"near, {int(bits[b])} bits"
                report.test_in_train.append({"test": str(test.path), "train": str(train.path), "how": how})
            else:
                report.near_duplicates.append({"a": str(info.path), "b": str(other.path), "bits": int(bits[b])})


def _same_thumb(a: ImageInfo, b: ImageInfo) -> bool:
    if a.thumb is None or b.thumb is None:
        return False
    diff = np.abs(a.thumb - b.thumb)
    return float(diff.mean()) <= NEAR_GREY[0] and float(np.quantile(diff, 0.99)) <= NEAR_GREY[1]


def _formats(infos: list[ImageInfo], report: CheckReport) -> None:
    def key(i: ImageInfo) -> str:
        return f"{i.size[0]}x{i.size[1]} {i.mode}"

    counts = collections.Counter(key(i) for i in infos)
    report.formats = dict(counts.most_common())
    if len(counts) > 1:
        usual = counts.most_common(1)[0][0]
        report.odd_formats = [{"path": str(i.path), "format": key(i), "usual": usual} for i in infos if key(i) != usual]


def _masks(root: Path, images: list[ImageInfo], masks: list[ImageInfo], report: CheckReport) -> None:
    by_name = {(m.path.parent.name, m.path.stem): m for m in masks}
    used = set()
    for image in images:
        defect = image.path.parent.name
        if defect == GOOD:
            continue
        mask = by_name.get((defect, f"{image.path.stem}_mask"))
        if mask is None:
            if any(k[0] == defect for k in by_name):
                report.masks.append({"path": str(image.path), "problem": "no mask (its defect type has masks)"})
            continue
        used.add(mask.path)
        if mask.size != image.size:
            (mw, mh), (iw, ih) = mask.size, image.size
            problem = f"mask {mask.path.name} is {mw}x{mh}, the image {iw}x{ih}"
            report.masks.append({"path": str(image.path), "problem": problem})
        elif mask.mode not in ("1", "L", "P", "I", "I;16"):
            report.masks.append({"path": str(mask.path), "problem": f"mask mode {mask.mode} is not one channel"})
    for mask in masks:
        if mask.path not in used and not mask.error:
            report.masks.append({"path": str(mask.path), "problem": "mask without an image"})


def kfold_scores(
    paths: list[Path], folds: int, params: dict[str, Any], progress: Progress = False
) -> tuple[np.ndarray, np.ndarray]:
    """Each image's score and anomaly map from a PatchCore fitted on the other ``folds - 1`` folds."""
    from ..methods import PatchCore

    order = np.random.default_rng(0).permutation(len(paths))
    scores = np.zeros(len(paths), dtype=np.float64)
    maps: list[np.ndarray | None] = [None] * len(paths)
    for k in range(folds):
        held = [int(i) for i in order[k::folds]]
        rest = [paths[int(i)] for i in order if int(i) not in set(held)]
        model = PatchCore(**params, progress=progress).fit(rest)
        pred = model.predict([paths[i] for i in held])
        for j, i in enumerate(held):
            scores[i], maps[i] = pred.scores[j], pred.maps[j]
    return scores, np.stack([m for m in maps if m is not None])


def robust_z(scores: np.ndarray) -> np.ndarray:
    """Distance of each score above the median, in (normal-consistent) median absolute deviations."""
    median = np.median(scores)
    mad = 1.4826 * np.median(np.abs(scores - median)) or float(np.std(scores)) or 1.0
    return (scores - median) / mad


def check_dataset(
    root: str | os.PathLike,
    folds: int = 5,
    image_size: int = 128,
    f_coreset: float = 0.1,
    device: str = "auto",
    heatmaps: str | os.PathLike | None = None,
    progress: Progress = False,
) -> CheckReport:
    """Check a dataset folder (MVTec AD layout, or a folder of good images); see the module's docstring.

    ``folds`` >= 2 scores each training image with a PatchCore (``image_size``,
    ``f_coreset``) fitted on the other folds; 0 skips it. With ``heatmaps``, the
    suspects' heatmaps are written there.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"no such dataset folder: {root}")
    if folds == 1:
        raise InputError("folds must be 0 (skip) or at least 2")
    parts = dataset_files(root)
    report = CheckReport(str(root), {part: len(files) for part, files in parts.items() if files}, folds=folds)
    infos = {part: [inspect_image(p, part) for p in files] for part, files in parts.items()}
    for info in (i for group in infos.values() for i in group if i.error):
        report.unreadable.append({"path": str(info.path), "error": info.error})
    images = [i for part in ("train", "test") for i in infos[part] if not i.error]
    _duplicates(images, report)
    _formats(images, report)
    _masks(root, [i for i in infos["test"] if not i.error], infos["masks"], report)
    train = [i.path for i in infos["train"] if not i.error]
    if folds and len(train) >= 2 * folds:
        params = {"image_size": image_size, "f_coreset": f_coreset, "device": device}
        scores, maps = kfold_scores(train, folds, params, progress)
        z = robust_z(scores)
        for i in np.argsort(-z):
            if z[i] <= OUTLIER_Z:
                break
            suspect: dict[str, Any] = {"path": str(train[i]), "score": float(scores[i]), "z": float(z[i])}
            if heatmaps is not None:
                suspect["heatmap"] = str(_write_heatmap(Path(heatmaps), train[i], maps[i], float(np.median(scores))))
            report.suspects.append(suspect)
    return report


def quick_warnings(root: str | os.PathLike) -> list[str]:
    """The findings of a check without k-fold scoring, as warning lines (``indad fit`` prints them)."""
    try:
        report = check_dataset(root, folds=0)
    except InputError:
        return []
    return ["dataset check: " + line for line in report.details()]


def _write_heatmap(folder: Path, path: Path, amap: np.ndarray, reference: float) -> Path:
    from ..files import atomic_output
    from ..inference.visualize import heatmap_image

    target = folder / f"{path.stem}_heatmap.png"
    with atomic_output(target) as tmp:
        heatmap_image(amap, max(2.0 * reference, float(amap.max()))).save(tmp, format="PNG")
    return target
