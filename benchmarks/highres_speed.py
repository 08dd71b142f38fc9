"""Issue 27: PatchCore on 256 px tiles of a 2,448 x 2,048 (5 MP) image, today's tiled path against the chunked one.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python benchmarks/highres_speed.py [score] [fit] [accuracy]
        [--width 2448] [--height 2048] [--train 5] [--score-images 4] [--rounds 3]
        [--fit-images 20] [--fit-images-after 200] [--out /tmp/indad_highres_speed]

Images: MTD good images (DATA = $INDAD_DATA_DIR, else ../shared/datasets; read-only) upscaled bicubically to
``--width`` x ``--height``, grayscale PNG, built once under ``--out`` (never in the repository).

Configurations (tiles of 256 px, overlap 32, the coreset chosen among a seeded tenth of the patches as in
``benchmarks/highres.py``):

- ``before``: ``PatchCore(image_size=(H, W), tile={"size": 256, "overlap": 32}, coreset_subsample=0.1)``,
  ``tile_features="tiles"`` (today's default: 99 overlapping tiles through the backbone, scored and stitched).
- ``after``: the same with ``tile_features="image"`` (the backbone over the image in 80 chunks of 256 px that do not
  overlap, every place scored once, one map) and ``max_bank=16384`` (the bank and the greedy pool stop growing
  with the number of images; no effect below about 21 images of 5 MP).

Phases (default: all three):

- ``score``: both fitted on ``--train`` images in this process, then each test image is scored by both in turn
  (A B, then B A the next round, ``--rounds`` rounds, after one warm-up image): ``model.predict([path])`` (reading
  and decoding the PNG, the backbone, the search, the map) and the defect regions of its map
  (:func:`indad.regions.find_regions` at the 0.999 quantile of the warm-up image's map). Printed: median ms per
  image of each, the ratio of the medians and the median of the pairwise ratios.
- ``fit``: each configuration fitted in a fresh process on ``--fit-images`` images (``after`` also on
  ``--fit-images-after``): seconds, the features' and the coreset's share, the bank, the peak memory.
- ``accuracy``: ``benchmarks/highres.py --configs tiled256,tiled256img,tiled256imgbank`` for each of ``--seeds``
  (the models' seed) at ``--acc-size`` px on ``--acc-backgrounds`` (default: 1,024 px, the mosaic: what was
  measured; 2,048 px takes about 12 minutes a configuration here); the mean and the spread (max - min) over the
  seeds of each metric, and the difference of the means (image - tiles).

Report the machine's load (``uptime``) with every figure: the ratios are taken in the same run, the absolute
times move with the load of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TILE = {"size": 256, "overlap": 32}
CONFIGS: dict[str, dict[str, Any]] = {
    "before": {"tile": TILE, "coreset_subsample": 0.1, "tile_features": "tiles"},
    "after": {"tile": TILE, "coreset_subsample": 0.1, "tile_features": "image", "max_bank": 16384},
}
METRICS = ("image_auroc", "pixel_auroc", "aupro", "control_image_auroc", "control_aupro")


def data_dir() -> Path:
    """Where the real datasets are: $INDAD_DATA_DIR, else ../shared/datasets."""
    env = os.environ.get("INDAD_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


def build_images(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """``count`` MTD good images upscaled to ``size`` ``(W, H)`` under ``folder`` (kept between runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((data_dir() / "mtd" / "train" / "good").iterdir())
    rng = random.Random(seed)
    out = []
    for i in range(count):
        path = folder / f"{i:04d}.png"
        if not path.exists():
            with Image.open(rng.choice(sources)) as im:
                im.convert("L").resize(size, Image.Resampling.BICUBIC).save(path)
        else:
            rng.choice(sources)
        out.append(path)
    return out


def load() -> str:
    """The load averages (1, 5, 15 minutes)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def make_model(name: str, size: tuple[int, int], seed: int = 0) -> Any:
    """A configuration's PatchCore at the working size ``(H, W)``."""
    from indad.methods import PatchCore

    return PatchCore(image_size=size, progress=False, seed=seed, **CONFIGS[name])


def score_once(model: Any, path: Path, threshold: float) -> float:
    """Seconds to score one image file: prediction (decoding included) and its map's defect regions."""
    from indad.regions import find_regions

    start = time.perf_counter()
    pred = model.predict([str(path)])
    find_regions(pred.maps[0], threshold)
    return time.perf_counter() - start


def score_phase(args: argparse.Namespace, size: tuple[int, int]) -> dict[str, Any]:
    """Both configurations fitted on ``--train`` images, then scored image by image in alternating pairs."""
    out = Path(args.out)
    train = build_images(out / "train", args.train, (args.width, args.height), 0)
    test = build_images(out / "test", args.score_images + 1, (args.width, args.height), 1)
    models, fits, thresholds = {}, {}, {}
    for name in CONFIGS:
        model = make_model(name, size)
        start = time.perf_counter()
        model.fit([str(p) for p in train])
        fits[name] = time.perf_counter() - start
        warm = model.predict([str(test[0])])  # warm-up: the ONNX Runtime session, the search index
        thresholds[name] = float(np.quantile(warm.maps[0], 0.999))
        models[name] = model
        print(f"fitted {name} on {len(train)} images in {fits[name]:.1f} s (load {load()})", flush=True)
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    ratios = []
    names = list(CONFIGS)
    for r in range(args.rounds):
        for path in test[1:]:
            pair = {}
            for name in names if r % 2 == 0 else names[::-1]:
                pair[name] = score_once(models[name], path, thresholds[name])
                times[name].append(pair[name])
            ratios.append(pair["before"] / pair["after"])
        print(f"round {r + 1}: load {load()}", flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    return {
        "image": f"{args.width}x{args.height}",
        "train_images": len(train),
        "bank": {name: int(m.memory_bank.shape[0]) for name, m in models.items()},
        "ms_per_image": {name: 1000 * v for name, v in med.items()},
        "ms_min_max": {name: [1000 * min(t), 1000 * max(t)] for name, t in times.items()},
        "ratio_of_medians": med["before"] / med["after"],
        "median_pair_ratio": statistics.median(ratios),
        "pairs": len(ratios),
    }


def fit_child(name: str, count: int, args: argparse.Namespace, size: tuple[int, int]) -> dict[str, Any]:
    """Fit one configuration on ``count`` images in this process: seconds, timings, bank, peak memory."""
    import resource

    paths = build_images(Path(args.out) / "train", count, (args.width, args.height), 0)
    model = make_model(name, size)
    start = time.perf_counter()
    model.fit([str(p) for p in paths])
    return {
        "config": name,
        "images": count,
        "fit_s": time.perf_counter() - start,
        "timings": model.timings,
        "bank": int(model.memory_bank.shape[0]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def fit_phase(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each configuration fitted in a fresh process (``after`` also on ``--fit-images-after`` images)."""
    runs = [("before", args.fit_images), ("after", args.fit_images)]
    if args.fit_images_after:
        runs.append(("after", args.fit_images_after))
    build_images(Path(args.out) / "train", max(n for _, n in runs), (args.width, args.height), 0)
    results = []
    for name, count in runs:
        cmd = [sys.executable, __file__, "--child", name, "--child-images", str(count), "--out", args.out]
        cmd += ["--width", str(args.width), "--height", str(args.height)]
        before = load()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"fit {name} on {count} images failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        result = {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_before": before, "load_after": load()}
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def accuracy_phase(args: argparse.Namespace) -> dict[str, Any]:
    """``benchmarks/highres.py`` (tiled256 against tiled256img) per seed; means and spreads over the seeds."""
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        target = Path(args.out) / f"accuracy_seed{seed}.json"
        cmd = [sys.executable, str(REPO / "benchmarks" / "highres.py"), "--size", str(args.acc_size)]
        cmd += ["--configs", "tiled256,tiled256img,tiled256imgbank", "--backgrounds", args.acc_backgrounds]
        cmd += ["--model-seed", str(seed), "--json", str(target)]
        cmd += ["--out", str(Path(args.out) / f"highres{args.acc_size}")]
        subprocess.run(cmd, check=True)
        rows += [{**r, "model_seed": seed} for r in json.loads(target.read_text())["rows"]]
    return summarize(rows)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per background and configuration: each metric's mean and spread over the seeds; after - before."""
    out: dict[str, Any] = {}
    for background in sorted({r["background"] for r in rows}):
        per: dict[str, dict[str, list[float]]] = {}
        for r in rows:
            if r["background"] == background:
                per.setdefault(r["config"], {k: [] for k in METRICS})
                for k in METRICS:
                    per[r["config"]][k].append(float(r[k]))
        out[background] = {
            config: {k: {"mean": float(np.mean(v)), "spread": float(np.ptp(v)), "n": len(v)} for k, v in m.items()}
            for config, m in per.items()
        }
        if {"tiled256", "tiled256img"} <= set(per):
            out[background]["difference"] = {
                k: float(np.mean(per["tiled256img"][k]) - np.mean(per["tiled256"][k])) for k in METRICS
            }
    return out


def accuracy_table(summary: dict[str, Any]) -> str:
    """The seeds' accuracy as a markdown table: mean (spread) per configuration, and the difference of the means."""
    lines = ["| background | config | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for background, configs in summary.items():
        for config, m in configs.items():
            if config == "difference":
                cells = [f"{m[k]:+.4f}" for k in METRICS]
            else:
                cells = [f"{m[k]['mean']:.4f} ({m[k]['spread']:.4f}, n={m[k]['n']})" for k in METRICS]
            lines.append(f"| {background} | {config} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phases", nargs="*", default=["score", "fit", "accuracy"], help="score, fit, accuracy")
    p.add_argument("--out", default="/tmp/indad_highres_speed", help="images and results (not in the repository)")
    p.add_argument("--width", type=int, default=2448)
    p.add_argument("--height", type=int, default=2048)
    p.add_argument("--train", type=int, default=5, help="images the score phase fits on")
    p.add_argument("--score-images", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fit-images", type=int, default=20)
    p.add_argument("--fit-images-after", type=int, default=200, help="0: skip")
    p.add_argument("--seeds", default="0,1,2", help="the accuracy phase's model seeds")
    p.add_argument("--acc-size", type=int, default=1024, help="the accuracy phase's image size (highres.py --size)")
    p.add_argument("--acc-backgrounds", default="mosaic", help="the accuracy phase's backgrounds (comma list)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-images", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    size = (args.height, args.width)
    if args.child:
        print(json.dumps(fit_child(args.child, args.child_images, args, size)))
        return
    if unknown := set(args.phases) - {"score", "fit", "accuracy"}:
        raise SystemExit(f"unknown phase {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {"load_start": load()}
    print(f"load average at start: {results['load_start']}", flush=True)
    if "score" in args.phases:
        results["score"] = score_phase(args, size)
        s = results["score"]
        print(
            f"score {s['image']}: before {s['ms_per_image']['before']:.0f} ms, after {s['ms_per_image']['after']:.0f} "
            f"ms per image; x{s['ratio_of_medians']:.2f} (ratio of medians), x{s['median_pair_ratio']:.2f} (median "
            f"of {s['pairs']} pairs); banks {s['bank']}; load {load()}",
            flush=True,
        )
    if "fit" in args.phases:
        results["fit"] = fit_phase(args)
        by = {(r["config"], r["images"]): r["fit_s"] for r in results["fit"]}
        n = args.fit_images
        print(f"fit on {n} images: before {by['before', n]:.0f} s, after {by['after', n]:.0f} s, "
              f"x{by['before', n] / by['after', n]:.2f}")  # fmt: skip
        if args.fit_images_after:
            print(f"fit on {args.fit_images_after} images: after {by['after', args.fit_images_after]:.0f} s")
    if "accuracy" in args.phases:
        results["accuracy"] = accuracy_phase(args)
        print(accuracy_table(results["accuracy"]))
    results["load_end"] = load()
    print(f"load average at end: {results['load_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
