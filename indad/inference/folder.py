"""Score folders of images with a saved model (torch or ONNX Runtime) and write a CSV and pictures per image."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from ..data import Preprocess, read_ahead, read_image
from ..data.images import is_image_file, list_images
from ..errors import DatasetLayoutError, ImageReadError
from ..files import atomic_output, csv_text, write_atomic
from ..line import pipeline as line
from ..line.result import LineResult
from ..progress import Progress, track
from ..thresholds import DEFAULT_DECISION, Decision, Thresholds
from .scorer import Scorer, open_scorer
from .visualize import PNG_LEVEL

__all__ = ["PNG_LEVEL", "Scorer", "open_scorer", "predict_folder", "score_inputs"]

CSV_COLUMNS = (
    "path", "score", "normalized_score", "decision", "threshold", "regions", "largest_area", "error"
)  # fmt: skip
# A row of the folder's results: the CSV columns, and every region as JSON (predictions.jsonl).
ROW_FIELDS = (*CSV_COLUMNS, "regions_json")


def collect_images(inputs: Sequence[str | os.PathLike], exclude: Path | None = None) -> tuple[list[Path], Path]:
    """The image files named or found (recursively) in ``inputs``, and the folder their output names start from.

    Files that do not look like images by extension are kept when named
    directly (they get an error row); folders contribute only image files.
    """
    files: list[Path] = []
    skip = None if exclude is None else exclude.resolve()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += [f for f in list_images(p, recursive=True) if skip is None or skip not in f.resolve().parents]
        elif p.exists():
            files.append(p)
        else:
            raise ImageReadError(f"no such file or folder: {p}")
    if not files:
        raise DatasetLayoutError(f"no images in {', '.join(str(i) for i in inputs)}")
    seen: set[Path] = set()
    unique = []
    for f in files:  # a file named twice (or through two links) is scored once
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    # Output names follow the paths as given (links not resolved): a linked image keeps its folder.
    roots = [_absolute(i) if Path(i).is_dir() else _absolute(i).parent for i in inputs]
    return unique, Path(os.path.commonpath([str(r) for r in roots]))


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute without resolving links."""
    return Path(os.path.abspath(path))


