"""PatchCore fit time and accuracy of fit variants against the previous default, in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/fit_speed.py [--data-root ../shared/datasets]
        [--datasets mtd,hazelnut_reduced] [--fraction 0.01] [--passes 1]
        [--variants torch:128,onnxruntime:128,onnxruntime:64] [--seeds 0]

A variant is ``RUNTIME:PROJECTION_DIM[:SUBSAMPLE]``: the backbone runtime of
the feature extraction (``torch`` or ``onnxruntime``), the dimensions of the
coreset's random projection and the share of the patches the coreset chooses
from (``coreset_subsample``, default 1). The first variant is the reference (the default before
issue 16: ``torch:128``). In each pass every variant is fitted in turn on
every dataset (interleaved; the fastest pass is kept), then each fitted bank
is evaluated on the whole test split with the same exact scoring (ONNX
Runtime backbone, exact search), so the accuracy columns compare the banks
only. ``same decisions``: the share of test images on the same side of the
reference's F1-optimal threshold.

The greedy coreset is chaotic: any difference in the features (another
runtime, another thread count) or another ``seed`` (the projection and the
first centre) gives another bank, and banks of one recipe differ in accuracy
by tenths of a point. With ``--seeds 0,1,2`` every variant is fitted once per
seed and the table gives the mean over the seeds (and their range), so that a
recipe is compared with a recipe, not a bank with a bank; decisions are
compared with the reference's bank of the same seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's indad, not an installed one


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--datasets", default="mtd,hazelnut_reduced")
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--variants", default="torch:128,onnxruntime:128,onnxruntime:64")
    p.add_argument("--seeds", default="0", help="seeds of the fit (comma-separated); accuracy is their mean")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from indad.methods import PatchCore

    root = Path(args.data_root)
    datasets, names = args.datasets.split(","), args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    fits: dict[str, dict[str, list[dict[str, float]]]] = {n: {ds: [] for ds in datasets} for n in names}
    models: dict[tuple[str, str, int], Any] = {}
    for _ in range(args.passes):
        for ds, seed in ((ds, seed) for ds in datasets for seed in seeds):
            for n in names:
                runtime, dim, *sub = n.split(":")
                model = PatchCore(
                    f_coreset=args.fraction,
                    fit_runtime=runtime,
                    projection_dim=int(dim),
                    coreset_subsample=float(sub[0]) if sub else 1.0,
                    search="exact",
                    device="cpu",
                    progress=False,
                    seed=seed,
                )
                start = time.perf_counter()
                model.fit(root / ds)
                fits[n][ds].append({"fit_s": time.perf_counter() - start, **model.timings})
                print(json.dumps({"variant": n, "dataset": ds, "seed": seed, **fits[n][ds][-1]}), flush=True)
                models[(n, ds, seed)] = model
    runs: dict[str, dict[str, list[dict[str, float]]]] = {n: {ds: [] for ds in datasets} for n in names}
    for ds, seed in ((ds, seed) for ds in datasets for seed in seeds):
        ref_result: dict[str, Any] | None = None
        for n in names:
            model = models.pop((n, ds, seed))
            model.backbone_runtime = "onnxruntime"
            model.rebuild()
            result = model.evaluate(root / ds)
            ref_result = ref_result or result
            thr = ref_result["f1_threshold"]
            same = np.mean((np.asarray(result["scores"]) >= thr) == (np.asarray(ref_result["scores"]) >= thr))
            runs[n][ds].append(
                {
                    "image_auroc": result["image_auroc"],
                    "pixel_auroc": result["pixel_auroc"],
                    "same_decisions": float(same),
                }
            )
            print(json.dumps({"variant": n, "dataset": ds, "seed": seed, **runs[n][ds][-1]}), flush=True)
    acc = {n: {ds: _summary(runs[n][ds]) for ds in datasets} for n in names}

    ref = names[0]
    best = {n: {ds: _mean_fit(fits[n][ds], len(seeds)) for ds in datasets} for n in names}
    print(
        f"\nPatchCore {args.fraction:g} fit, fastest of {args.passes} interleaved passes, mean over seeds {args.seeds} "
        f"(accuracy: mean [min, max] over the seeds); ratio = reference ({ref}) / variant\n"
    )
    head = "| variant"
    for ds in datasets:
        head += f" | {ds} fit s (features + coreset) | x faster | image / pixel ROC AUC | same decisions"
    print(head + " |")
    print("|---" * (1 + 4 * len(datasets)) + "|")
    for n in names:
        row = f"| {n}"
        for ds in datasets:
            f, a = best[n][ds], acc[n][ds]
            row += (
                f" | {f['fit_s']:.1f} ({f['features_s']:.1f} + {f['coreset_s']:.1f}) | "
                f"x{best[ref][ds]['fit_s'] / f['fit_s']:.2f} | {a['image_auroc']} / {a['pixel_auroc']} | "
                f"{a['same_decisions']}"
            )
        print(row + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"fits": fits, "accuracy": runs}, indent=1))


def _mean_fit(fits: list[dict[str, float]], n_seeds: int) -> dict[str, float]:
    """Per seed the fastest pass (fits are in pass order, seeds inner), then the mean over the seeds."""
    per_seed = [min(fits[i::n_seeds], key=lambda f: f["fit_s"]) for i in range(n_seeds)]
    return {k: float(np.mean([f[k] for f in per_seed])) for k in ("fit_s", "features_s", "coreset_s")}


def _summary(runs: list[dict[str, float]]) -> dict[str, str]:
    """Each figure's mean over the seeds, with its range when there are several."""
    out = {}
    for key in ("image_auroc", "pixel_auroc", "same_decisions"):
        values = np.array([r[key] for r in runs]) * (100 if key == "same_decisions" else 1)
        unit, digits = ("%", 1) if key == "same_decisions" else ("", 4)
        text = f"{values.mean():.{digits}f}{unit}"
        if len(values) > 1:
            text += f" [{values.min():.{digits}f}, {values.max():.{digits}f}]"
        out[key] = text
    return out


if __name__ == "__main__":
    main()
