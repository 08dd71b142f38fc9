"""Accuracy report: every method at its default config, PatchCore scoring variants, and anomalib beside them.

One table: rows = datasets (the real ones under ../shared/datasets and stand-ins built from them), columns =
method or PatchCore variant, each cell image ROC AUC / pixel ROC AUC / AUPRO@30%, anomalib's own PatchCore /
PaDiM (../shared/bench/anomalib_baseline.py, image and pixel ROC AUC only) beside indad's, then the mean rank of
each PatchCore variant (and of each method) across the datasets.

Usage (from the repository root):

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/accuracy.py                  # everything (hours on 2 cores)
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/accuracy.py --quick          # the small sets only (minutes)
    .venv/bin/python benchmarks/accuracy.py --datasets mtd,mtd_resplit --methods patchcore --variants default,max_patch
    .venv/bin/python benchmarks/accuracy.py --quick --methods none --variants none \\
        --anomalib-python ../.venv-anomalib/bin/python                                # anomalib's figures only
    .venv/bin/python benchmarks/accuracy.py --table-only                              # the table from saved results

Options: ``--datasets`` (comma list; names below; default all), ``--methods`` (patchcore, padim, spade, or none),
``--variants`` (PatchCore variants below, or none; ``default`` is indad's PatchCore default), ``--anomalib-python``
(the python of anomalib's venv: runs anomalib_baseline.py for PatchCore and PaDiM), ``--quick`` (small sets and
their stand-ins only), ``--work-dir`` (stand-ins and saved results; default /tmp/indad_accuracy), ``--rerun``
(measure again what is already saved), ``--table-only``, ``--markdown FILE`` (also write the tables there).

Every measured cell is saved as one JSON file under WORK_DIR/results (with the date and indad's git commit), so
runs can be split over several processes (e.g. anomalib in one, indad in another) and the table printed at the end.

Datasets (DATA = $INDAD_DATA_DIR, else ../shared/datasets):

- ``mtd``, ``hazelnut_reduced``, ``transistor_reduced``: the folders under DATA, as they are.
- ``hazelnut_heldout``, ``transistor_heldout``: stand-ins for a reduced MVTec AD set with a usable number of good
  test images. Of the 50 train/good images, 20 chosen by ``random.Random(0)`` (from the sorted file names) are
  held out: they join test/good (as ``heldout_<name>``), the model is fitted on the other 30. test/good then holds
  22 images, the 8 defective test images and their masks are unchanged.
- ``mtd_resplit``: MTD's 952 good images (train/good + test/good) shuffled by ``random.Random(1)`` (from the
  sorted file names): the first 761 train, the other 191 are test/good (as many as the published split); the 392
  defective test images and masks are unchanged. Checks that a default does not rest on MTD's published split.

Stand-ins are folders of symbolic links (one per file) to the unmodified images under WORK_DIR/datasets.

PatchCore variants are set through constructor parameters only. The memory bank is fitted once per
(strides); variants that change only scoring (image_score, n_reweight, blur_sigma) set those attributes on the
fitted model and rebuild its module (``model.rebuild()``) before ``evaluate``. The 3x3
pooling's zero padding is not a parameter and is not varied here. anomalib's PatchCore does not run on the
full-size MTD sets (over an hour and out of memory on this machine, 24 GB): those cells say so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see DEVELOPERS.md)

REPO = Path(__file__).resolve().parents[1]
ANOMALIB_SCRIPT = REPO.parent / "shared" / "bench" / "anomalib_baseline.py"
REAL = ("mtd", "hazelnut_reduced", "transistor_reduced")
STAND_INS = ("mtd_resplit", "hazelnut_heldout", "transistor_heldout")
SMALL = ("hazelnut_reduced", "transistor_reduced", "hazelnut_heldout", "transistor_heldout")
ALL_DATASETS = REAL + STAND_INS
METHOD_NAMES = ("patchcore", "padim", "spade")
HELDOUT, HELDOUT_SEED, RESPLIT_SEED = 20, 0, 1
# anomalib's PatchCore over MTD's ~780k patches ran over an hour and was killed for memory here (docs/benchmarks.md).
NO_ANOMALIB_PATCHCORE = {"mtd", "mtd_resplit"}
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

# PatchCore variants: constructor parameters that differ from the default (max of the σ8-blurred map, no
# re-weighting, strides 8 and 16). "anomalib_like" scores as anomalib's PatchCore does (largest patch distance,
# Eq. 7 re-weighting with 9 neighbours, map blurred with σ 4).
VARIANTS: dict[str, dict] = {
    "default": {},
    "max_patch": {"image_score": "max_patch"},
    "sigma4": {"blur_sigma": 4.0},
    "rw3": {"n_reweight": 3},
    "rw9": {"n_reweight": 9},
    "max_patch_rw3": {"image_score": "max_patch", "n_reweight": 3},
    "anomalib_like": {"image_score": "max_patch", "n_reweight": 9, "blur_sigma": 4.0},
    "strides_4_8_16": {"strides": (4, 8, 16)},
}
SCORING_KEYS = ("image_score", "n_reweight", "blur_sigma")
METRICS = ("image_auroc", "pixel_auroc", "aupro")
RANK_RULE = "ranked per dataset and metric on the 3-decimal values, ties shared, 1 = best"


def data_dir() -> Path:
    """Where the real datasets are: $INDAD_DATA_DIR, else ../shared/datasets."""
    env = os.environ.get("INDAD_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


def images(folder: Path) -> list[Path]:
    """The image files of a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT)


