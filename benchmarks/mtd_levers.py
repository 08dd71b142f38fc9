"""Levers on PatchCore's MTD ceiling (issue 18): train-time symmetries, ensembles, per-member normalisation.

A *member* is one fitted PatchCore (backbone, image size, training symmetries,
strides); a *lever* is one member alone or several members fused (maps resized
to 256 x 256 and averaged, image scores averaged). Most members are fitted on
90% of train/good (``split_holdout``, seed 0): the held-out 10% gives the
statistics that normalise their scores before a ``z`` fusion, and such levers
are compared with ``baseline`` (the default fitted alike). ``default`` and the
``*_all`` members are fitted on all of train/good, and levers made of them only
are compared with ``default``. Each member's test scores and maps (float16) are
cached under ``--work-dir`` (default ``/tmp/indad_levers``), so a fusion costs
no fit and a stopped run resumes where it was. Results: docs/accuracy.md,
"Pushing MTD's ceiling (levers)".

Usage (from the repository root)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/mtd_levers.py --datasets mtd --members lite0_256,lite1_256
    .venv/bin/python benchmarks/mtd_levers.py --datasets mtd,hazelnut_reduced --table-only --json levers.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see DEVELOPERS.md)

import accuracy  # benchmarks/accuracy.py: the datasets and their stand-ins
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from indad.data import split_holdout
from indad.data.images import read_image
from indad.methods import PatchCore
from indad.metrics import evaluate_predictions

MAP_SIZE = 256
HOLDOUT = 0.1
F_CORESET = 0.01

Transform = Callable[[torch.Tensor], torch.Tensor]
SYMMETRIES: dict[str, Transform] = {
    "id": lambda x: x,
    "h": lambda x: x.flip(-1),
    "v": lambda x: x.flip(-2),
    "hv": lambda x: x.flip(-2, -1),
    "r90": lambda x: x.rot90(1, (-2, -1)),
    "r270": lambda x: x.rot90(3, (-2, -1)),
    "t": lambda x: x.transpose(-2, -1),
    "at": lambda x: x.flip(-2, -1).transpose(-2, -1),
}


@dataclass(frozen=True)
class Member:
    """One PatchCore fit: backbone, square image size, training symmetries (``"id"`` first).

    ``fold_back``: after the held-out images have given their statistics, they
    join the bank (``add_normal``), so the bank learns from all of train/good.
    """

    backbone: str = "tf_efficientnet_lite0"
    image_size: int = 256
    symmetries: tuple[str, ...] = ("id",)
    holdout: float = HOLDOUT
    strides: tuple[int, ...] = (8, 16)
    fold_back: bool = False


MEMBERS: dict[str, Member] = {
    "default": Member(holdout=0.0),
    "lite0_256": Member(),
    "lite0_256_fb": Member(fold_back=True),
    "lite0_256_flip": Member(symmetries=("id", "h", "v", "hv")),
    "lite0_256_rot": Member(symmetries=("id", "r90", "hv", "r270")),
    "lite0_256_d4": Member(symmetries=("id", "h", "v", "hv", "r90", "r270", "t", "at")),
    "lite1_256": Member(backbone="tf_efficientnet_lite1"),
    "lite2_256": Member(backbone="tf_efficientnet_lite2"),
    "lite0_320": Member(image_size=320),
    "lite0_384": Member(image_size=384),
    "lite1_256_all": Member(backbone="tf_efficientnet_lite1", holdout=0.0),
    "lite2_256_all": Member(backbone="tf_efficientnet_lite2", holdout=0.0),
    "lite0_320_all": Member(image_size=320, holdout=0.0),
    "lite0_256_s8": Member(strides=(8,)),
    "lite0_256_s16": Member(strides=(16,)),
    "lite1_256_flip": Member(backbone="tf_efficientnet_lite1", symmetries=("id", "h", "v", "hv")),
    "lite2_256_flip": Member(backbone="tf_efficientnet_lite2", symmetries=("id", "h", "v", "hv")),
    "lite0_320_flip": Member(image_size=320, symmetries=("id", "h", "v", "hv")),
}


@dataclass(frozen=True)
class Lever:
    """Members fused into one score: ``fusion`` is ``"none"`` (one member), ``"z"`` or ``"raw"``.

    ``"z"``: each member's image scores and maps standardised by the mean and
    standard deviation of its held-out good images (image scores; map pixels),
    then averaged. ``"raw"``: averaged as they are. With ``image="max_map"`` the
    fused image score is the maximum of the fused map instead of the mean score.
    """

    members: tuple[str, ...]
    fusion: str = "none"
    image: str = "mean_score"
    note: str = ""


LEVERS: dict[str, Lever] = {
    "default": Lever(("default",), note="PatchCore default, fit on all train/good"),
    "baseline": Lever(("lite0_256",), note="the default fit on 90% of train/good"),
    "baseline_fb": Lever(("lite0_256_fb",), note="the default fit on 90%, then the other 10% added"),
    "flip": Lever(("lite0_256_flip",), note="bank from train/good + h, v, hv flips"),
    "rot": Lever(("lite0_256_rot",), note="bank from train/good + 90/180/270 rotations"),
    "d4": Lever(("lite0_256_d4",), note="bank from all 8 flips/rotations"),
    "lite1": Lever(("lite1_256",)),
    "lite2": Lever(("lite2_256",)),
    "lite0_320": Lever(("lite0_320",)),
    "lite0_384": Lever(("lite0_384",)),
    "backbones_z": Lever(("lite0_256", "lite1_256", "lite2_256"), "z", note="lite0+1+2, z-normalised"),
    "backbones_raw": Lever(("lite0_256", "lite1_256", "lite2_256"), "raw", note="lite0+1+2, not normalised"),
    "backbones_zmap": Lever(("lite0_256", "lite1_256", "lite2_256"), "z", "max_map", "lite0+1+2, max of z map"),
    "lite12_z": Lever(("lite1_256", "lite2_256"), "z", note="lite1+2, z-normalised"),
    "res_256_320_z": Lever(("lite0_256", "lite0_320"), "z", note="lite0 at 256 + 320, z-normalised"),
    "res_256_320_raw": Lever(("lite0_256", "lite0_320"), "raw", note="lite0 at 256 + 320, not normalised"),
    "res_256_384_z": Lever(("lite0_256", "lite0_384"), "z", note="lite0 at 256 + 384, z-normalised"),
    "strides_z": Lever(("lite0_256_s8", "lite0_256_s16"), "z", note="one bank per stride, z-normalised"),
    "strides_raw": Lever(("lite0_256_s8", "lite0_256_s16"), "raw", note="one bank per stride, summed as is"),
    "backbones_res_z": Lever(("lite0_256", "lite1_256", "lite2_256", "lite0_320"), "z", note="lite0+1+2 + lite0@320"),
    "lite1_all": Lever(("lite1_256_all",)),
    "lite2_all": Lever(("lite2_256_all",)),
    "lite0_320_all": Lever(("lite0_320_all",)),
    "all_backbones_raw": Lever(
        ("default", "lite1_256_all", "lite2_256_all"), "raw", note="lite0+1+2 fit on all train/good, not normalised"
    ),
    "all_res_raw": Lever(("default", "lite0_320_all"), "raw", note="lite0 at 256 + 320 on all train/good"),
    "all_backbones_res_raw": Lever(
        ("default", "lite1_256_all", "lite2_256_all", "lite0_320_all"), "raw", note="lite0+1+2 + lite0@320, all"
    ),
    "flip_backbones_z": Lever(
        ("lite0_256_flip", "lite1_256_flip", "lite2_256_flip"), "z", note="lite0+1+2, each with flips"
    ),
    "flip_lite12_z": Lever(("lite1_256_flip", "lite2_256_flip"), "z", note="lite1+2, each with flips"),
    "flip_res_z": Lever(("lite0_256_flip", "lite0_320_flip"), "z", note="lite0 at 256 + 320, each with flips"),
}


@dataclass
class Cached:
    """One member's results on one dataset, as saved under the work directory."""

    scores: np.ndarray
    maps: np.ndarray
    held_scores: np.ndarray
    held_pixel: tuple[float, float]
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------- datasets
def dataset_root(name: str, stand_ins: Path) -> Path:
    """The folder of dataset ``name``: ``benchmarks/accuracy.py``'s (stand-ins built under ``stand_ins/datasets``)."""
    return accuracy.dataset_root(name, stand_ins)


