"""Local vs Ray on MTD: scoring throughput on 1 and 2 Ray worker processes, and the two-level coreset's cost.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ray_bench.py [--data-root ../shared/datasets] [--image-size 256]

Starts a Ray instance on this machine (``ray.init(num_cpus=2)``), then:

- fit: PatchCore (default offline config) in one process, and on Ray with 2
  workers (two-level coreset: each shard reduced to the final size, then a
  greedy pass over the union): seconds, memory bank size, coverage radius (the
  largest distance from a training patch to its nearest bank feature), image and
  pixel ROC AUC on MTD's test set;
- predict: the 583 test images scored into a CSV and pictures by
  ``predict_folder`` in this process, and by Ray Data on 1 and on 2 worker
  processes of 1 CPU each (model loading on each worker included), each against
  the one-process run with as many torch threads in all: images per second and
  Ray's overhead. ``--model`` scores with that model file (and skips the fit part).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from indad.distributed.ray_engine import RayEngine
from indad.inference import open_scorer, predict_folder
from indad.methods import PatchCore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the reference versions live beside the tests
from tests.memory.reference import coverage_radius  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--model", default=None, help="model file to score with; skips the fit part")
    args = parser.parse_args()
    mtd = Path(args.data_root) / "mtd"
    work = Path(tempfile.mkdtemp(prefix="indad-ray-bench-"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away instance on this machine
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        model_path = Path(args.model) if args.model else work / "model.indad"
        if not args.model:
            fit_table(mtd, args.image_size, model_path)
        predict_table(mtd, model_path, work)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def fit_table(mtd: Path, image_size: int, model_path: Path) -> None:
    """PatchCore fitted in one process and on Ray (2 workers): time, bank, coverage radius, ROC AUC."""
    fit_rows = []
    bank = None
    for name, engine in (("one process", None), ("Ray, 2 workers", RayEngine(workers=2, progress=False))):
        model = PatchCore(image_size=image_size, progress=False)
        start = time.perf_counter()
        model.fit(mtd, engine=engine)
        fit_s = time.perf_counter() - start
        if bank is None:
            with torch.inference_mode():
                bank = torch.cat([model.embed(b["image"]) for b in model.iter_batches(mtd, "train", "")])
            model.save(model_path)
        result = model.evaluate(mtd)
        fit_rows.append(
            (
                name,
                fit_s,
                model.memory_bank.shape[0],
                coverage_radius(bank, model.memory_bank),
                result["image_auroc"],
                result["pixel_auroc"],
            )
        )
        print(f"fit {name}: {fit_s:.1f} s", flush=True)
    print("\nPatchCore fit on MTD (761 images), f_coreset 0.01, image size", image_size)
    print("| fit | seconds | bank | coverage radius | image ROC AUC | pixel ROC AUC |\n|---|---|---|---|---|---|")
    for name, fit_s, size, radius, image, pixel in fit_rows:
        print(f"| {name} | {fit_s:.1f} | {size} | {radius:.3f} | {image:.4f} | {pixel:.4f} |")


def predict_table(mtd: Path, model_path: Path, work: Path) -> None:
    """MTD's test set scored in one process with 1 and 2 torch threads, and on 1 and 2 Ray workers of 1 CPU."""
    n = len(list((mtd / "test").rglob("*.*")))
    print(f"\nScoring MTD's test set ({n} images: CSV, heatmaps, overlays, masks)")
    print("| run | seconds | images/s | Ray overhead vs one process |\n|---|---|---|---|")
    threads = torch.get_num_threads()
    for count in (1, 2):
        torch.set_num_threads(count)
        start = time.perf_counter()
        predict_folder(open_scorer(model_path), [mtd / "test"], work / f"local{count}", progress=False)
        local_s = time.perf_counter() - start
        print(f"| one process, {count} torch thread(s) | {local_s:.1f} | {n / local_s:.2f} | |", flush=True)
        engine = RayEngine(workers=count, cpus_per_worker=1, progress=False)
        start = time.perf_counter()
        engine.predict_folder(model_path, [mtd / "test"], work / f"ray{count}")
        ray_s = time.perf_counter() - start
        print(
            f"| Ray, {count} worker(s) x 1 CPU | {ray_s:.1f} | {n / ray_s:.2f} | {100 * (ray_s / local_s - 1):+.1f}% |",
            flush=True,
        )
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
