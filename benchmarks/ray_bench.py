"""Local vs Ray on MTD: scoring throughput on 1 and 2 Ray worker processes, and the two-level coreset's cost.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ray_bench.py [--data-root ../shared/datasets] [--image-size 256]

Starts a Ray instance on this machine (``ray.init(num_cpus=2)``), then:

- fit: PatchCore (default offline config) in one process, and on Ray with 2
  workers (two-level coreset: each shard reduced to the final size, then a
  greedy pass over the union): seconds, memory bank size, coverage radius (the
  largest distance from a training patch to its nearest bank feature), image and
  pixel ROC AUC on MTD's test set;
- predict: the 583 test images scored into a CSV and pictures by
  ``predict_folder`` in this process (2 torch threads), and by Ray Data with 1
  worker of 2 CPUs and with 2 workers of 1 CPU (model loading on each worker
  included): images per second and Ray's overhead against the local run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from indad.distributed.ray_engine import RayEngine
from indad.inference import open_scorer, predict_folder
from indad.memory import coverage_radius
from indad.methods import PatchCore

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    mtd = Path(args.data_root) / "mtd"
    work = Path(tempfile.mkdtemp(prefix="indad-ray-bench-"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away instance on this machine
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        fit_rows = []
        bank = None
        for name, engine in (("one process", None), ("Ray, 2 workers", RayEngine(workers=2, progress=False))):
            model = PatchCore(image_size=args.image_size, progress=False)
            start = time.perf_counter()
            model.fit(mtd, engine=engine)
            fit_s = time.perf_counter() - start
            if bank is None:
                with torch.inference_mode():
                    bank = torch.cat([model.embed(b["image"]) for b in model._batches(mtd, "train", "")])
                model.save(work / "model.indad")
            result = model.evaluate(mtd)
            fit_rows.append((name, fit_s, model.memory_bank.shape[0], coverage_radius(bank, model.memory_bank),
                             result["image_auroc"], result["pixel_auroc"]))
            print(f"fit {name}: {fit_s:.1f} s", flush=True)
        print("\nPatchCore fit on MTD (761 images), f_coreset 0.01, image size", args.image_size)
        print("| fit | seconds | bank | coverage radius | image ROC AUC | pixel ROC AUC |\n|---|---|---|---|---|---|")
        for name, fit_s, size, radius, image, pixel in fit_rows:
            print(f"| {name} | {fit_s:.1f} | {size} | {radius:.3f} | {image:.4f} | {pixel:.4f} |")

        n = len(list((mtd / "test").rglob("*.*")))
        runs = []
        start = time.perf_counter()
        predict_folder(open_scorer(work / "model.indad"), [mtd / "test"], work / "local", progress=False)
        runs.append(("one process, 2 threads", time.perf_counter() - start))
        for workers, cpus in ((1, 2), (2, 1)):
            engine = RayEngine(workers=workers, cpus_per_worker=cpus, progress=False)
            start = time.perf_counter()
            engine.predict_folder(work / "model.indad", [mtd / "test"], work / f"ray{workers}")
            runs.append((f"Ray, {workers} worker(s) x {cpus} CPU", time.perf_counter() - start))
        local_s = runs[0][1]
        print(f"\nScoring MTD's test set ({n} images: CSV, heatmaps, overlays, masks)")
        print("| run | seconds | images/s | overhead vs one process |\n|---|---|---|---|")
        for name, seconds in runs:
            print(f"| {name} | {seconds:.1f} | {n / seconds:.2f} | {100 * (seconds / local_s - 1):+.1f}% |")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
