"""indad against anomalib (baseline A), the backbone's forward pass alone (baseline B) and issue 16's targets, on MTD.

    make bench            # = OMP_WAIT_POLICY=PASSIVE python benchmarks/bench.py (about 30 minutes here)
    python benchmarks/bench.py [--data-root ../shared/datasets] [--methods patchcore,padim,spade]
        [--fractions 0.01,0.1] [--baseline-fractions none|FRACTIONS] [--image-size 256]
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

- issue 16's targets: in the indad process, each method's scoring before issue 16
  (eager torch backbone, exact search, SPADE's whole gallery: ``PREVIOUS``) against
  its default on the same fitted model, on 64 test images read from their files
  (fastest of 3 interleaved passes): ``model.predict`` at batch 1 and 16, and
  ``predict_folder`` (what ``indad predict`` runs, with its CSV and pictures); the
  fit with the settings before it when they differ (``PREVIOUS_FIT``); the 10%
  bank's scoring against the 1% bank's. Each row says whether the goal is met.

``--baseline-fractions`` names the fractions anomalib's PatchCore runs (default
none: its greedy coreset runs over an hour at 1% here, and was killed out of
memory; ten times that at 10%).
``--overhead-only`` fits each method and prints baseline B alone (minutes, not
the hour and more anomalib's PatchCore coreset takes here).

Ratios are anomalib / indad for times and memory (above 1: indad is faster or
lighter) and indad - anomalib for ROC AUC, measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
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
import json, re, sys, tempfile, time
from pathlib import Path
import torch
from indad.data import read_image, scan_test
from indad.inference import TorchScorer, predict_folder
from indad.methods import METHODS

method, root, params, evaluate = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
variants, fit_variants = json.loads(sys.argv[5]), json.loads(sys.argv[6])
model = METHODS[method](progress=False, **params)
model.fit(root)
fit_s = model.timings["fit_s"]
result = model.evaluate(root) if evaluate else {}
# Peak memory of the fit and the evaluation (what anomalib's side measures), before the timings below add models.
hwm = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
paths = [s.path for s in scan_test(root)[:64]]
images = torch.stack([model.preprocess.image(read_image(p)) for p in paths])
overhead = {}


def forward(x):  # the backbone alone, on the scoring runtime
    return model.backbone(x, model.backbone_runtime)


with torch.inference_mode():
    for batch in (1, 16):
        chunks = list(images.split(batch))
        model.module(chunks[0]); forward(chunks[0])  # warm-up
        timings = {}
        for name, fn in (("forward", forward), ("score", model.module)):
            best = float("inf")
            for _ in range(3):  # the fastest of 3: the machine is shared
                start = time.perf_counter()
                for chunk in chunks:
                    fn(chunk)
                best = min(best, time.perf_counter() - start)
            timings[name] = 1000 * best / len(images)
        overhead[batch] = timings
# Each scoring variant in turn, fastest of 3 passes, on the 64 files (reading them included): model.predict at
# batch 1 and 16, and predict_folder (what indad predict runs: also the CSV and three PNGs an image) at batch 16.
speed, modules = {}, {}
defaults = {key: getattr(model, key) for settings in variants.values() for key in settings}


def use(name):  # the variant's settings on the model; its module calls the shared backbone on its runtime
    for key, value in {**defaults, **variants[name]}.items():
        setattr(model, key, value)
    if name not in modules:
        modules[name] = model.rebuild()
    model.module = modules[name]


for _ in range(3):
    for batch in (1, 16, "cli"):
        for name in variants:
            use(name)
            start = time.perf_counter()
            if batch == "cli":
                with tempfile.TemporaryDirectory() as tmp:
                    predict_folder(TorchScorer(model), paths, Path(tmp) / "out", batch_size=16, progress=False)
            else:
                model.predict(paths, batch_size=batch)
            ms = 1000 * (time.perf_counter() - start) / len(paths)
            speed.setdefault(name, {}).setdefault(str(batch), []).append(ms)
speed = {n: {b: min(v) for b, v in d.items()} for n, d in speed.items()}
fits = {}
for name, settings in fit_variants.items():  # fit time only: the same fit with other settings
    other = METHODS[method](progress=False, **{**params, **settings})
    other.fit(root)
    fits[name] = other.timings["fit_s"]
print("RESULT " + json.dumps({"fit_s": fit_s, "predict_ms": result.get("predict_ms_per_image"), "peak_mb": hwm / 1024,
                              "image_auroc": result.get("image_auroc"), "pixel_auroc": result.get("pixel_auroc"),
                              "overhead": overhead, "speed": speed, "fits": fits}))
"""