def link_files(files: list[Path], dest: Path, prefix: str = "") -> None:
    """One symbolic link per file in ``dest`` (named ``prefix + name``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = dest / f"{prefix}{f.name}"
        if target.exists() or target.is_symlink():
            raise FileExistsError(target)
        target.symlink_to(f.resolve())


def link_defects(src: Path, dst: Path) -> None:
    """Link every defective test image and every mask of ``src`` into ``dst`` unchanged."""
    for d in sorted(p for p in (src / "test").iterdir() if p.is_dir() and p.name != "good"):
        link_files(images(d), dst / "test" / d.name)
    for d in sorted(p for p in (src / "ground_truth").iterdir() if p.is_dir()):
        link_files(images(d), dst / "ground_truth" / d.name)


def build_heldout(src: Path, dst: Path) -> dict:
    """train/good minus HELDOUT seeded images; those join test/good. See the module docstring."""
    train = images(src / "train" / "good")
    held = sorted(random.Random(HELDOUT_SEED).sample(train, HELDOUT))
    link_files([p for p in train if p not in held], dst / "train" / "good")
    link_files(images(src / "test" / "good"), dst / "test" / "good")
    link_files(held, dst / "test" / "good", prefix="heldout_")
    link_defects(src, dst)
    return {"train_good": len(train) - HELDOUT, "test_good": len(images(src / "test" / "good")) + HELDOUT}


def build_resplit(src: Path, dst: Path) -> dict:
    """MTD's good images split again by a seeded shuffle, same sizes; defects unchanged."""
    train, test = images(src / "train" / "good"), images(src / "test" / "good")
    pool = sorted(train + test, key=lambda p: (p.name, str(p)))
    random.Random(RESPLIT_SEED).shuffle(pool)
    new_train, new_test = pool[: len(train)], pool[len(train) :]
    link_files(new_train, dst / "train" / "good")
    link_files(new_test, dst / "test" / "good")
    link_defects(src, dst)
    moved = sum(p.parent.parent.name == "train" for p in new_test)
    return {"train_good": len(new_train), "test_good": len(new_test), "test_good_from_published_train": moved}


