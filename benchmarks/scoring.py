"""PatchCore scoring speed and accuracy of runtime / search variants against the previous default, in one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/scoring.py [--data-root ../shared/datasets]
        [--datasets mtd,hazelnut_reduced] [--fraction 0.01] [--images 64] [--passes 3]
        [--variants torch+exact,onnxruntime+exact,torch+hnsw64,onnxruntime+hnsw64] [--no-accuracy]

PatchCore is fitted once per dataset with its default config (the fitted model
is cached with ``model.save`` under ``--cache``, so later runs do not refit;
the backbone runtime and the search are scoring settings, the fitted bank is
the same). A variant is ``RUNTIME+SEARCH``: ``torch`` or ``onnxruntime``, and
``exact`` or ``hnswN`` (HNSW with ``ef_search`` N), optionally ``@FRACTION``:
the bank of that coreset fraction instead of ``--fraction``'s (e.g.
``onnxruntime+hnsw16@0.1``). The first variant is the reference (the default
before issue 16: ``torch+exact``).

Speed: ``model.predict`` on the first ``--images`` test images of the first
dataset (decoded and preprocessed beforehand, so the time is scoring only) at
batch 1 and 16; in each pass every variant runs in turn (interleaved), and
the fastest of ``--passes`` passes is kept. The ratio is to the reference
variant measured in the same run.

Accuracy: ``model.evaluate`` on the whole test split of every dataset: image
and pixel ROC AUC, and the share of images whose decision (score at or above
a threshold) equals the reference's, at the reference's F1-optimal threshold
and at the 0.99-quantile of its good images' scores (see ``same_decisions``).
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
import torch


def parse_variant(text: str) -> dict[str, Any]:
    """``"onnxruntime+hnsw64"`` -> PatchCore scoring settings (an ``@FRACTION`` suffix names the bank, see main)."""
    runtime, search = text.split("@")[0].split("+")
    if search == "exact":
        return {"backbone_runtime": runtime, "search": "exact"}
    if not search.startswith("hnsw"):
        raise ValueError(f"unknown search {search!r} in variant {text!r}")
    return {"backbone_runtime": runtime, "search": "hnsw", "ef_search": int(search[4:] or 64)}


def same_decisions(scores: np.ndarray, ref: dict[str, Any]) -> dict[str, float]:
    """Shares of images decided as the reference decides them, at its F1-optimal threshold and its good 0.99-quantile.

    The F1-optimal threshold is one image's score: that image sits on the
    threshold, and float rounding alone (1e-7 relative) may put it on either
    side; ``same_decisions_f1_ties`` counts such images (within 1e-6 of the
    threshold, relative) as decided alike.
    """
    ref_scores, labels = np.asarray(ref["scores"]), np.asarray(ref["labels"])
    out = {}
    for key, thr in (("f1", ref["f1_threshold"]), ("q99", float(np.quantile(ref_scores[labels == 0], 0.99)))):
        same = (scores >= thr) == (ref_scores >= thr)
        out[f"same_decisions_{key}"] = float(same.mean())
        if key == "f1":
            tie = (np.abs(scores - thr) <= 1e-6 * abs(thr)) & (np.abs(ref_scores - thr) <= 1e-6 * abs(thr))
            out["same_decisions_f1_ties"] = float((same | tie).mean())
    return out


def fitted_model(data_root: Path, dataset: str, fraction: float, cache: Path) -> Path:
    """The cached model file of PatchCore fitted on ``dataset`` (fitted and saved when missing)."""
    from indad.methods import PatchCore

    path = cache / f"patchcore_{dataset}_{fraction:g}.indad"
    if not path.exists():
        start = time.perf_counter()
        model = PatchCore(f_coreset=fraction, device="cpu", progress=False).fit(data_root / dataset)
        print(
            json.dumps({"fitted": dataset, "fit_s": round(time.perf_counter() - start, 1), **model.timings}), flush=True
        )
        model.save(path)
    return path


def load_variant(path: Path, settings: dict[str, Any]) -> Any:
    """The model in ``path`` with the variant's scoring settings (the same fitted bank)."""
    from indad import load

    model = load(path, device="cpu")
    for key, value in settings.items():
        setattr(model, key, value)
    model.rebuild()
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--datasets", default="mtd,hazelnut_reduced")
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--cache", default="/tmp/indad_scoring_cache")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--variants", default="torch+exact,onnxruntime+exact,torch+hnsw64,onnxruntime+hnsw64")
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from indad.data import read_image, scan_test

    root, cache = Path(args.data_root), Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    datasets = args.datasets.split(",")
    names = args.variants.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    fraction = {n: float(n.split("@")[1]) if "@" in n else args.fraction for n in names}
    paths = {(ds, f): fitted_model(root, ds, f, cache) for ds in datasets for f in set(fraction.values())}

    # ---- speed, interleaved, on the first dataset
    models = {n: load_variant(paths[(datasets[0], fraction[n])], parse_variant(n)) for n in names}
    first = next(iter(models.values()))
    tests = scan_test(root / datasets[0])[: args.images]
    images = torch.stack([first.preprocess.image(read_image(s.path)) for s in tests])
    for model in models.values() if not args.no_speed else ():  # warm-up: ONNX session, HNSW graph, operators
        model.predict(images[:16], batch_size=16)
    times: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batches} for n in names}
    for _ in range(0 if args.no_speed else args.passes):
        for n, model in models.items():
            for b in batches:
                start = time.perf_counter()
                model.predict(images, batch_size=b)
                times[n][b].append(1000 * (time.perf_counter() - start) / len(images))
    best = {n: {b: min(v, default=float("nan")) for b, v in times[n].items()} for n in names}
    ref = names[0]

    # ---- accuracy on every dataset
    acc: dict[str, dict[str, dict[str, float]]] = {n: {} for n in names}
    if not args.no_accuracy:
        for ds in datasets:
            ref_result: dict[str, Any] | None = None
            for n in names:
                model = models[n] if ds == datasets[0] else load_variant(paths[(ds, fraction[n])], parse_variant(n))
                result = model.evaluate(root / ds)
                if ref_result is None:
                    ref_result = result
                acc[n][ds] = {
                    "image_auroc": result["image_auroc"],
                    "pixel_auroc": result["pixel_auroc"],
                    **same_decisions(np.asarray(result["scores"]), ref_result),
                }
                print(json.dumps({"variant": n, "dataset": ds, **acc[n][ds]}), flush=True)

    print(
        f"\nPatchCore {args.fraction:g}, {args.images} {datasets[0]} test images, fastest of {args.passes} "
        f"interleaved passes, {torch.get_num_threads()} threads; ratio = reference ({ref}) / variant\n"
    )
    head = "| variant | " + " | ".join(f"batch {b} ms/img (x faster)" for b in batches)
    for ds in datasets if acc[ref] else []:
        head += f" | {ds} image / pixel ROC AUC | same decisions F1 (ties alike) / q99"
    print(head + " |")
    print("|---" * (1 + len(batches) + (2 * len(datasets) if acc[ref] else 0)) + "|")
    for n in names:
        row = f"| {n} | " + " | ".join(f"{best[n][b]:.1f} (x{best[ref][b] / best[n][b]:.2f})" for b in batches)
        for ds in datasets if acc[n] else []:
            a = acc[n][ds]
            row += (
                f" | {a['image_auroc']:.4f} / {a['pixel_auroc']:.4f} | {100 * a['same_decisions_f1']:.1f}% "
                f"({100 * a['same_decisions_f1_ties']:.1f}%) / {100 * a['same_decisions_q99']:.1f}%"
            )
        print(row + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "best": best, "accuracy": acc}, indent=1))


if __name__ == "__main__":
    main()
