"""PatchCore fit time and accuracy of fit variants against the previous default, in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/fit_speed.py [--data-root ../shared/datasets]
        [--datasets mtd,hazelnut_reduced] [--fraction 0.01] [--passes 1]
        [--variants torch:128,onnxruntime:128,onnxruntime:64]

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
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from indad.methods import PatchCore

    root = Path(args.data_root)
    datasets, names = args.datasets.split(","), args.variants.split(",")
    fits: dict[str, dict[str, list[dict[str, float]]]] = {n: {ds: [] for ds in datasets} for n in names}
    models: dict[tuple[str, str], Any] = {}
    for _ in range(args.passes):
        for ds in datasets:
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
                )
                start = time.perf_counter()
                model.fit(root / ds)
                fits[n][ds].append({"fit_s": time.perf_counter() - start, **model.timings})
                print(json.dumps({"variant": n, "dataset": ds, **fits[n][ds][-1]}), flush=True)
                models[(n, ds)] = model
    acc: dict[str, dict[str, dict[str, float]]] = {n: {} for n in names}
    for ds in datasets:
        ref_result: dict[str, Any] | None = None
        for n in names:
            model = models[(n, ds)]
            model.backbone_runtime = "onnxruntime"
            model.module = model.build_module().eval()
            result = model.evaluate(root / ds)
            ref_result = ref_result or result
            thr = ref_result["f1_threshold"]
            same = np.mean((np.asarray(result["scores"]) >= thr) == (np.asarray(ref_result["scores"]) >= thr))
            acc[n][ds] = {
                "image_auroc": result["image_auroc"],
                "pixel_auroc": result["pixel_auroc"],
                "same_decisions": float(same),
            }
            print(json.dumps({"variant": n, "dataset": ds, **acc[n][ds]}), flush=True)

    ref = names[0]
    best = {n: {ds: min(fits[n][ds], key=lambda f: f["fit_s"]) for ds in datasets} for n in names}
    print(
        f"\nPatchCore {args.fraction:g} fit, fastest of {args.passes} interleaved passes; "
        f"ratio = reference ({ref}) / variant\n"
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
                f"x{best[ref][ds]['fit_s'] / f['fit_s']:.2f} | {a['image_auroc']:.4f} / {a['pixel_auroc']:.4f} | "
                f"{100 * a['same_decisions']:.1f}%"
            )
        print(row + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"fits": fits, "accuracy": acc}, indent=1))


if __name__ == "__main__":
    main()
