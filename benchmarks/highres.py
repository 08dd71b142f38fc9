"""High resolution: PatchCore on tiles of a 2,048 px image against PatchCore on the whole image resized to 256 px.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/highres.py [--quick] [--out /tmp/indad_highres]
        [--backgrounds upscaled,mosaic] [--configs whole,tiled256,tiled512]
        [--size 2048] [--train 20] [--good 20] [--defective 30] [--seed 0] [--json FILE]

Run from the repository root with ``PYTHONPATH=.`` to measure this checkout's indad (the first line printed says
which indad was measured, its commit, and ``+dirty`` when its ``indad/`` has changes).

Stand-ins (built once under ``--out/BACKGROUND``, rebuilt when their parameters change; never in the repository),
from MTD (DATA = $INDAD_DATA_DIR, else ../shared/datasets; read-only), good images of aspect ratio at most 1.5:

- background ``upscaled``: each image is one MTD good image upscaled bicubically to ``--size`` x ``--size``
  (about 7x: the surface's fine texture becomes smooth ramps).
- background ``mosaic``: each image is a 7 x 7 grid of whole MTD good images, each resized to a 293 px cell
  (about their native size), so the surface keeps its native texture everywhere: a tray of 49 tiles.

In both: ``standin/train/good`` from MTD train/good; ``standin/test/good`` and the images defects are pasted on
from MTD test/good (``upscaled``: each image once). ``standin/test/pasted``: one real defect each, pasted at its
native size: the mask's bounding box plus an 8 px margin, cut from an MTD blowhole, break or crack test image
(the types in turn; masks at most 96 px a side), placed at a seeded random place (in the mosaic inside one cell).
Only the masked pixels are pasted, feathered 2 px outwards, their brightness shifted so that the crop's margin
matches where it lands; the ground truth (``standin/ground_truth/pasted``) is the crop's mask. Names start with
the source defect type (``blowhole_000.png``). ``control/test/pasted``: the same images, masks and places, but
what is pasted is native-size *good* texture (a window of an MTD test/good image) cut with the defect's mask and
blended alike; ``control/test/good`` links to standin's. A model that only notices "pasted native-resolution
texture" finds the control as well as the defects; one that sees defects does not (image ROC AUC near 0.5).

Configurations (``--configs``; each one fitted and scored in a fresh process, so its peak memory is its own):

- ``whole``: ``PatchCore(image_size=256)``, the default: the image resized to 256 px (a 16 px blowhole becomes 2).
- ``tiled256``: ``PatchCore(image_size=SIZE, tile={"size": 256, "overlap": 32})``: 81 tiles at 2,048.
- ``tiled512``: ``PatchCore(image_size=SIZE, tile={"size": 512, "overlap": 64})``: 25 tiles at 2,048.
- ``tiled256img``: ``tiled256`` with ``tile_features="image"``: the backbone over the image in 256 px chunks
  that do not overlap, one map per image (issue 27; ``--model-seed`` sets the models' seed); ``tiled256imgbank``
  the same with ``f_coreset=0.0156`` (at 1,024 px a bank as large as ``tiled256``'s).

The tiled ones pick their coreset among a seeded tenth of the training patches (``coreset_subsample=0.1``; the
bank keeps 1% of all patches as the default does). Each process fits on standin/train/good, then scores
standin/test and control/test/pasted with ``model.predict``, 4 images a call: image scores, and maps resized to
512 x 512 (area average from the larger size, bilinear from 256), so that both are compared at one resolution
against the masks resized alike (a pixel is defective when at least half of it is). Printed per configuration:
image ROC AUC, pixel ROC AUC and AUPRO (up to 30% false positive rate) at 512 px, image ROC AUC per source defect
type, the control's image ROC AUC and AUPRO, fit seconds, scoring ms per image (reading the 2,048 px PNG
included; after one warm-up call), the peak resident memory of the fit and of the scoring (``VmHWM``, reset
between the two; ``ru_maxrss`` where that is missing), and the bank's size; then one line per background: the
best tiled configuration against whole. ``--quick``: size 1,024 (3 x 3 mosaic), 8 train / 4 good / 8 defective
images, whole and tiled256 (about a minute a background; a smoke test: 4 good images make its image ROC AUC noise).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parents[1]
DEFECTS = ("blowhole", "break", "crack")  # MTD's small defect types (fray and uneven cover much of a tile)
MAX_DEFECT_SIDE = 96  # largest mask bounding box side of a pasted defect, in native pixels
MARGIN = 8  # pixels around the mask's bounding box cut with it (its brightness reference)
FEATHER = 2.0  # Gaussian radius of the alpha's outward feather, in pixels
MAX_ASPECT = 1.5  # good images more elongated than this are not upscaled to a square
CELL = 300  # the side of a mosaic's cell, about an MTD image's
BACKGROUNDS = ("upscaled", "mosaic")
EVAL_SIZE = 512  # the common resolution of the pixel metrics
CONFIGS: dict[str, dict[str, Any]] = {
    "whole": {},
    "tiled256": {"tile": {"size": 256, "overlap": 32}, "coreset_subsample": 0.1},
    "tiled512": {"tile": {"size": 512, "overlap": 64}, "coreset_subsample": 0.1},
    # issue 27: the backbone over the image in chunks of 256 px that do not overlap, one map (tile_features="image")
    "tiled256img": {"tile": {"size": 256, "overlap": 32}, "coreset_subsample": 0.1, "tile_features": "image"},
    # the same with a bank as large as tiled256's (at 1,024 px: 25 tiles against 16 chunks an image)
    "tiled256imgbank": {
        "tile": {"size": 256, "overlap": 32},
        "coreset_subsample": 0.1,
        "tile_features": "image",
        "f_coreset": 0.0156,
    },
}


@dataclass(frozen=True)
class Plan:
    """What the stand-in is built from; its JSON is the cache key."""

    background: str
    size: int
    train: int
    good: int
    defective: int
    seed: int


@dataclass
class Crop:
    """A native-size defect cut from an MTD test image: pixels and mask of its bounding box plus the margin."""

    source: str
    defect: str
    pixels: np.ndarray  # (h, w) float32, 0..255
    mask: np.ndarray  # (h, w) bool


def data_dir() -> Path:
    """Where the real datasets are: $INDAD_DATA_DIR, else ../shared/datasets."""
    env = os.environ.get("INDAD_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


def image_files(folder: Path) -> list[Path]:
    """The image files of a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})


