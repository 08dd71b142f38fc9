"""Fit and evaluate a method on named datasets, and write the results."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import build_model
from .data import MVTEC_CLASSES, resolve_dataset
from .errors import ConfigError
from .methods import AnomalyModel
from .results import library_versions, save_results

log = logging.getLogger(__name__)

AVERAGED = ("image_auroc", "pixel_auroc", "aupro", "f1_max")


def expand_datasets(names: list[str] | tuple[str, ...]) -> list[str]:
    """Dataset names with ``all`` replaced by the 15 MVTec AD classes."""
    out: list[str] = []
    for name in names:
        for item in MVTEC_CLASSES if name == "all" else (name,):
            if item not in out:
                out.append(item)
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def run_experiment(
    method: str,
    datasets: list[str],
    params: dict[str, Any] | None = None,
    data_root: str | os.PathLike | None = None,
    results_dir: str | os.PathLike = "results",
    download: bool = True,
    on_result: Callable[[str, dict], None] | None = None,
) -> tuple[dict, dict[str, Path]]:
    """Fit ``method`` on each dataset's ``train/good`` and evaluate it on its ``test`` split.

    Returns the report (as written to JSON) and the paths of the files written:
    ``RESULTS_DIR/TIMESTAMP_METHOD_DATASET.{json,md}`` and ``..._scores.csv``.
    """
    params = dict(params or {})
    names = expand_datasets(datasets)
    if not names:
        raise ConfigError("no dataset given")
    folders = {name: resolve_dataset(name, data_root, download) for name in names}
    created = _dt.datetime.now().astimezone()
    report: dict[str, Any] = {"method": method, "created": created.isoformat(timespec="seconds"), "datasets": {}}
    per_image: dict[str, dict] = {}
    model: AnomalyModel | None = None
    for name, folder in folders.items():
        log.info("%s on %s (%s)", method, name, folder)
        model = build_model(method, params)
        start = time.perf_counter()
        model.fit(folder)
        result = model.evaluate(folder)
        per_image[name] = {k: result.pop(k) for k in ("scores", "labels", "defects", "paths")}
        result["timings"] = {
            **model.timings,
            "predict_s": result.pop("predict_s"),
            "predict_ms_per_image": result.pop("predict_ms_per_image"),
            "total_s": time.perf_counter() - start,
        }
        result["peak_rss_mb"] = peak_rss_mb()
        result["path"] = str(folder)
        report["datasets"][name] = result
        if on_result is not None:
            on_result(name, result)
    assert model is not None
    report["average"] = {k: _mean([r[k] for r in report["datasets"].values()]) for k in AVERAGED}
    report["params"] = model.hparams()
    report["preprocess"] = model.preprocess.to_dict()
    bb = model.backbone
    report["backbone"] = {
        "name": bb.name,
        "weights_source": bb.weights_source,
        "fingerprint": bb.fingerprint,
        "strides": list(bb.strides),
        "channels": list(bb.channels),
    }
    report["device"] = str(model.device)
    report["versions"] = library_versions()
    label = names[0] if len(names) == 1 else ("mvtec_all" if names == list(MVTEC_CLASSES) else f"{len(names)}sets")
    stem = f"{created:%Y%m%d-%H%M%S}_{method}_{Path(label).name}"
    paths = save_results(report, per_image, results_dir, stem)
    return report, paths
