"""Results files: a JSON report, a markdown table and per-image scores, each written atomically."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from .files import csv_text, write_atomic

METRIC_COLUMNS = (
    ("image_auroc", "image ROC AUC"),
    ("pixel_auroc", "pixel ROC AUC"),
    ("aupro", "AUPRO@30%"),
    ("f1_max", "image F1-max"),
)
TIMING_COLUMNS = (("fit_s", "fit s"), ("predict_ms_per_image", "predict ms/img"))
SCORES_COLUMNS = ("dataset", "path", "defect", "label", "score")


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the numbers."""
    import faiss
    import numpy
    import PIL
    import scipy
    import sklearn
    import timm
    import torch

    from . import __version__

    return {
        "indad": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "faiss": faiss.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "scipy": scipy.__version__,
        "pillow": PIL.__version__,
    }


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(report: dict) -> str:
    """The per-dataset metrics of a report as a markdown table, with the average last."""
    header = ["dataset", *(name for _, name in METRIC_COLUMNS), *(name for _, name in TIMING_COLUMNS)]
    lines = [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|"]
    rows = list(report["datasets"].items())
    if len(rows) > 1:
        rows.append(("**average**", report["average"]))
    for name, res in rows:
        cells = [
            name,
            *(_fmt(res.get(k)) for k, _ in METRIC_COLUMNS),
            *(_fmt(res.get("timings", {}).get(k), 1) for k, _ in TIMING_COLUMNS),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def per_defect_table(report: dict) -> str:
    """Image ROC AUC per defect type of each dataset, as a markdown table."""
    lines = ["| dataset | defect type | image ROC AUC |", "|---|---|---|"]
    for name, res in report["datasets"].items():
        for defect, value in res.get("image_auroc_per_defect", {}).items():
            lines.append(f"| {name} | {defect} | {_fmt(value)} |")
    return "\n".join(lines) + "\n"


def report_markdown(report: dict) -> str:
    """The whole report as a markdown page."""
    params = ", ".join(f"{k}={v}" for k, v in report["params"].items())
    return (
        f"# {report['method']} results\n\n"
        f"{report['created']} · backbone {report['backbone']['name']} "
        f"(weights: {report['backbone']['weights_source']}, fingerprint {report['backbone']['fingerprint']}) · "
        f"device {report['device']}\n\n{markdown_table(report)}\n## Image ROC AUC per defect type\n\n"
        f"{per_defect_table(report)}\nParameters: {params}\n"
    )


def scores_csv(per_image: dict[str, dict]) -> str:
    """Per-image scores of every dataset as CSV text."""
    rows = [
        {"dataset": name, "path": path, "defect": defect, "label": label, "score": f"{score:.6g}"}
        for name, res in per_image.items()
        for path, defect, label, score in zip(res["paths"], res["defects"], res["labels"], res["scores"], strict=True)
    ]
    return csv_text(rows, SCORES_COLUMNS)


def save_results(report: dict, per_image: dict[str, dict], folder: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Write ``STEM.json``, ``STEM.md`` and ``STEM_scores.csv`` into ``folder``; returns their paths."""
    folder = Path(folder)
    return {
        "json": write_atomic(folder / f"{stem}.json", json.dumps(_clean(report), indent=2) + "\n"),
        "markdown": write_atomic(folder / f"{stem}.md", report_markdown(report)),
        "scores": write_atomic(folder / f"{stem}_scores.csv", scores_csv(per_image)),
    }
