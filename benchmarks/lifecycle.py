"""Lifecycle figures (issue 25): drift alarms, the review loop, and ``indad check`` on planted problems.

Usage (from the repository root; minutes per dataset on 2 cores):

    OMP_WAIT_POLICY=PASSIVE nice -n 10 .venv/bin/python benchmarks/lifecycle.py                # both datasets
    OMP_WAIT_POLICY=PASSIVE nice -n 10 .venv/bin/python benchmarks/lifecycle.py --datasets hazelnut_reduced

Per dataset (DATA = $INDAD_DATA_DIR, else ../shared/datasets), with PatchCore at 256 px and a 1 % coreset:

- Model: MTD fitted on train/good with 10 % held out for its thresholds. hazelnut_reduced has 2 good test images,
  so 20 of its 50 training images (``random.Random(0)``) are held out as extra good images: the model is fitted
  on the other 30 (10 % of those held out for its thresholds).
- Good images not used in fit ("good pool"): MTD's 191 test/good; hazelnut's 2 test/good + the 20 held out.
  The drift streams repeat the pool's images, each pass in a new seeded random order (MTD 191 images about 2.6
  times, hazelnut 22 about 23 times). Review sets under 60 images use the flips and quarter turns of each image.
- Drift: a :class:`~indad.lifecycle.DriftMonitor` (default limits) fed the pool's stream as it is (500 images:
  alarms counted) and its first 150 at brightness x0.8 (the image at which the first alarm rises, and the
  statistic).
- Review loop: the pool is split in two halves (A, B; alternate images; halves under 60 images with all 8
  variants of each image); both at brightness x0.8. A is scored and recorded, its false alarms (good images
  flagged) are marked, ``retrain`` makes the new version; flags on B (unseen) before and after, image ROC AUC on
  the test split before and after.
- Check: a temporary copy of train/good with 3 exact duplicates, 2 resized near duplicates, 1 test image and the
  first defective test image of each defect type (MTD: 2 of each) planted; ``check_dataset`` with 5 folds at
  128 px: what it found, recall of the planted defective images and the good images flagged beside them.

Writes ``WORK/lifecycle_<dataset>.json`` (default WORK /tmp/indad_lifecycle) and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indad.lifecycle.checks import check_dataset  # noqa: E402
from indad.lifecycle.drift import DriftMonitor, DriftReference  # noqa: E402
from indad.lifecycle.record import PredictionRecord  # noqa: E402
from indad.lifecycle.retrain import retrain  # noqa: E402
from indad.lineage import image_statistics  # noqa: E402
from indad.methods import PatchCore, load_model  # noqa: E402

PARAMS = {"image_size": 256, "f_coreset": 0.01, "progress": False, "device": "cpu"}


def data_root() -> Path:
    """$INDAD_DATA_DIR, else ../shared/datasets."""
    return Path(os.environ.get("INDAD_DATA_DIR") or REPO.parent / "shared" / "datasets")


def variants(image: Image.Image) -> list[Image.Image]:
    """The 8 flips and quarter turns of a square image; the 4 flips of another (a quarter turn would stretch it)."""
    out = []
    turns = range(4) if image.width == image.height else (0, 2)
    for flipped in (image, ImageOps.mirror(image)):
        out += [flipped.rotate(90 * k, expand=True) for k in turns]
    return out


def darker(image: Image.Image, factor: float = 0.8) -> Image.Image:
    """The image with every pixel value times ``factor``."""
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) * factor, 0, 255).astype(np.uint8))


def stream(paths: list[Path], n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` images in a seeded random order: the images themselves when there are enough, else all their
    flips / quarter turns, cycled when ``n`` is larger still. Random, because file names group images by
    acquisition: MTD's sorted training images go from brightness 67 to 148 (means of 100)."""
    rng = random.Random(seed)
    originals = [Image.open(p).convert("RGB") for p in paths]
    pool = originals if n <= len(originals) else [v for im in originals for v in variants(im)]
    rng.shuffle(pool)
    return [pool[i % len(pool)] for i in range(n)]