# Issue 16's reference: each method's scoring before it (eager torch backbone, exact search, SPADE's whole
# gallery), measured in the same process on the same fitted model; the fit before it, fitted again.
PREVIOUS = {
    "patchcore": {"backbone_runtime": "torch", "search": "exact"},
    "padim": {"backbone_runtime": "torch"},
    "spade": {"backbone_runtime": "torch", "pixel_k": 0},
}
PREVIOUS_FIT = {"fit_runtime": "torch"}


def run_indad(
    method: str, root: Path, params: dict, evaluate: bool = True, variants: dict | None = None, fits: dict | None = None
) -> dict:
    """Fit and evaluate one indad method in a fresh process; its figures (``variants``: scoring settings to time,
    ``fits``: fit settings to time)."""
    args = [
        method,
        str(root),
        json.dumps(params),
        str(int(evaluate)),
        json.dumps(variants or {}),
        json.dumps(fits or {}),
    ]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
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
    p.add_argument("--fractions", default="0.01,0.1", help="PatchCore coreset fractions, comma-separated")
    p.add_argument(
        "--baseline-fractions",
        default="none",
        help="the fractions anomalib's PatchCore also runs, or none (at 1%% it runs over an hour here)",
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
    baseline_fractions = {float(f) for f in args.baseline_fractions.split(",") if f != "none"}
    table, overheads, results = [], [], {}
    for method in args.methods.split(","):
        runs = (
            [(f, {"f_coreset": float(f)}) for f in args.fractions.split(",")] if method == "patchcore" else [(None, {})]
        )
        for n_run, (fraction, extra) in enumerate(runs):
            name = method if fraction is None else f"{method} {float(fraction):g}"
            # The method's reference scoring and fit (issue 16) are timed in its first run only.
            variants = {"default": {}, **({"previous": PREVIOUS[method]} if n_run == 0 else {})}
            fits = {"previous": PREVIOUS_FIT} if n_run == 0 and not is_default(method, PREVIOUS_FIT) else {}
            start = time.perf_counter()
            params = {"image_size": args.image_size, **extra}
            ours = run_indad(method, root, params, not args.overhead_only, variants, fits)
            results[name] = ours
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
    print()
    print(
        "Issue 16 targets: 64 MTD test images read from their files, fastest of 3 interleaved passes; reference = "
        "the scoring before issue 16 (torch backbone, exact search, SPADE's whole gallery) on the same fitted model"
    )
    print(markdown(["target", "reference", "indad", "ratio", "goal", "met"], target_rows(results)))


def is_default(method: str, settings: dict) -> bool:
    """Whether ``settings`` are the method's defaults (then there is no other fit to time)."""
    from indad.methods import METHODS

    defaults = {f.name: f.default for f in dataclasses.fields(METHODS[method])}
    return all(defaults.get(k) == v for k, v in settings.items())


def target_rows(results: dict[str, dict]) -> list[list[str]]:
    """Issue 16's rows: scoring speed-ups, the 10% bank against the 1% bank, and the fit."""
    rows = []

    def add(target: str, ref: float, ours: float, goal: float | None, note: str, faster: bool = True) -> None:
        ratio = ref / ours if faster else ours / ref
        met = "-" if goal is None else "yes" if (ratio >= goal if faster else ratio <= goal) else "**no**"
        wanted = "-" if goal is None else f"{'>=' if faster else '<='} x{goal:g}"
        rows.append([target, f"{ref:.1f} ({note})", f"{ours:.1f}", f"x{ratio:.2f}", wanted, met])

    labels = {
        "1": "model.predict batch 1, ms/image",
        "16": "model.predict batch 16, ms/image",
        "cli": "indad predict (batch 16, with its CSV and PNGs), ms/image",
    }
    for name, res in results.items():
        speed = res.get("speed", {})
        if "previous" not in speed:
            continue
        patchcore = name.startswith("patchcore")
        for batch, label in labels.items():
            add(
                f"{name}: {label}",
                speed["previous"][batch],
                speed["default"][batch],
                3.0 if patchcore else 2.0,
                "before",
            )
        fits = res.get("fits") or {"the same settings as before": res["fit_s"]}
        for note, fit_s in fits.items():
            add(f"{name}: fit s", fit_s, res["fit_s"], 2.0 if patchcore else None, note)
    small = next((n for n in results if n.startswith("patchcore") and "previous" in results[n].get("speed", {})), None)
    for name, res in results.items():
        if small is None or name == small or not name.startswith("patchcore"):
            continue
        for batch in ("1", "16"):
            ref = results[small]["speed"]["default"][batch]
            add(f"{name} against {small}: {labels[batch]}", ref, res["speed"]["default"][batch], 1.5, small, False)
    return rows


if __name__ == "__main__":
    main()
