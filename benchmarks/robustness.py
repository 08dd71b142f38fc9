"""Robustness to what a line changes (issue 26): lighting, pose, optics and encoding; and few good images.

For each method x dataset x seed x lever, the model is fitted on train/good with 10% held out for its thresholds
(quantile 0.99 of the held-out good scores), then the test images are scored unchanged and after each change
below, applied to the image at its own resolution (the defect masks moved by the same pose change). Per change:
the share of good test images flagged at the model's image threshold, and image / pixel ROC AUC of the changed
good against the equally changed defective images. Mean and spread (sample standard deviation) over the seeds.

Changes: brightness x0.85 / x1.15, contrast x0.8 / x1.2, gamma 0.8 / 1.25, rotation 1 and 3 degrees and a shift of
8 px (borders mirrored), scale x0.97 / x1.03, Gaussian blur sigma 0.5 and 1, sensor noise (sigma 0.02 of the
range, seeded), JPEG quality 70 and 90 (Pillow, a real encode and decode).

Levers (``--levers``): ``none`` (the method's defaults), ``variation`` (the fit adds one changed copy of each good
image with :data:`VARIATION`, the variation matching the changes), ``photometric`` (per-image standardisation),
``both`` (the two), ``align`` (registration to the first training image).

``--few-shot``: image ROC AUC (unchanged test images) against the number of good training images (1, 2, 4, 8, 16,
all; drawn by the seed from train/good), without and with the variation lever; no thresholds. Published few-shot
PatchCore on MVTec AD (WinCLIP paper): 83.4 / 86.3 / 88.8 image ROC AUC at 1 / 2 / 4 shots.

Usage (from the repository root; DATA = $INDAD_DATA_DIR, else ../shared/datasets):

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/robustness.py --quick        # PatchCore, hazelnut_reduced
    .venv/bin/python benchmarks/robustness.py --methods patchcore,padim,spade \\
        --datasets mtd,hazelnut_reduced,transistor_reduced --seeds 0,1,2 --levers none,variation,photometric,both
    .venv/bin/python benchmarks/robustness.py --few-shot --datasets hazelnut_reduced --seeds 0,1,2

Options: ``--changes`` (comma list of change names, default all), ``--image-size`` (default: the method's),
``--markdown FILE`` (also write the tables there).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see DEVELOPERS.md)

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indad.data import read_image, read_mask, scan_test, train_paths  # noqa: E402
from indad.data.variation import gaussian_blur, jpeg_roundtrip, pose_matrix, theta_of, warp  # noqa: E402
from indad.methods import METHODS, AnomalyModel  # noqa: E402
from indad.metrics import image_auroc, pixel_auroc  # noqa: E402

VARIATION = {
    "brightness": 0.15,
    "contrast": 0.2,
    "gamma": 0.25,
    "rotate": 3,
    "shift": 2,  # working-image pixels: 8 px of a 1024 px image at 256
    "scale": 0.03,
    "blur": 0.5,
    "noise": 0.02,
    "jpeg": 70,
}
"""The variation lever: the changes below, as the fit's expected variation."""
LEVERS: dict[str, dict[str, Any]] = {
    "none": {},
    "variation": {"variation": VARIATION},
    "photometric": {"photometric": "standardize"},
    "both": {"variation": VARIATION, "photometric": "standardize"},
    "align": {"align": "reference"},
}
SHOTS = (1, 2, 4, 8, 16, 0)  # 0: all
Tensor = torch.Tensor


