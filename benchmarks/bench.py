"""indad against anomalib (baseline A) and the backbone's forward pass alone (baseline B), on MTD.

    make bench            # = OMP_WAIT_POLICY=PASSIVE python benchmarks/bench.py
    python benchmarks/bench.py [--data-root ../shared/datasets] [--methods patchcore,padim,spade]
        [--fractions 0.01] [--baseline-fractions FRACTIONS] [--image-size 256]
        [--anomalib-python ../.venv-anomalib/bin/python] [--overhead-only]

Per method, each side runs in a fresh process (so its peak RSS is its own):

- indad: the default offline config at ``--image-size`` (PatchCore at each coreset
  fraction of ``--fractions``): fit on MTD's 761 training images, evaluate on its
  583 test images; fit seconds, predict ms per image (reading images included, as
  for anomalib), peak RSS, image and pixel ROC AUC.
- baseline A: ``../shared/bench/anomalib_baseline.py`` (anomalib's own PatchCore and
  PaDiM torch models, same backbone weights, images, size and coreset fraction), run
  with the Python of a separate virtual environment (set-up in that script's header).
  Skipped, with a note, when that Python is missing. anomalib has no SPADE.
- baseline B: in the indad process, on 64 preloaded test images (fastest of 3
  passes), the backbone's forward pass alone against the fitted model's whole scoring (forward, nearest
  neighbours or Mahalanobis, maps, blur), at batch 1 and 16: the overhead is the
  scoring time after the forward pass, as a share of the forward pass.

``--baseline-fractions`` limits anomalib's PatchCore to some of the fractions
(its greedy coreset runs about an hour at 1% here, ten times that at 10%).
``--overhead-only`` fits each method and prints baseline B alone (minutes, not
the hour and more anomalib's PatchCore coreset takes here).

Ratios are anomalib / indad for times and memory (above 1: indad is faster or
lighter) and indad - anomalib for ROC AUC, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO.parent / "shared" / "bench" / "anomalib_baseline.py"

CHILD = r"""
import json, re, sys, time
import torch
from indad.data import read_image, scan_test
from indad.methods import METHODS

method, root, params, evaluate = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
model = METHODS[method](progress=False, **params)
model.fit(root)
fit_s = model.timings["fit_s"]
result = model.evaluate(root) if evaluate else {}
images = torch.stack([model.preprocess.image(read_image(s.path)) for s in scan_test(root)[:64]])
overhead = {}
with torch.inference_mode():
    for batch in (1, 16):
        chunks = list(images.split(batch))
        model.module(chunks[0]); model.backbone(chunks[0])  # warm-up
        timings = {}
        for name, fn in (("forward", model.backbone), ("score", model.module)):
            best = float("inf")
            for _ in range(3):  # the fastest of 3: the machine is shared
                start = time.perf_counter()
                for chunk in chunks:
                    fn(chunk)
                best = min(best, time.perf_counter() - start)
            timings[name] = 1000 * best / len(images)
        overhead[batch] = timings
hwm = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
print("RESULT " + json.dumps({"fit_s": fit_s, "predict_ms": result.get("predict_ms_per_image"), "peak_mb": hwm / 1024,
                              "image_auroc": result.get("image_auroc"), "pixel_auroc": result.get("pixel_auroc"),
                              "overhead": overhead}))
"""


def run_indad(method: str, root: Path, params: dict, evaluate: bool = True) -> dict:
    """Fit and evaluate one indad method in a fresh process; its figures."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(root), json.dumps(params), str(int(evaluate))],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.split("RESULT ", 1)[1])