def gray(path: Path) -> np.ndarray:
    """An image file as a float32 grayscale array."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32)


def squarish(paths: list[Path]) -> list[Path]:
    """The images whose aspect ratio is at most :data:`MAX_ASPECT` (upscaled to a square without much stretch)."""
    out = []
    for p in paths:
        with Image.open(p) as im:
            w, h = im.size
        if max(w, h) <= MAX_ASPECT * min(w, h):
            out.append(p)
    return out


def upscale(path: Path, size: int) -> np.ndarray:
    """An image upscaled bicubically to ``size`` x ``size``, grayscale float32."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)


def defect_crops(mtd: Path) -> dict[str, list[Crop]]:
    """Every small defect of MTD's blowhole, break and crack test images, cut at native size (see the docstring)."""
    crops: dict[str, list[Crop]] = {}
    for defect in DEFECTS:
        crops[defect] = []
        for path in image_files(mtd / "test" / defect):
            mask_path = mtd / "ground_truth" / defect / f"{path.stem}_mask.png"
            mask = gray(mask_path) > 127
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            if max(np.ptp(ys), np.ptp(xs)) + 1 > MAX_DEFECT_SIDE:
                continue
            y0, y1 = max(0, ys.min() - MARGIN), min(mask.shape[0], ys.max() + 1 + MARGIN)
            x0, x1 = max(0, xs.min() - MARGIN), min(mask.shape[1], xs.max() + 1 + MARGIN)
            crops[defect].append(Crop(path.name, defect, gray(path)[y0:y1, x0:x1], mask[y0:y1, x0:x1]))
    return crops


def feathered_alpha(mask: np.ndarray) -> np.ndarray:
    """1 on the mask, falling to 0 over about :data:`FEATHER` pixels outside it."""
    blurred = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(FEATHER))
    alpha = np.asarray(blurred, dtype=np.float32) / 255.0
    return np.maximum(np.clip(alpha * 2.0, 0.0, 1.0), mask.astype(np.float32))


