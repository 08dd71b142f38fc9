"""Greedy k-center coreset: the pruned exact version against the plain vectorised one, on real MTD features.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/coreset.py [--data-root ../shared/datasets] [--images 489]
        [--fraction 0.1] [--image-size 256]

The bank is the PatchCore patch features of the first ``--images`` MTD training
images (489 at 256 px: 500,736 patches), randomly projected to 128 dimensions
and put on the exact grid, as the sampler does. Prints both times, their ratio,
and whether the indices are identical.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference versions live beside the tests

import torch

from indad.data import AnomalyDataset, data_root, scan_train
from indad.memory import greedy_k_center, random_projection
from indad.methods import PatchCore
from tests.memory.reference import exact_grid, greedy_k_center_plain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--images", type=int, default=489)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--image-size", type=int, default=256)
    args = p.parse_args()
    model = PatchCore(image_size=args.image_size, progress=False)
    samples = scan_train(data_root(args.data_root or "../shared/datasets") / "mtd")[: args.images]
    loader = torch.utils.data.DataLoader(AnomalyDataset(samples, model.preprocess), batch_size=16)
    with torch.inference_mode():
        bank = torch.cat([model.embed(b["image"]) for b in loader])
        x = exact_grid(random_projection(bank, 128, seed=0))
        del bank
        n = max(1, round(args.fraction * len(x)))
        t0 = time.perf_counter()
        fast = greedy_k_center(x, n, start=0)
        t1 = time.perf_counter()
        plain = greedy_k_center_plain(x, n, start=0)
        t2 = time.perf_counter()
    print(f"bank {tuple(x.shape)} from {len(samples)} MTD images at {args.image_size} px; choosing {n}")
    print(f"plain vectorised: {t2 - t1:.1f} s")
    print(f"pruned (exact):   {t1 - t0:.1f} s   speed-up x{(t2 - t1) / (t1 - t0):.2f}")
    print(f"identical indices: {torch.equal(fast, plain)}")


if __name__ == "__main__":
    main()