def dataset_root(name: str, work: Path) -> Path:
    """The folder of a dataset, building a stand-in (once) under ``work/datasets``."""
    base = data_dir()
    if name in REAL:
        return base / name
    dst = work / "datasets" / name
    if (dst / ".complete").exists():
        return dst
    if dst.exists():
        raise SystemExit(f"{dst} is incomplete (an interrupted build?): remove it and run again")
    if name == "mtd_resplit":
        info = build_resplit(base / "mtd", dst)
    elif name.endswith("_heldout"):
        info = build_heldout(base / f"{name.removesuffix('_heldout')}_reduced", dst)
    else:
        raise SystemExit(f"unknown dataset {name!r} (known: {', '.join(ALL_DATASETS)})")
    (dst / ".complete").write_text(json.dumps(info))
    print(f"built stand-in {name} at {dst}: {info}", flush=True)
    return dst


# ----------------------------------------------------------------- saved results
def result_path(work: Path, dataset: str, column: str) -> Path:
    return work / "results" / f"{dataset}__{column.replace(':', '-')}.json"


def save_result(work: Path, dataset: str, column: str, entry: dict) -> None:
    path = result_path(work, dataset, column)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, indent=1))
    tmp.replace(path)


def load_results(work: Path) -> dict[tuple[str, str], dict]:
    out = {}
    for p in sorted((work / "results").glob("*.json")):
        e = json.loads(p.read_text())
        out[(e["dataset"], e["column"])] = e
    return out


def git_commit() -> str:
    try:
        git = ["git", "-C", str(REPO)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "indad"], capture_output=True, text=True)
        return head.stdout.strip() + ("+dirty(indad)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def entry(dataset: str, column: str, metrics: dict, **extra) -> dict:
    return {
        "dataset": dataset,
        "column": column,
        **{k: float(metrics[k]) if metrics.get(k) is not None else None for k in METRICS},
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        **extra,
    }


# ----------------------------------------------------------------- measuring
def run_method(name: str, root: Path) -> tuple[dict, float]:
    """``METHODS[name]().fit(root).evaluate(root)`` at the default config."""
    from indad.methods import METHODS

    start = time.perf_counter()
    metrics = METHODS[name](progress=False).fit(root).evaluate(root)
    return metrics, time.perf_counter() - start


def run_variants(names: list[str], root: Path, dataset: str, work: Path, rerun: bool, done: set) -> None:
    """PatchCore variants: one fit per strides, the scoring-only variants re-scored on that fit."""
    from indad.methods import PatchCore

    groups: dict[tuple, list[str]] = {}
    for v in names:
        params = VARIANTS[v]
        groups.setdefault(tuple(params.get("strides", PatchCore.default_strides)), []).append(v)
    for strides, members in groups.items():
        todo = [v for v in members if rerun or (dataset, f"pc:{v}") not in done]
        if not todo:
            continue
        start = time.perf_counter()
        kwargs = {"strides": strides} if strides != PatchCore.default_strides else {}
        model = PatchCore(progress=False, **kwargs).fit(root)
        fit_s = time.perf_counter() - start
        defaults = {k: getattr(model, k) for k in SCORING_KEYS}
        for v in todo:
            scoring = {k: VARIANTS[v].get(k, defaults[k]) for k in SCORING_KEYS}
            for k, val in scoring.items():
                setattr(model, k, val)
            model.rebuild()
            t = time.perf_counter()
            m = model.evaluate(root)
            e = entry(dataset, f"pc:{v}", m, fit_s=round(fit_s, 1), eval_s=round(time.perf_counter() - t, 1))
            e["params"] = {**scoring, "strides": list(strides), "bank": list(model.memory_bank.shape)}
            save_result(work, dataset, f"pc:{v}", e)
            print(f"{dataset:20s} pc:{v:18s} {fmt(e)}  (fit {fit_s:.0f} s, eval {e['eval_s']} s)", flush=True)


def run_anomalib(python: str, method: str, root: Path) -> tuple[dict, str]:
    """anomalib_baseline.py on ``root``: its image and pixel ROC AUC (it computes no AUPRO)."""
    cmd = [python, str(ANOMALIB_SCRIPT), str(root), "--method", method, "--size", "256", "--coreset", "0.01"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-2000:]}")
    found = {k: re.search(rf"^{k}: ([0-9.]+)", out, re.M) for k in ("image_auroc", "pixel_auroc", "anomalib_version")}
    if not (found["image_auroc"] and found["pixel_auroc"]):
        raise RuntimeError(f"no image_auroc / pixel_auroc in the output of {' '.join(cmd)}:\n{out[-2000:]}")
    metrics = {"image_auroc": float(found["image_auroc"][1]), "pixel_auroc": float(found["pixel_auroc"][1])}
    return metrics, " ".join(cmd) + f"  # anomalib {found['anomalib_version'][1] if found['anomalib_version'] else '?'}"