# ----------------------------------------------------------------- members
class SymmetricImages(Dataset):
    """Each training image under each of ``symmetries`` (applied to the preprocessed tensor), image by image."""

    def __init__(self, paths: Sequence[Path], model: PatchCore, symmetries: Sequence[str]) -> None:
        self.paths = list(paths)
        self.preprocess = model.preprocess
        self.symmetries = [SYMMETRIES[s] for s in symmetries]

    def __len__(self) -> int:
        return len(self.paths) * len(self.symmetries)

    def __getitem__(self, index: int) -> dict:
        path, k = divmod(index, len(self.symmetries))
        image = self.preprocess.image(read_image(self.paths[path]))
        return {"image": self.symmetries[k](image).contiguous()}


def build_model(member: Member) -> PatchCore:
    """PatchCore as the member asks; with symmetries the bank keeps as many patches as without (1% of one copy)."""
    return PatchCore(
        backbone_name=member.backbone,
        image_size=member.image_size,
        strides=member.strides,
        f_coreset=F_CORESET / len(member.symmetries),
        progress=False,
    )


def fit_member(model: PatchCore, member: Member, root: Path) -> list[Path]:
    """Fit on train/good (less the held-out share) under the member's symmetries; the held-out paths."""
    if not member.holdout:
        model.fit(root)
        return []
    kept, held = split_holdout(root, member.holdout, model.seed)
    if member.symmetries == ("id",):
        model.fit(kept)
    else:
        images = SymmetricImages(kept, model, member.symmetries)
        model.fit(DataLoader(images, batch_size=model.batch_size, shuffle=False))
    return held