def refuse_existing(out: str | os.PathLike, overwrite: bool) -> Path:
    """``out`` as a path; an error if it exists and may not be replaced."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output folder {out} exists: choose another or pass --overwrite")
    return out


def read_input(path: Path, preprocess: Preprocess) -> dict:
    """An input image, read (``original``) and preprocessed (``image``), or the ``error`` that stopped it.

    Never raises: an unreadable file becomes its error.
    """
    try:
        if not is_image_file(path):
            raise ImageReadError(f"not an image file (by its extension): {path}")
        image = read_image(path)
        return {"image": preprocess.image(image), "original": image, "error": ""}
    except Exception as exc:  # any unreadable file becomes a CSV row, the rest are still scored
        return {"image": None, "original": None, "error": str(exc) or type(exc).__name__}


class _ImageFiles(Dataset):
    """:func:`read_input` of each file, with its index."""

    def __init__(self, files: list[Path], preprocess: Preprocess) -> None:
        self.files, self.preprocess = files, preprocess

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        return {"index": i, **read_input(self.files[i], self.preprocess)}


def _collate(items: list[dict]) -> list[dict]:
    return items


def score_inputs(
    scorer: Scorer,
    paths: list[Path],
    items: list[dict],
    base: Path,
    root: Path,
    decision: Decision = DEFAULT_DECISION,
    publisher: line.Publisher | None = None,
) -> list[dict]:
    """The result rows (:data:`ROW_FIELDS`) of inputs read by :func:`read_input`, in order.

    The readable ones are scored in one batch. Their pictures go under ``root``
    (see :func:`predict_folder`), each file written whole or not at all, so
    scoring an image again rewrites the same files. With thresholds, each row
    lists the image's defect regions of at least ``decision.min_area`` pixels, in
    original-image coordinates, and its decision by ``decision``. ``publisher`` (the
    sinks' outbox) gets each :class:`~indad.line.result.LineResult`.
    """
    pipeline = line.Pipeline(scorer, scorer.model_info, decision, publisher=publisher)
    return [result_row(r) for r in score_results(pipeline, paths, items, base, root)]


def score_results(
    pipeline: line.Pipeline,
    paths: list[Path],
    items: list[dict],
    base: Path,
    root: Path,
    ids: list[str] | None = None,
) -> list[LineResult]:
    """:func:`score_inputs` through ``pipeline`` (its sinks too), as :class:`~indad.line.result.LineResult` s;
    ``ids`` fixes the result ids."""
    inputs = [
        line.Input(
            str(path),
            item["original"],
            item["image"],
            item["error"],
            picture=output_name(_relative(path, base)),
            result_id=None if ids is None else ids[i],
        )
        for i, (path, item) in enumerate(zip(paths, items, strict=True))
    ]
    return [scored.result for scored in pipeline.run(inputs, root)]


def result_row(result: LineResult) -> dict:
    """A result as a row of :data:`ROW_FIELDS` (numbers as text, "" where there is none)."""
    row = dict.fromkeys(ROW_FIELDS, "") | {"path": result.source, "error": result.error}
    if result.score is not None:
        row["score"] = f"{result.score:.6g}"
        if result.threshold is not None and result.normalized_score is not None:
            row["normalized_score"] = f"{result.normalized_score:.6g}"
            row["decision"] = result.decision or ""
            row["threshold"] = f"{result.threshold:.6g}"
    if result.regions is not None:
        row["regions"] = str(len(result.regions))
        row["largest_area"] = str(max((r["area"] for r in result.regions), default=0))
        row["regions_json"] = json.dumps(result.regions)
    return row


def report_error(row: dict) -> None:
    """An unreadable input's error on stderr."""
    print(f"error: {row['path']}: {row['error']}", file=sys.stderr)


def write_results(folder: Path, rows: list[dict]) -> None:
    """``folder/predictions.csv`` (a line per image) and ``folder/predictions.jsonl`` (with every region)."""
    write_atomic(folder / "predictions.csv", csv_text([{c: row[c] for c in CSV_COLUMNS} for row in rows], CSV_COLUMNS))
    lines = []
    for row in rows:
        record: dict[str, Any] = {c: row[c] for c in ("path", "score", "decision", "error")}
        record["score"] = float(record["score"]) if record["score"] else None
        record["regions"] = json.loads(row["regions_json"]) if row["regions_json"] else None
        lines.append(json.dumps(record) + "\n")
    write_atomic(folder / "predictions.jsonl", "".join(lines))


@dataclass
class FolderPrediction:
    """What :func:`predict_folder` did: the CSV rows, how many images failed, where the outputs are."""

    rows: list[dict]
    failed: int
    out: Path
    thresholds: Thresholds | None = None


def predict_folder(
    scorer: Scorer,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    overwrite: bool = False,
    batch_size: int = 16,
    num_workers: int = 0,
    progress: Progress = True,
    decision: Decision = DEFAULT_DECISION,
    publisher: line.Publisher | None = None,
) -> FolderPrediction:
    """Score every image of ``inputs`` and write ``out/predictions.csv``, ``out/predictions.jsonl`` and pictures.

    For each image ``REL`` (its path relative to the input folder; see
    :func:`output_name`): ``heatmaps/REL.png`` (the anomaly map in colour, 0 to twice the pixel
    threshold), ``overlays/REL.png`` (on the original image, at its original
    size, defect outlines in white) and ``masks/REL.png`` (map at or above the
    pixel threshold; all black without thresholds). With thresholds, the
    connected regions of the mask of at least ``decision.min_area`` pixels are the
    image's defect regions: their count and the largest area are CSV columns,
    and ``predictions.jsonl`` lists each (:class:`~indad.regions.Region`: area,
    bounding box, centroid in original-image pixels; peak and mean score).
    Unreadable images get an error in their row and on stderr; ``publisher`` (the sinks'
    outbox) gets every result as a :class:`~indad.line.result.LineResult`. ``out``
    appears complete or not at all; an existing ``out`` is replaced only with
    ``overwrite``.
    """
    out = refuse_existing(out, overwrite)
    files, base = collect_images(inputs, exclude=out)
    loader = DataLoader(
        _ImageFiles(files, scorer.preprocess), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate
    )
    rows: list[dict] = [{} for _ in files]
    with atomic_output(out) as tmp:
        for batch in track(read_ahead(loader), "predict", len(loader), progress):
            indices = [item["index"] for item in batch]
            scored = score_inputs(scorer, [files[i] for i in indices], batch, base, tmp, decision, publisher)
            for i, row in zip(indices, scored, strict=True):
                rows[i] = row
                if row["error"]:
                    report_error(row)
        write_results(tmp, rows)
    return FolderPrediction(rows, sum(1 for r in rows if r["error"]), out, scorer.thresholds)


def output_name(rel: Path) -> Path:
    """The PNG name of an input's pictures: ``a.png`` stays, ``a.jpg`` becomes ``a.jpg.png`` (no collisions)."""
    return rel if rel.suffix.lower() == ".png" else rel.with_name(rel.name + ".png")


def _relative(path: Path, base: Path) -> Path:
    absolute = _absolute(path)
    return absolute.relative_to(base) if base in absolute.parents else Path(absolute.name)