# ----------------------------------------------------------------- the table
def fmt(e: dict | None) -> str:
    if e is None:
        return "–"
    if e.get("note"):
        return e["note"]
    return " / ".join("–" if e.get(k) is None or math.isnan(e[k]) else f"{e[k]:.3f}" for k in METRICS)


def ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank 1 = best (highest); ties share their mean rank."""
    order = sorted(values, key=lambda k: -values[k])
    out, i = {}, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def mean_ranks(results: dict, datasets: list[str], columns: list[str]) -> dict[str, dict[str, tuple[float, int]]]:
    """Per metric, the mean rank of each column over ``datasets`` (values rounded to the 3 decimals shown)."""
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for metric in METRICS:
        acc: dict[str, list[float]] = {c: [] for c in columns}
        for d in datasets:
            vals = {c: results[(d, c)].get(metric) for c in columns if (d, c) in results}
            vals = {c: round(v, 3) for c, v in vals.items() if v is not None and not math.isnan(v)}
            if len(vals) < 2:
                continue
            for c, r in ranks(vals).items():
                acc[c].append(r)
        out[metric] = {c: (sum(r) / len(r), len(r)) for c, r in acc.items() if r}
    return out


def rank_table(results: dict, datasets: list[str], columns: list[str]) -> list[str]:
    """Markdown rows: the mean rank of each column per metric and the mean of the three."""
    mr = mean_ranks(results, datasets, columns)
    lines = ["| column | image ROC AUC | pixel ROC AUC | AUPRO | mean of the three |", "|---|---|---|---|---|"]
    for c in columns:
        cells = [mr[m].get(c) for m in METRICS]
        valid = [x[0] for x in cells if x]
        if valid:
            txt = [f"{x[0]:.2f}" if x else "–" for x in cells]
            lines.append(f"| {label(c)} | " + " | ".join(txt) + f" | {sum(valid) / len(valid):.2f} |")
    return lines


def label(column: str) -> str:
    kind, name = column.split(":", 1)
    if kind == "pc":
        return "PatchCore default" if name == "default" else f"PatchCore {name}"
    return f"{kind} " + {"padim": "PaDiM", "spade": "SPADE", "patchcore": "PatchCore"}[name]


def tables(results: dict, datasets: list[str]) -> str:
    """Markdown: methods at default (with anomalib), PatchCore variants, mean ranks."""
    lines = []
    method_cols = ["pc:default", "anomalib:patchcore", "indad:padim", "anomalib:padim", "indad:spade"]
    variant_cols = [f"pc:{v}" for v in VARIANTS]
    for title, cols in (("Methods at their default config", method_cols), ("PatchCore variants", variant_cols)):
        cols = [c for c in cols if any((d, c) in results for d in datasets)]
        if not cols:
            continue
        lines += [f"### {title} (image ROC AUC / pixel ROC AUC / AUPRO@30%)", ""]
        lines += ["| dataset | " + " | ".join(label(c) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for d in datasets:
            if any((d, c) in results for c in cols):
                lines.append(f"| {d} | " + " | ".join(fmt(results.get((d, c))) for c in cols) + " |")
        ranked = [c for c in cols if not c.startswith("anomalib:")]
        rows = [d for d in datasets if any((d, c) in results for c in cols)]
        complete = [c for c in ranked if all((d, c) in results for d in rows)]
        common = [d for d in rows if all((d, c) in results for c in ranked)]
        if len(complete) > 1:
            lines += ["", f"Mean rank ({title.lower()} measured on all {len(rows)} datasets: {', '.join(rows)}; "]
            lines[-1] += f"{RANK_RULE}):"
            lines += ["", *rank_table(results, rows, complete)]
        if len(complete) < len(ranked) and len(common) > 1:
            lines += ["", f"Mean rank of all columns ({title.lower()}) on the {len(common)} datasets where all were "]
            lines[-1] += f"measured ({', '.join(common)}; {RANK_RULE}):"
            lines += ["", *rank_table(results, common, ranked)]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(ALL_DATASETS))
    p.add_argument("--methods", default=",".join(METHOD_NAMES), help="patchcore,padim,spade or none")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"{','.join(VARIANTS)} or none")
    p.add_argument("--anomalib-python", default=None, help="python of anomalib's venv (runs anomalib_baseline.py)")
    p.add_argument("--quick", action="store_true", help="the small sets and their stand-ins only")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/indad_accuracy"))
    p.add_argument("--rerun", action="store_true", help="measure again what is already saved")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    args = p.parse_args()

    datasets = list(SMALL) if args.quick else [d.strip() for d in args.datasets.split(",") if d.strip()]
    methods = [] if args.methods == "none" else [m.strip() for m in args.methods.split(",")]
    variants = [] if args.variants == "none" else [v.strip() for v in args.variants.split(",")]
    for name, known, given in (("dataset", ALL_DATASETS, datasets), ("method", METHOD_NAMES, methods)):
        if bad := [x for x in given if x not in known]:
            raise SystemExit(f"unknown {name}(s) {bad} (known: {', '.join(known)})")
    if bad := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"unknown variant(s) {bad} (known: {', '.join(VARIANTS)})")
    work = args.work_dir
    print(f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} data={data_dir()} work={work} commit={git_commit()}")

    if not args.table_only:
        for d in datasets:
            root = dataset_root(d, work)
            done = set() if args.rerun else set(load_results(work))
            # PatchCore at its default is the variant "default": one fit serves it and the scoring variants.
            pc_variants = list(dict.fromkeys((["default"] if "patchcore" in methods else []) + variants))
            if pc_variants:
                run_variants(pc_variants, root, d, work, args.rerun, done)
            for m in (x for x in methods if x != "patchcore"):
                if (d, f"indad:{m}") in done:
                    continue
                metrics, secs = run_method(m, root)
                e = entry(d, f"indad:{m}", metrics, fit_eval_s=round(secs, 1))
                save_result(work, d, f"indad:{m}", e)
                print(f"{d:20s} indad:{m:16s} {fmt(e)}  ({secs:.0f} s)", flush=True)
            if args.anomalib_python:
                for m in ("patchcore", "padim"):
                    col = f"anomalib:{m}"
                    if (d, col) in done:
                        continue
                    if m == "patchcore" and d in NO_ANOMALIB_PATCHCORE:
                        e = entry(d, col, {}, note="not run (>1 h, out of memory)")
                    else:
                        t = time.perf_counter()
                        metrics, cmd = run_anomalib(args.anomalib_python, m, root)
                        e = entry(d, col, metrics, command=cmd, seconds=round(time.perf_counter() - t, 1))
                    save_result(work, d, col, e)
                    print(f"{d:20s} {col:22s} {fmt(e)}", flush=True)

    results = load_results(work)
    shown = [d for d in ALL_DATASETS if any(k[0] == d for k in results)] if args.table_only else datasets
    text = tables(results, shown)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