def _pose(angle: float = 0.0, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> Callable:
    def motion(size: tuple[int, int]) -> Tensor:
        return theta_of(pose_matrix(size, angle, zoom, shift), size)

    return motion


def _noise(x: Tensor, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return x + 0.02 * torch.randn(x.shape, generator=g)


# name -> (photometric change of a (3, H, W) 0..1 image and its seed, or None; pose change, or None)
CHANGES: dict[str, tuple[Callable[[Tensor, int], Tensor] | None, Callable | None]] = {
    "none": (None, None),
    "brightness x0.85": (lambda x, s: x * 0.85, None),
    "brightness x1.15": (lambda x, s: x * 1.15, None),
    "contrast x0.8": (lambda x, s: (x - x.mean()) * 0.8 + x.mean(), None),
    "contrast x1.2": (lambda x, s: (x - x.mean()) * 1.2 + x.mean(), None),
    "gamma 0.8": (lambda x, s: x.clamp(0, 1) ** 0.8, None),
    "gamma 1.25": (lambda x, s: x.clamp(0, 1) ** 1.25, None),
    "rotate 1": (None, _pose(1.0)),
    "rotate 3": (None, _pose(3.0)),
    "shift 8 px": (None, _pose(shift=(8.0, 8.0))),
    "scale x0.97": (None, _pose(zoom=0.97)),
    "scale x1.03": (None, _pose(zoom=1.03)),
    "blur 0.5": (lambda x, s: gaussian_blur(x[None], 0.5)[0], None),
    "blur 1": (lambda x, s: gaussian_blur(x[None], 1.0)[0], None),
    "noise 0.02": (_noise, None),
    "jpeg 90": (lambda x, s: jpeg_roundtrip(x.clamp(0, 1), 90), None),
    "jpeg 70": (lambda x, s: jpeg_roundtrip(x.clamp(0, 1), 70), None),
}


def data_dir() -> Path:
    return Path(os.environ.get("INDAD_DATA_DIR") or REPO.parent / "shared" / "datasets")


def changed(image: Image.Image, mask: np.ndarray | None, change: str, seed: int) -> tuple[Image.Image, np.ndarray]:
    """``image`` (and its mask, None: empty) after ``change``, at the image's own resolution."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    m = torch.zeros(x.shape[1:]) if mask is None else torch.from_numpy(mask.astype(np.float32))
    colour, pose = CHANGES[change]
    if pose is not None:
        theta = pose(tuple(x.shape[1:]))[None]
        x = warp(x[None], theta)[0]
        m = warp(m[None, None], theta, padding="zeros")[0, 0]
    if colour is not None:
        x = colour(x, seed)
    array = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array), m.numpy() > 0.5


def build(method: str, seed: int, lever: str, image_size: int | None) -> AnomalyModel:
    params: dict[str, Any] = {"seed": seed, "progress": False, **LEVERS[lever]}
    if image_size:
        params["image_size"] = image_size
    return METHODS[method](**params)


def score(model: AnomalyModel, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    batch = torch.stack([model.preprocess.image(im) for im in images])
    scores, maps = [], []
    for chunk in batch.split(model.batch_size):
        s, m = model.score_batch(chunk)
        scores.append(s)
        maps.append(m)
    return np.concatenate(scores), np.concatenate(maps)


def robustness_cell(method: str, dataset: str, seed: int, lever: str, changes: list[str], size: int | None) -> dict:
    """Fit once, score every change: ``{change: {"flagged", "image_auroc", "pixel_auroc"}}``."""
    root = data_dir() / dataset
    model = build(method, seed, lever, size).fit(root, holdout=0.1, quantile=0.99)
    assert model.thresholds is not None
    samples = scan_test(root)
    originals = [read_image(s.path) for s in samples]
    masks = [None if s.mask_path is None else read_mask(s.mask_path) for s in samples]
    labels = np.array([s.label for s in samples])
    out = {}
    for change in changes:
        pairs = [
            changed(im, mk, change, seed * 100_003 + i) for i, (im, mk) in enumerate(zip(originals, masks, strict=True))
        ]
        scores, maps = score(model, [p[0] for p in pairs])
        pixel_masks = np.stack([model.preprocess.mask(p[1]).numpy() for p in pairs])
        good = labels == 0
        out[change] = {
            "flagged": float(np.mean(scores[good] >= model.thresholds.image)),
            "image_auroc": image_auroc(labels, scores),
            "pixel_auroc": pixel_auroc(pixel_masks, maps),
        }
    return out


def few_shot_cell(method: str, dataset: str, seed: int, lever: str, shots: int, size: int | None) -> float:
    """Image ROC AUC (unchanged test images) of a model fitted on ``shots`` good images (0: all)."""
    root = data_dir() / dataset
    paths = sorted(train_paths(root, "few-shot"))
    chosen = paths if shots == 0 else random.Random(seed).sample(paths, min(shots, len(paths)))
    model = build(method, seed, lever, size).fit(chosen)
    return float(model.evaluate(root)["image_auroc"])


def mean_spread(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f}" + (f" +-{spread:.3f}" if len(values) > 1 else "")


def robustness_tables(args: argparse.Namespace) -> list[str]:
    lines = []
    for method in args.methods:
        for dataset in args.datasets:
            header = f"\n### {method} on {dataset} (seeds {','.join(map(str, args.seeds))})\n"
            columns = [f"{lever}: {what}" for lever in args.levers for what in ("flagged", "image", "pixel")]
            rows = {c: {k: [] for k in columns} for c in args.changes}
            for lever in args.levers:
                for seed in args.seeds:
                    start = time.perf_counter()
                    cell = robustness_cell(method, dataset, seed, lever, args.changes, args.image_size)
                    print(f"  {method} {dataset} seed {seed} {lever}: {time.perf_counter() - start:.0f} s", flush=True)
                    for change, values in cell.items():
                        rows[change][f"{lever}: flagged"].append(values["flagged"])
                        rows[change][f"{lever}: image"].append(values["image_auroc"])
                        rows[change][f"{lever}: pixel"].append(values["pixel_auroc"])
            table = [header, "| change | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
            for change, values in rows.items():
                table.append(f"| {change} | " + " | ".join(mean_spread(values[c]) for c in columns) + " |")
            lines += table
            print("\n".join(table), flush=True)
    return lines


def few_shot_tables(args: argparse.Namespace) -> list[str]:
    lines = []
    for method in args.methods:
        for dataset in args.datasets:
            seeds = ",".join(map(str, args.seeds))
            table = [
                f"\n### few good images: {method} on {dataset}, image ROC AUC (seeds {seeds})\n",
                "| good images | " + " | ".join(args.levers) + " |",
                "|---" * (len(args.levers) + 1) + "|",
            ]
            for shots in args.shots:
                cells = [
                    mean_spread([few_shot_cell(method, dataset, s, lever, shots, args.image_size) for s in args.seeds])
                    for lever in args.levers
                ]
                table.append(f"| {shots or 'all'} | " + " | ".join(cells) + " |")
                print(table[-1], flush=True)
            lines += table
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="patchcore,padim,spade")
    parser.add_argument("--datasets", default="mtd,hazelnut_reduced,transistor_reduced")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--levers", default=None, help="none, variation, photometric, both, align (comma list)")
    parser.add_argument("--changes", default=",".join(CHANGES))
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--few-shot", action="store_true", help="the curve against the number of good images")
    parser.add_argument("--shots", default="1,2,4,8,16,all")
    parser.add_argument("--quick", action="store_true", help="PatchCore on hazelnut_reduced, seed 0")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.methods, args.datasets, args.seeds = "patchcore", "hazelnut_reduced", "0"
    args.methods = args.methods.split(",")
    args.datasets = args.datasets.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    default_levers = "none,variation" if args.few_shot or args.quick else "none,variation,photometric,both"
    args.levers = (args.levers or default_levers).split(",")
    args.changes = args.changes.split(",")
    args.shots = [0 if s == "all" else int(s) for s in args.shots.split(",")]
    for name, known, what in ((args.changes, CHANGES, "change"), (args.levers, LEVERS, "lever")):
        unknown = [n for n in name if n not in known]
        if unknown:
            parser.error(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    start = time.perf_counter()
    lines = few_shot_tables(args) if args.few_shot else robustness_tables(args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