def run_anomalib(python: Path, method: str, root: Path, size: int, fraction: float | None) -> dict:
    """anomalib's model through the shared baseline script; its figures (keys as indad's)."""
    cmd = [str(python), str(BASELINE), str(root), "--method", method, "--size", str(size)]
    if fraction is not None:
        cmd += ["--coreset", str(fraction)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    value = {k: float(v) for k, v in re.findall(r"^(\w+): (\d+(?:\.\d+)?)(?=\s|$)", out, flags=re.M)}
    fit = value["fit_feature_s"] + value.get("fit_coreset_s", value.get("fit_gaussian_s", 0.0))
    return {
        "fit_s": fit,
        "predict_ms": value["predict_ms_per_image"],
        "peak_mb": value["peak_rss_mb"],
        "image_auroc": value["image_auroc"],
        "pixel_auroc": value["pixel_auroc"],
    }


def row(name: str, ours: dict, base: dict | None) -> list[str]:
    """Table cells: each figure of indad, anomalib's, and their ratio."""

    def ratio(key: str) -> str:
        return "-" if base is None else f"x{base[key] / ours[key]:.2f}"

    def diff(key: str) -> str:
        return "-" if base is None else f"{100 * (ours[key] - base[key]):+.1f} pt"

    def of(key: str, fmt: str) -> str:
        return "-" if base is None else format(base[key], fmt)

    return [
        name,
        f"{ours['fit_s']:.1f} / {of('fit_s', '.1f')} ({ratio('fit_s')})",
        f"{ours['predict_ms']:.1f} / {of('predict_ms', '.1f')} ({ratio('predict_ms')})",
        f"{ours['peak_mb']:.0f} / {of('peak_mb', '.0f')} ({ratio('peak_mb')})",
        f"{ours['image_auroc']:.4f} / {of('image_auroc', '.4f')} ({diff('image_auroc')})",
        f"{ours['pixel_auroc']:.4f} / {of('pixel_auroc', '.4f')} ({diff('pixel_auroc')})",
    ]


def overhead_cells(name: str, ours: dict) -> list[str]:
    """Scoring time after the forward pass, as a share of the forward pass, at batch 1 and 16."""
    cells = [name]
    for batch in ("1", "16"):
        t = ours["overhead"][batch]
        cells.append(f"{t['forward']:.1f} ms -> {t['score']:.1f} ms ({100 * (t['score'] / t['forward'] - 1):.0f}%)")
    return cells


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    p.add_argument("--methods", default="patchcore,padim,spade")
    p.add_argument("--fractions", default="0.01", help="PatchCore coreset fractions, comma-separated")
    p.add_argument(
        "--baseline-fractions",
        default=None,
        help="the fractions anomalib's PatchCore also runs (default: all of --fractions)",
    )
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--anomalib-python", default=str(REPO.parent / ".venv-anomalib" / "bin" / "python"))
    p.add_argument(
        "--overhead-only",
        action="store_true",
        help="baseline B only: fit each method, time forward pass against scoring (no evaluation, no anomalib)",
    )
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    root = Path(args.data_root) / "mtd"
    python = Path(args.anomalib_python)
    have_baseline = python.is_file() and BASELINE.is_file() and not args.overhead_only
    if not have_baseline and not args.overhead_only:
        print(f"baseline A skipped: no {python} (set it up as {BASELINE} says in its header)")
    print(
        f"MTD at {root}, {args.image_size} px, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
        f"loadavg {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    baseline_fractions = {float(f) for f in (args.baseline_fractions or args.fractions).split(",")}
    table, overheads = [], []
    for method in args.methods.split(","):
        runs = (
            [(f, {"f_coreset": float(f)}) for f in args.fractions.split(",")] if method == "patchcore" else [(None, {})]
        )
        for fraction, extra in runs:
            name = method if fraction is None else f"{method} {float(fraction):g}"
            start = time.perf_counter()
            ours = run_indad(method, root, {"image_size": args.image_size, **extra}, not args.overhead_only)
            print(f"{name}: indad in {time.perf_counter() - start:.0f} s: {json.dumps(ours)}", flush=True)
            base = None
            if have_baseline and method != "spade" and (fraction is None or float(fraction) in baseline_fractions):
                start = time.perf_counter()
                base = run_anomalib(
                    python, method, root, args.image_size, None if fraction is None else float(fraction)
                )
                print(f"{name}: anomalib in {time.perf_counter() - start:.0f} s: {json.dumps(base)}", flush=True)
            if not args.overhead_only:
                table.append(row(name, ours, base))
            overheads.append(overhead_cells(name, ours))
    if not args.overhead_only:
        print()
        print(
            markdown(
                [
                    "method",
                    "fit s: indad / anomalib (ratio)",
                    "predict ms/image",
                    "peak RSS MB",
                    "image ROC AUC",
                    "pixel ROC AUC",
                ],
                table,
            )
        )
    print()
    print("Baseline B: backbone forward alone -> whole scoring per image (overhead after the forward pass)")
    print(markdown(["method", "batch 1", "batch 16"], overheads))


if __name__ == "__main__":
    main()