def paste(canvas: np.ndarray, pixels: np.ndarray, mask: np.ndarray, y: int, x: int) -> np.ndarray:
    """``canvas`` with ``pixels`` blended in at ``(y, x)`` under the feathered mask, brightness matched on the margin.

    The pasted pixels are shifted by the difference between the mean of the canvas and the mean of ``pixels`` on
    the margin (where the alpha is 0), so a defect keeps its contrast, not its tile's brightness.
    """
    h, w = mask.shape
    alpha = feathered_alpha(mask)
    region = canvas[y : y + h, x : x + w]
    ring = alpha == 0
    shift = float(region[ring].mean() - pixels[ring].mean()) if ring.any() else 0.0
    out = canvas.copy()
    out[y : y + h, x : x + w] = region * (1 - alpha) + np.clip(pixels + shift, 0, 255) * alpha
    return out


def good_texture(path: Path, shape: tuple[int, int], rng: random.Random) -> np.ndarray:
    """A native-size window of ``shape`` at a random place of a good image (the control's pasted content)."""
    img = gray(path)
    h, w = shape
    y, x = rng.randrange(img.shape[0] - h + 1), rng.randrange(img.shape[1] - w + 1)
    return img[y : y + h, x : x + w]


def save(array: np.ndarray, path: Path) -> None:
    """A grayscale array (0..255) as an 8-bit PNG, parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8)).save(path)


def mosaic(paths: list[Path], size: int) -> np.ndarray:
    """``size`` x ``size`` grid of whole good images, each resized to a square cell of about native size."""
    n = cells(size)
    cell = -(-size // n)
    canvas = np.zeros((n * cell, n * cell), dtype=np.float32)
    for k, path in enumerate(paths):
        y, x = divmod(k, n)
        canvas[y * cell : (y + 1) * cell, x * cell : (x + 1) * cell] = upscale(path, cell)
    return canvas[:size, :size]


def cells(size: int) -> int:
    """Cells a side of a mosaic of ``size`` px: MTD images are about :data:`CELL` px."""
    return max(1, round(size / CELL))


def canvas(background: str, pool: list[Path], size: int, rng: random.Random) -> tuple[np.ndarray, list[str]]:
    """A good image of ``size`` px from ``pool`` (``upscaled``: one image; ``mosaic``: a grid), and its sources."""
    if background == "upscaled":
        path = pool.pop()
        return upscale(path, size), [path.name]
    chosen = rng.sample(pool, cells(size) ** 2)
    return mosaic(chosen, size), [p.name for p in chosen]


def place(background: str, size: int, box: tuple[int, int], rng: random.Random) -> tuple[int, int]:
    """Top-left corner of a pasted box: anywhere 32 px from the border, or inside one cell of a mosaic."""
    h, w = box
    if background == "upscaled":
        return rng.randrange(32, size - h - 32), rng.randrange(32, size - w - 32)
    n = cells(size)
    cell = -(-size // n)
    cy, cx = rng.randrange(n), rng.randrange(n)
    y0, x0 = cy * cell + 16, cx * cell + 16
    y1, x1 = min(size, (cy + 1) * cell) - 16 - h, min(size, (cx + 1) * cell) - 16 - w
    return rng.randrange(y0, max(y0 + 1, y1)), rng.randrange(x0, max(x0 + 1, x1))


def build(mtd: Path, out: Path, plan: Plan) -> dict[str, Any]:
    """Write the stand-in (``out/standin``) and its control (``out/control``); return what each file came from.

    Train images come from MTD train/good; test images (good, and the ones defects are pasted on) and the control's
    pasted good texture from MTD test/good (``upscaled``: each image used once); defects from MTD test/DEFECT.
    """
    rng = random.Random(plan.seed)
    train_pool = squarish(image_files(mtd / "train" / "good"))
    test_pool = squarish(image_files(mtd / "test" / "good"))
    rng.shuffle(train_pool)
    rng.shuffle(test_pool)
    crops = defect_crops(mtd)
    chosen = {d: rng.sample(crops[d], len(crops[d])) for d in DEFECTS}
    sources: dict[str, Any] = {"train": [], "good": [], "pasted": []}
    for i in range(plan.train):
        image, names = canvas(plan.background, train_pool, plan.size, rng)
        save(image, out / "standin" / "train" / "good" / f"{i:03d}.png")
        sources["train"].append(names)
    for i in range(plan.good):
        image, names = canvas(plan.background, test_pool, plan.size, rng)
        save(image, out / "standin" / "test" / "good" / f"{i:03d}.png")
        link = out / "control" / "test" / "good" / f"{i:03d}.png"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../../../standin/test/good") / link.name)  # relative: the folder is moved when built
        sources["good"].append(names)
    for i in range(plan.defective):
        defect = DEFECTS[i % len(DEFECTS)]
        crop = chosen[defect][(i // len(DEFECTS)) % len(chosen[defect])]
        base, names = canvas(plan.background, test_pool, plan.size, rng)
        texture_path = test_pool.pop() if plan.background == "upscaled" else rng.choice(test_pool)
        h, w = crop.mask.shape
        y, x = place(plan.background, plan.size, (h, w), rng)
        mask = np.zeros((plan.size, plan.size), dtype=np.float32)
        mask[y : y + h, x : x + w] = crop.mask * 255.0
        name = f"{defect}_{i:03d}"
        texture = good_texture(texture_path, (h, w), rng)
        for kind, pixels in (("standin", crop.pixels), ("control", texture)):
            save(paste(base, pixels, crop.mask, y, x), out / kind / "test" / "pasted" / f"{name}.png")
            save(mask, out / kind / "ground_truth" / "pasted" / f"{name}_mask.png")
        sources["pasted"].append(
            {"name": name, "base": names, "defect": crop.source, "texture": texture_path.name,
             "place": [y, x], "mask_pixels": int(crop.mask.sum()), "box": [h, w]}
        )  # fmt: skip
    return sources


def ensure_standin(mtd: Path, out: Path, plan: Plan) -> dict[str, Any]:
    """The stand-in under ``out``, built unless one of the same plan is there (built aside, then moved)."""
    manifest = out / "manifest.json"
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved.get("plan") == asdict(plan):
            return saved
    scratch = out.with_name(out.name + ".building")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    start = time.perf_counter()
    sources = build(mtd, scratch, plan)
    saved = {"plan": asdict(plan), "sources": sources, "build_s": time.perf_counter() - start}
    (scratch / "manifest.json").write_text(json.dumps(saved, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    scratch.rename(out)
    return saved


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last :func:`reset_peak_rss` (``VmHWM``), in MiB."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident memory (Linux ``clear_refs``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def model_params(name: str, size: int) -> dict[str, Any]:
    """PatchCore's constructor arguments for a configuration (see :data:`CONFIGS`)."""
    if name not in CONFIGS:
        raise SystemExit(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
    if name == "whole":
        return {"image_size": 256}
    return {"image_size": size, **CONFIGS[name]}


def resized_maps(maps: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
    """Anomaly maps ``(N, H, W)`` at ``size`` x ``size``: area average when shrinking, bilinear when growing."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    mode = "area" if t.shape[-1] >= size else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(t, size=(size, size), mode=mode, **kwargs)[:, 0].numpy()


def test_paths(out: Path) -> list[Path]:
    """What each configuration scores: standin/test (good, pasted), then control/test/pasted."""
    return [
        *image_files(out / "standin" / "test" / "good"),
        *image_files(out / "standin" / "test" / "pasted"),
        *image_files(out / "control" / "test" / "pasted"),
    ]


def run_config(name: str, out: Path, size: int, chunk: int = 4, seed: int = 0) -> dict[str, Any]:
    """Fit one configuration on the stand-in and score its test images (in this process); maps saved at 512 px."""
    from indad.methods import PatchCore

    params = model_params(name, size)
    model = PatchCore(progress=False, seed=seed, **params)
    start = time.perf_counter()
    model.fit(str(out / "standin"))
    fit_s = time.perf_counter() - start
    fit_peak = peak_rss_mb()
    reset = reset_peak_rss()
    paths = test_paths(out)
    model.predict([str(paths[0])])  # warm-up: the ONNX Runtime session, the search index
    scores, maps, elapsed = [], [], 0.0
    for i in range(0, len(paths), chunk):
        start = time.perf_counter()
        pred = model.predict([str(p) for p in paths[i : i + chunk]])
        elapsed += time.perf_counter() - start
        scores.append(np.asarray(pred.scores, dtype=np.float64))
        maps.append(resized_maps(pred.maps))
        working = list(pred.maps.shape[1:])
    np.savez(out / "results" / f"{name}.npz", scores=np.concatenate(scores), maps=np.concatenate(maps))
    bank = getattr(model, "memory_bank", None)
    return {
        "config": name,
        "params": params,
        "fit_s": fit_s,
        "ms_per_image": 1000 * elapsed / len(paths),
        "images_scored": len(paths),
        "fit_peak_rss_mb": fit_peak,
        "score_peak_rss_mb": peak_rss_mb() if reset else float("nan"),
        "peak_rss_mb": max(fit_peak, peak_rss_mb()),
        "bank": int(bank.shape[0]) if bank is not None else None,
        "map_size": working,
        "model_seed": seed,
    }


def run_child(name: str, out: Path, size: int, seed: int = 0) -> dict[str, Any]:
    """:func:`run_config` in a fresh Python process (its own peak memory); its JSON result."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    cmd = [sys.executable, __file__, "--child", name, "--out", str(out), "--size", str(size)]
    cmd += ["--model-seed", str(seed)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def masks_at(paths: list[Path], out: Path, size: int = EVAL_SIZE) -> np.ndarray:
    """Ground-truth masks ``(N, size, size)`` of test images (zeros for good ones), a pixel defective when half is."""
    masks = np.zeros((len(paths), size, size), dtype=bool)
    for i, p in enumerate(paths):
        if p.parent.name == "good":
            continue
        mask_path = p.parents[2] / "ground_truth" / p.parent.name / f"{p.stem}_mask.png"
        with Image.open(mask_path) as im:
            small = im.convert("L").resize((size, size), Image.Resampling.BOX)
        masks[i] = np.asarray(small, dtype=np.float32) >= 127.5
    return masks


def metrics(out: Path, name: str) -> dict[str, float]:
    """Image ROC AUC (all, per source defect type, control), pixel ROC AUC and AUPRO at 512 px, of one configuration."""
    from indad.metrics import aupro, image_auroc, pixel_auroc

    saved = np.load(out / "results" / f"{name}.npz")
    scores, maps = saved["scores"], saved["maps"]
    paths = test_paths(out)
    kind = np.array(["control" if p.parents[2].name == "control" else p.parent.name for p in paths])
    defect = np.array([p.stem.split("_")[0] if k != "good" else "good" for p, k in zip(paths, kind, strict=True)])
    masks = masks_at(paths, out)
    good = kind == "good"
    res: dict[str, float] = {}
    for label, sel in (("", kind == "pasted"), ("control_", kind == "control")):
        keep = good | sel
        res[f"{label}image_auroc"] = image_auroc(sel[keep].astype(int), scores[keep])
        res[f"{label}pixel_auroc"] = pixel_auroc(masks[keep], maps[keep])
        res[f"{label}aupro"] = aupro(masks[keep], maps[keep])
    for d in DEFECTS:
        sel = (kind == "pasted") & (defect == d)
        res[f"image_auroc_{d}"] = image_auroc(sel[good | sel].astype(int), scores[good | sel])
    return res


def indad_source() -> str:
    """Which indad is measured: its folder and git commit (``+dirty`` when its checkout has changes)."""
    import indad

    folder = Path(indad.__file__).resolve().parents[1]
    git = ["git", "-C", str(folder)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "indad"], capture_output=True, text=True).stdout
    return f"{folder} @ {commit or 'unknown'}{'+dirty' if dirty.strip() else ''}"


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table, one row per background and configuration."""
    head = (
        "| background | config | image ROC AUC | pixel ROC AUC @512 | AUPRO @512 "
        "| image ROC AUC blowhole / break / crack | control image ROC AUC / AUPRO | fit s | ms / image "
        "| peak RSS fit / scoring MiB | bank |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        per_type = " / ".join(f"{r[f'image_auroc_{d}']:.3f}" for d in DEFECTS)
        lines.append(
            f"| {r['background']} | {r['config']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} "
            f"| {r['aupro']:.3f} | {per_type} | {r['control_image_auroc']:.3f} / {r['control_aupro']:.3f} "
            f"| {r['fit_s']:.0f} | {r['ms_per_image']:.0f} | {r['fit_peak_rss_mb']:.0f} / {r['score_peak_rss_mb']:.0f} "
            f"| {r['bank']} |"
        )
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]]) -> str:
    """One sentence: how much the best tiled configuration gains on the whole image, and what it costs."""
    whole = next((r for r in rows if r["config"] == "whole"), None)
    tiled = [r for r in rows if r["config"] != "whole"]
    if whole is None or not tiled:
        return "(the verdict needs whole and at least one tiled configuration)"
    best = max(tiled, key=lambda r: (r["image_auroc"], r["aupro"]))
    gains = ", ".join(
        f"{label} {best[k]:.3f} against {whole[k]:.3f} ({best[k] - whole[k]:+.3f})"
        for label, k in (
            ("image ROC AUC", "image_auroc"),
            ("pixel ROC AUC", "pixel_auroc"),
            ("AUPRO", "aupro"),
            ("image ROC AUC on blowholes", "image_auroc_blowhole"),
        )
    )
    return (
        f"{whole['background']}: {best['config']} against whole: {gains}; "
        f"at {best['ms_per_image'] / whole['ms_per_image']:.1f}x the scoring time per image, "
        f"{best['fit_s'] / whole['fit_s']:.1f}x the fit time and "
        f"{best['peak_rss_mb'] / whole['peak_rss_mb']:.1f}x the peak memory. "
        f"Control (good texture pasted alike): image ROC AUC {best['control_image_auroc']:.3f} / AUPRO "
        f"{best['control_aupro']:.3f} tiled, {whole['control_image_auroc']:.3f} / {whole['control_aupro']:.3f} whole."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/indad_highres", help="stand-ins and results (not in the repository)")
    p.add_argument("--backgrounds", default=",".join(BACKGROUNDS), help=f"comma list of {', '.join(BACKGROUNDS)}")
    p.add_argument("--configs", default="whole,tiled256,tiled512", help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--train", type=int, default=20)
    p.add_argument("--good", type=int, default=20)
    p.add_argument("--defective", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-seed", type=int, default=0, help="the models' seed (coreset, subsample)")
    p.add_argument("--quick", action="store_true", help="size 1024, 8 / 4 / 8 images, whole and tiled256")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_config(args.child, Path(args.out), args.size, seed=args.model_seed)))
        return
    if args.quick:  # smaller defaults; options given explicitly win
        for key, value in (("size", 1024), ("train", 8), ("good", 4), ("defective", 8), ("configs", "whole,tiled256")):
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
        if args.out == p.get_default("out"):
            args.out += "_quick"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    names = args.configs.split(",")
    for name in names:
        model_params(name, args.size)  # an unknown name stops here, before any work
    backgrounds = args.backgrounds.split(",")
    if unknown := set(backgrounds) - set(BACKGROUNDS):
        raise SystemExit(f"unknown background {', '.join(sorted(unknown))}; known: {', '.join(BACKGROUNDS)}")
    print(f"indad: {indad_source()}", flush=True)
    rows, plans, verdicts = [], [], []
    for background in backgrounds:
        out = Path(args.out) / background
        plan = Plan(background, args.size, args.train, args.good, args.defective, args.seed)
        built = ensure_standin(data_dir() / "mtd", out, plan)
        plans.append(built["plan"])
        (out / "results").mkdir(exist_ok=True)
        print(f"stand-in: {out} {json.dumps(built['plan'])}", flush=True)
        these = []
        for name in names:
            run = run_child(name, out, args.size, args.model_seed)
            result = {"background": background, **run, **metrics(out, name)}
            these.append(result)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
        rows += these
        verdicts.append(verdict(these))
    print()
    print(table(rows))
    print()
    print("\n".join(verdicts))
    if args.json:
        Path(args.json).write_text(json.dumps({"plans": plans, "indad": indad_source(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