def fit_model(name: str, root: Path, work: Path, reuse: bool = False) -> tuple[Path, Path, list[Path]]:
    """The model file, the dataset it was fitted on (a layout folder) and the good pool."""
    train = sorted((root / "train" / "good").iterdir())
    pool = sorted((root / "test" / "good").iterdir())
    fit_on: Any = root
    if name == "hazelnut_reduced":
        held = set(random.Random(0).sample(range(len(train)), 20))
        fit_on = [p for i, p in enumerate(train) if i not in held]
        pool += [p for i, p in enumerate(train) if i in held]
    model_path = work / f"{name}.indad"
    if reuse and model_path.is_file():
        return model_path, root, pool
    start = time.perf_counter()
    PatchCore(**PARAMS).fit(fit_on, holdout=0.1).save(model_path)
    print(f"{name}: fitted in {time.perf_counter() - start:.0f} s", flush=True)
    return model_path, root, pool


def repeated(paths: list[Path], n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` images: ``paths`` again and again, each pass in a new seeded random order (no flips: a flipped MTD
    tile is lit from the other side and scores higher, a drift of its own)."""
    rng = random.Random(seed)
    originals = [Image.open(p).convert("RGB") for p in paths]
    out: list[Image.Image] = []
    while len(out) < n:
        rng.shuffle(originals)
        out += originals
    return out[:n]


def drift_figures(model_path: Path, pool: list[Path]) -> dict[str, Any]:
    """Alarms over 500 unshifted images, and the first alarm of the x0.8 stream."""
    from indad.export.model_file import read_header

    model = load_model(model_path, device="cpu")
    ref = DriftReference.from_header(read_header(model_path))
    images = repeated(pool, 500)
    scores = model.predict(images).scores
    steady = DriftMonitor(ref)
    for im, s in zip(images, scores, strict=True):
        steady.observe(float(s), *image_statistics(im))
    dark = [darker(im) for im in images[:150]]
    dark_scores = model.predict(dark).scores
    shifted = DriftMonitor(ref)
    first, tripped = None, []
    for i, (im, s) in enumerate(zip(dark, dark_scores, strict=True), 1):
        status = shifted.observe(float(s), *image_statistics(im))
        if status.alarm:
            first, tripped = i, status.tripped
            break
    return {
        "distinct_images": len(pool),
        "steady_images": len(images),
        "steady_alarms": steady.alarms,
        "steady_tripped": dict(steady.tripped_counts),
        "steady_last": steady.status().to_dict(),
        "shifted_first_alarm": first,
        "shifted_tripped": tripped,
    }


def review_figures(model_path: Path, root: Path, pool: list[Path], work: Path) -> dict[str, Any]:
    """Flags on an unseen shifted half before / after retraining on the false alarms of the other half."""
    half_a, half_b = pool[0::2], pool[1::2]
    # small halves (hazelnut: 11 images) with all their flips / quarter turns, large ones (MTD: 95) as they are
    set_a = [darker(im) for im in stream(half_a, len(half_a) if len(half_a) >= 60 else 8 * len(half_a), seed=1)]
    set_b = [darker(im) for im in stream(half_b, len(half_b) if len(half_b) >= 60 else 8 * len(half_b), seed=2)]
    folder = work / "shifted_a"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = []
    for i, im in enumerate(set_a):
        paths.append(folder / f"a{i:04d}.png")
        im.save(paths[-1])
    current = load_model(model_path, device="cpu")
    pred = current.predict(paths)
    db = work / "review.db"
    db.unlink(missing_ok=True)
    record = PredictionRecord(db)
    t = current.thresholds
    assert t is not None
    ids = []
    for p, s in zip(paths, pred.scores, strict=True):
        decision = "defective" if s >= t.image else "good"
        ids.append(record.write({"source": str(p), "score": float(s), "normalized_score": float(s / t.image),
                                 "decision": decision, "threshold": t.image, "model": model_path.stem}))  # fmt: skip
    false_alarms = [i for i, s in zip(ids, pred.scores, strict=True) if s >= t.image]
    for i in false_alarms:
        record.add_feedback(i, "false_alarm", "good part, darker light")
    new_path = work / f"{model_path.stem}-retrained.indad"
    report = retrain(model_path, record, new_path, device="cpu")
    new = load_model(new_path, device="cpu")
    assert new.thresholds is not None
    b_before = int((current.predict(set_b).scores >= t.image).sum())
    b_after = int((new.predict(set_b).scores >= new.thresholds.image).sum())
    auc_before = current.evaluate(root)["image_auroc"]
    auc_after = new.evaluate(root)["image_auroc"]
    return {
        "set_a": len(set_a),
        "set_a_false_alarms": len(false_alarms),
        "added": report.added,
        "calibration_images": report.calibration,
        "threshold_before": report.thresholds_before,
        "threshold_after": report.thresholds_after,
        "set_b": len(set_b),
        "set_b_flagged_before": b_before,
        "set_b_flagged_after": b_after,
        "image_auroc_before": auc_before,
        "image_auroc_after": auc_after,
        "comparison": report.lines(),
    }


def check_figures(root: Path, work: Path, per_defect: int) -> dict[str, Any]:
    """Recall of what was planted in a copy of train/good."""
    copy = work / "check" / root.name
    shutil.rmtree(copy.parent, ignore_errors=True)
    train = copy / "train" / "good"
    shutil.copytree(root / "train" / "good", train)
    shutil.copytree(root / "test", copy / "test")
    originals = sorted(train.iterdir())
    for i, p in enumerate(originals[:3]):
        shutil.copyfile(p, train / f"dup_{i}{p.suffix}")
    for i, p in enumerate(originals[3:5]):
        im = Image.open(p)
        im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(train / f"near_{i}.png")
    leaked = sorted((root / "test" / "good").iterdir())[0]
    shutil.copyfile(leaked, train / f"leaked{leaked.suffix}")
    planted = []
    for defect in sorted(d for d in (root / "test").iterdir() if d.name != "good"):
        for p in sorted(defect.iterdir())[:per_defect]:
            planted.append(f"planted_{defect.name}_{p.name}")
            shutil.copyfile(p, train / planted[-1])
            (copy / "test" / defect.name / p.name).unlink()  # not also a test-in-train finding
    start = time.perf_counter()
    report = check_dataset(copy, folds=5, image_size=128, f_coreset=0.1, device="cpu")
    found = {Path(s["path"]).name for s in report.suspects}
    return {
        "seconds": round(time.perf_counter() - start),
        "train_images": len(list(train.iterdir())),
        "duplicates_found": sum(1 for g in report.duplicates if any("dup_" in Path(x).name for x in g)),
        "near_found": sum(1 for n in report.near_duplicates if "near_" in n["a"] + n["b"]),
        "leaked_found": any(Path(t["train"]).name.startswith("leaked") for t in report.test_in_train),
        "test_in_train_reported": len(report.test_in_train),
        "planted_defective": len(planted),
        "planted_found": len(found & set(planted)),
        "false_flags": len(found - set(planted)),
        "near_duplicates_reported": len(report.near_duplicates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="hazelnut_reduced,mtd")
    parser.add_argument("--work-dir", default="/tmp/indad_lifecycle")
    parser.add_argument("--parts", default="drift,review,check")
    parser.add_argument("--reuse", action="store_true", help="use the model files of an earlier run")
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    for name in args.datasets.split(","):
        root = data_root() / name
        result: dict[str, Any] = {"dataset": name, "params": {k: v for k, v in PARAMS.items() if k != "progress"}}
        model_path, root, pool = fit_model(name, root, work, args.reuse)
        parts = args.parts.split(",")
        if "drift" in parts:
            result["drift"] = drift_figures(model_path, pool)
            print(json.dumps(result["drift"], indent=1), flush=True)
        if "review" in parts:
            result["review"] = review_figures(model_path, root, pool, work)
            print(json.dumps(result["review"], indent=1), flush=True)
        if "check" in parts:
            result["check"] = check_figures(root, work, 2 if name == "mtd" else 1)
            print(json.dumps(result["check"], indent=1), flush=True)
        (work / f"lifecycle_{name}_{'_'.join(parts)}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
