"""PaDiM and SPADE: predict and fit time and accuracy of settings against those before issue 16, in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/method_speed.py [--data-root ../shared/datasets]
        [--datasets mtd,hazelnut_reduced] [--methods padim,spade] [--images 64] [--passes 3]
        [--variants before,default,backbone_runtime=onnxruntime+pixel_k=3] [--no-speed] [--no-accuracy]

A variant is ``before`` (the settings before issue 16: ``backbone_runtime``
and ``fit_runtime`` torch, SPADE's ``pixel_k`` 0, every gallery image),
``default`` (the class defaults) or ``KEY=VALUE+KEY=VALUE...``: those
parameters over the class defaults (a key a method does not have is left
out for it). The first variant is the reference.

Fit: every variant is fitted on every dataset, in turn (interleaved; one
pass, or the fastest of ``--fit-passes``): the fit time, and the fitted model
is the one evaluated.

Speed: ``model.predict`` on the first ``--images`` test images of the first
dataset (decoded and preprocessed beforehand, so the time is scoring only) at
batch 1 and 16; in each pass every variant runs in turn (interleaved), and
the fastest of ``--passes`` passes is kept. Ratios are to the reference
measured in the same run.

Accuracy: ``model.evaluate`` on the whole test split of every dataset: image
and pixel ROC AUC, and the share of images decided as the reference decides
them at its F1-optimal threshold and at its good 0.99-quantile
(``scoring.same_decisions``).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from scoring import same_decisions

BEFORE = {"backbone_runtime": "torch", "fit_runtime": "torch", "pixel_k": 0}
"""The settings of PaDiM and SPADE before issue 16."""


def variant_params(spec: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The constructor parameters a variant sets for a method with these ``defaults`` (keys it lacks left out)."""
    if spec == "default":
        return {}
    if spec == "before":
        settings: dict[str, Any] = dict(BEFORE)
    else:
        settings = {}
        for item in spec.split("+"):
            key, value = item.split("=")
            settings[key] = type(defaults[key])(value) if key in defaults else value
    return {k: v for k, v in settings.items() if k in defaults}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--datasets", default="mtd,hazelnut_reduced")
    p.add_argument("--methods", default="padim,spade")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--fit-passes", type=int, default=1)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--variants", default="before,default")
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from indad.data import read_image, scan_test
    from indad.methods.registry import METHODS

    root = Path(args.data_root)
    datasets, methods, names = args.datasets.split(","), args.methods.split(","), args.variants.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    ref = names[0]
    params = {(m, n): variant_params(n, METHODS[m].param_defaults()) for m in methods for n in names}
    for key, value in params.items():
        print(json.dumps({"method": key[0], "variant": key[1], "params": value}), flush=True)

    # ---- fit, interleaved
    fit_s: dict[tuple[str, str, str], float] = {}
    models: dict[tuple[str, str, str], Any] = {}
    for _ in range(args.fit_passes):
        for ds in datasets:
            for m in methods:
                for n in names:
                    start = time.perf_counter()
                    model = METHODS[m](device="cpu", progress=False, **params[(m, n)]).fit(root / ds)
                    elapsed = time.perf_counter() - start
                    key = (m, n, ds)
                    fit_s[key] = min(fit_s.get(key, float("inf")), elapsed)
                    models[key] = model
                    print(json.dumps({"fit": m, "variant": n, "dataset": ds, "fit_s": round(elapsed, 1)}), flush=True)

    # ---- speed, interleaved, on the first dataset
    tests = scan_test(root / datasets[0])[: args.images]
    times: dict[str, dict[str, dict[int, list[float]]]] = {
        m: {n: {b: [] for b in batches} for n in names} for m in methods
    }
    if not args.no_speed:
        for m in methods:
            first = models[(m, names[0], datasets[0])]
            images = torch.stack([first.preprocess.image(read_image(s.path)) for s in tests])
            for n in names:  # warm-up: ONNX Runtime session, operators
                models[(m, n, datasets[0])].predict(images[:16], batch_size=16)
            for _ in range(args.passes):
                for n in names:
                    for b in batches:
                        start = time.perf_counter()
                        models[(m, n, datasets[0])].predict(images, batch_size=b)
                        times[m][n][b].append(1000 * (time.perf_counter() - start) / len(images))
    best = {m: {n: {b: min(v, default=float("nan")) for b, v in times[m][n].items()} for n in names} for m in methods}

    # ---- accuracy on every dataset
    acc: dict[str, dict[str, dict[str, dict[str, float]]]] = {m: {n: {} for n in names} for m in methods}
    if not args.no_accuracy:
        for ds in datasets:
            for m in methods:
                ref_result: dict[str, Any] | None = None
                for n in names:
                    result = models[(m, n, ds)].evaluate(root / ds)
                    ref_result = ref_result or result
                    acc[m][n][ds] = {
                        "image_auroc": result["image_auroc"],
                        "pixel_auroc": result["pixel_auroc"],
                        **same_decisions(np.asarray(result["scores"]), ref_result),
                    }
                    print(json.dumps({"method": m, "variant": n, "dataset": ds, **acc[m][n][ds]}), flush=True)

    print(
        f"\n{args.images} {datasets[0]} test images, fastest of {args.passes} interleaved passes, "
        f"{torch.get_num_threads()} threads; ratio = reference ({ref}) / variant\n"
    )
    head = "| method | variant | " + " | ".join(f"batch {b} ms/img (x faster)" for b in batches)
    head += " | " + " | ".join(f"fit s {ds} (x faster)" for ds in datasets)
    for ds in datasets if not args.no_accuracy else []:
        head += f" | {ds} image / pixel ROC AUC | same decisions F1 (ties alike) / q99"
    print(head + " |")
    print("|---" * (2 + len(batches) + len(datasets) + (0 if args.no_accuracy else 2 * len(datasets))) + "|")
    for m in methods:
        for n in names:
            row = f"| {m} | {n} | " + " | ".join(
                f"{best[m][n][b]:.1f} (x{best[m][ref][b] / best[m][n][b]:.2f})" for b in batches
            )
            row += " | " + " | ".join(
                f"{fit_s[(m, n, ds)]:.1f} (x{fit_s[(m, ref, ds)] / fit_s[(m, n, ds)]:.2f})" for ds in datasets
            )
            for ds in datasets if not args.no_accuracy else []:
                a = acc[m][n][ds]
                row += (
                    f" | {a['image_auroc']:.4f} / {a['pixel_auroc']:.4f} | {100 * a['same_decisions_f1']:.1f}% "
                    f"({100 * a['same_decisions_f1_ties']:.1f}%) / {100 * a['same_decisions_q99']:.1f}%"
                )
            print(row + " |")
    if args.json:
        out = {
            "params": {f"{m}/{n}": v for (m, n), v in params.items()},
            "fit_s": {"/".join(k): v for k, v in fit_s.items()},
            "times": times,
            "best": best,
            "accuracy": acc,
        }
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