def add_back(model: PatchCore, member: Member, held: list[Path]) -> None:
    """Add the held-out images (under the member's symmetries) to the fitted bank."""
    if member.symmetries == ("id",):
        model.add_normal(held)
    else:
        images = SymmetricImages(held, model, member.symmetries)
        model.add_normal(DataLoader(images, batch_size=model.batch_size, shuffle=False))


def to_map_size(maps: np.ndarray) -> np.ndarray:
    """Anomaly maps ``(N, H, W)`` resized bilinearly to ``MAP_SIZE`` square (unchanged when they are)."""
    if maps.shape[-2:] == (MAP_SIZE, MAP_SIZE):
        return maps.astype(np.float32)
    t = torch.from_numpy(maps.astype(np.float32))[:, None]
    return F.interpolate(t, size=(MAP_SIZE, MAP_SIZE), mode="bilinear", align_corners=False)[:, 0].numpy()


def run_member(name: str, root: Path) -> Cached:
    """Fit member ``name`` on ``root``, score its held-out and test images; everything :func:`save_member` keeps."""
    member = MEMBERS[name]
    torch.manual_seed(0)
    model = build_model(member)
    start = time.perf_counter()
    held = fit_member(model, member, root)
    fit_s = time.perf_counter() - start
    held_scores, held_pixel = np.zeros(0), (0.0, 1.0)
    if held:
        pred = model.predict(held)
        held_maps = to_map_size(pred.maps)
        held_scores, held_pixel = pred.scores, (float(held_maps.mean()), float(held_maps.std()))
        if member.fold_back:
            start = time.perf_counter()
            add_back(model, member, held)
            fit_s += time.perf_counter() - start
    result = model.evaluate(root, keep_maps=True)
    meta = {
        "member": name,
        "fit_s": fit_s,
        "timings": dict(model.timings),
        "bank": int(model.memory_bank.shape[0]) if model.memory_bank is not None else 0,
        "predict_ms_per_image": result["predict_ms_per_image"],
        "labels": result["labels"],
        "defects": result["defects"],
        "paths": result["paths"],
        "own": {k: result[k] for k in ("image_auroc", "pixel_auroc", "aupro")},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    maps = to_map_size(result["maps"]).astype(np.float16)
    return Cached(np.asarray(result["scores"]), maps, np.asarray(held_scores), held_pixel, meta)


def member_dir(work: Path, dataset: str, name: str) -> Path:
    """Where member ``name``'s results on ``dataset`` are kept."""
    return work / dataset / name


def save_member(folder: Path, cached: Cached) -> None:
    """Write a member's results (written to a temporary folder, then renamed: all or nothing)."""
    tmp = folder.with_name(f".{folder.name}.tmp{time.time_ns()}")
    tmp.mkdir(parents=True)
    np.save(tmp / "scores.npy", cached.scores)
    np.save(tmp / "maps.npy", cached.maps)
    np.save(tmp / "held_scores.npy", cached.held_scores)
    meta = {**cached.meta, "held_pixel": list(cached.held_pixel)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    tmp.rename(folder)


def load_member(folder: Path, with_maps: bool = True) -> Cached | None:
    """A member's saved results, or None when not measured."""
    if not (folder / "meta.json").exists():
        return None
    meta = json.loads((folder / "meta.json").read_text())
    maps = np.load(folder / "maps.npy", mmap_mode="r") if with_maps else np.zeros(0)
    held = np.load(folder / "held_scores.npy")
    return Cached(np.load(folder / "scores.npy"), maps, held, tuple(meta["held_pixel"]), meta)


def masks_for(work: Path, dataset: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth masks at ``MAP_SIZE`` of the test images, and which images have one (cached)."""
    path = work / dataset / "masks.npz"
    if not path.exists():
        model = PatchCore(image_size=MAP_SIZE, progress=False)
        masks, has = [], []
        for batch in model.iter_batches(root, "test", "masks"):
            masks.append(batch["mask"].numpy())
            has.append(np.asarray(batch["has_mask"], dtype=bool))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, masks=np.concatenate(masks), has=np.concatenate(has))
    data = np.load(path)
    return data["masks"], data["has"]


# ----------------------------------------------------------------- fusion
def standardise(cached: Cached) -> tuple[np.ndarray, np.ndarray]:
    """Image scores and maps as z-scores of the held-out good images (scores: image scores; maps: map pixels)."""
    mu, sd = float(cached.held_scores.mean()), float(cached.held_scores.std()) or 1.0
    pix_mu, pix_sd = cached.held_pixel
    return (cached.scores - mu) / sd, (np.asarray(cached.maps, dtype=np.float32) - pix_mu) / (pix_sd or 1.0)


def fuse(members: Sequence[Cached], lever: Lever) -> tuple[np.ndarray, np.ndarray]:
    """The lever's image scores ``(N,)`` and maps ``(N, H, W)`` from its members' cached results."""
    if lever.fusion == "none":
        return members[0].scores, np.asarray(members[0].maps, dtype=np.float32)
    parts = [standardise(c) if lever.fusion == "z" else (c.scores, np.asarray(c.maps, np.float32)) for c in members]
    maps = np.mean([m for _, m in parts], axis=0)
    scores = maps.max(axis=(1, 2)) if lever.image == "max_map" else np.mean([s for s, _ in parts], axis=0)
    return scores, maps


def lever_result(work: Path, dataset: str, root: Path, name: str) -> dict | None:
    """Metrics, fit seconds and predict ms/image of lever ``name`` on ``dataset`` (None until its members ran)."""
    lever = LEVERS[name]
    members = [load_member(member_dir(work, dataset, m)) for m in lever.members]
    if any(c is None for c in members):
        return None
    cached = [c for c in members if c is not None]
    if any(c.meta["paths"] != cached[0].meta["paths"] for c in cached):
        raise RuntimeError(f"{dataset}: the members of {name} scored different images")
    scores, maps = fuse(cached, lever)
    masks, has = masks_for(work, dataset, root)
    labels = np.asarray(cached[0].meta["labels"])
    metrics = evaluate_predictions(labels, scores, masks[has], maps[has], cached[0].meta["defects"])
    return {
        "image_auroc": metrics["image_auroc"],
        "pixel_auroc": metrics["pixel_auroc"],
        "aupro": metrics["aupro"],
        "per_defect": metrics["image_auroc_per_defect"],
        "fit_s": sum(c.meta["fit_s"] for c in cached),
        "predict_ms": sum(c.meta["predict_ms_per_image"] for c in cached),
    }


# ----------------------------------------------------------------- tables
def fmt_delta(value: float, base: float | None) -> str:
    """``value`` with its difference from ``base`` (4 decimals, signed; nothing when there is no base)."""
    if base is None or value != value or base != base:
        return f"{value:.4f}"
    return f"{value:.4f} ({value - base:+.4f})"


def reference(lever: str) -> str:
    """The lever compared with: ``default`` when every member learns from all of train/good, else ``baseline``."""
    members = LEVERS[lever].members
    return "default" if all(not MEMBERS[m].holdout or MEMBERS[m].fold_back for m in members) else "baseline"


def table(results: dict[tuple[str, str], dict], datasets: Sequence[str], levers: Sequence[str]) -> str:
    """Markdown table: one row per dataset and lever, with deltas against its :func:`reference` (measured alike)."""
    rows = [
        "| dataset | lever | vs | image ROC AUC (Δ) | pixel ROC AUC (Δ) | AUPRO (Δ) | fit s | predict ms/image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in datasets:
        for name in levers:
            r = results.get((d, name))
            if r is None:
                continue
            ref = reference(name)
            base = None if ref == name else results.get((d, ref))
            cells = [fmt_delta(r[k], None if base is None else base[k]) for k in METRIC_KEYS]
            vs = "–" if ref == name else ref
            rows.append(f"| {d} | {name} | {vs} | {' | '.join(cells)} | {r['fit_s']:.0f} | {r['predict_ms']:.0f} |")
    return "\n".join(rows)


METRIC_KEYS = ("image_auroc", "pixel_auroc", "aupro")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default="mtd", help=f"comma-separated, of {', '.join(accuracy.ALL_DATASETS)}")
    p.add_argument("--members", default="", help=f"members to fit first (cached), of {', '.join(MEMBERS)}")
    p.add_argument("--levers", default=",".join(LEVERS), help="levers to print (those whose members ran)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/indad_levers"))
    p.add_argument("--stand-ins", type=Path, default=Path("/tmp/indad_accuracy"), help="accuracy.py's --work-dir")
    p.add_argument("--table-only", action="store_true", help="fit nothing; print the table from the cache")
    p.add_argument("--rerun", action="store_true", help="fit the members again even when cached")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument("--json", type=Path, help="also write every lever's figures (per defect type too) here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Fit the asked members (cached), then print every lever whose members are measured."""
    args = parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    members = [] if args.table_only else [m for m in args.members.split(",") if m]
    levers = [v for v in args.levers.split(",") if v]
    for name in members + levers:
        if name not in MEMBERS and name not in LEVERS:
            sys.exit(f"unknown member or lever {name!r}")
    roots = {d: dataset_root(d, args.stand_ins) for d in datasets}
    for d in datasets:
        for m in members:
            folder = member_dir(args.work_dir, d, m)
            if folder.exists() and not args.rerun:
                continue
            start = time.perf_counter()
            cached = run_member(m, roots[d])
            if folder.exists():
                folder.rename(folder.with_name(f".{folder.name}.old{time.time_ns()}"))
            save_member(folder, cached)
            own = cached.meta["own"]
            print(
                f"{d} {m}: image {own['image_auroc']:.4f} pixel {own['pixel_auroc']:.4f} aupro {own['aupro']:.4f} "
                f"fit {cached.meta['fit_s']:.0f} s, {time.perf_counter() - start:.0f} s in all",
                flush=True,
            )
    results = {}
    for d in datasets:
        for v in levers:
            r = lever_result(args.work_dir, d, roots[d], v)
            if r is not None:
                results[(d, v)] = r
    text = table(results, datasets, levers)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({f"{d} {v}": r for (d, v), r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
