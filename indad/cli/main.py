"""The ``indad`` command line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..config import build_model, resolve_params
from ..errors import IndadError
from ..lifecycle.checks import quick_warnings
from ..lifecycle.sinks import record_sink
from ..methods import METHODS
from ..thresholds import DECISION_RULES, Decision
from .lifecycle import (
    check_command,
    feedback_command,
    models_command,
    retrain_command,
    review_command,
    rollback_command,
)

# Errors shown as one clear message, without a traceback: indad's own, and files missing or in the way.
USER_ERRORS = (IndadError, FileNotFoundError, FileExistsError)


def setup_logging(verbose: bool, quiet: bool) -> None:
    """Log indad's messages to stderr: INFO by default, DEBUG with --verbose, warnings only with --quiet."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    logger = logging.getLogger("indad")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="indad")
def cli() -> None:
    """indad: industrial visual anomaly detection (SPADE, PaDiM, PatchCore) on frozen ImageNet CNN features."""


def option_group(doc: str, *options: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    """A decorator adding ``options`` to a command, in this order in its ``--help``; ``doc`` says what they are."""

    def add(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    add.__doc__ = doc
    return add


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | list[int] | str | None:
    """``256`` or ``HEIGHTxWIDTH`` as a size parameter (``native`` for ``--image-size``)."""
    if value is None or (value == "native" and param.name == "image_size"):
        return value
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        raise click.BadParameter(f"expected N or HEIGHTxWIDTH, got {value!r}") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise click.BadParameter(f"expected N or HEIGHTxWIDTH, got {value!r}")
    return parts[0] if len(parts) == 1 else parts


shape_options = option_group(
    "The options saying what the model sees of an image: working size, aspect ratio, tiles, region of interest.",
    click.option(
        "--image-size",
        callback=_size,
        help="Working size every image is resized to: N, HEIGHTxWIDTH, or native (the first training "
        "image's size) (overrides the config).",
    ),
    click.option(
        "--resize",
        type=click.Choice(["stretch", "fit"]),
        default=None,
        help="stretch to the working size, or fit inside it keeping the aspect ratio (letterbox) "
        "[default: the config's, else stretch].",
    ),
    click.option(
        "--tile",
        callback=_size,
        help="Score overlapping tiles of this size (N or HEIGHTxWIDTH) of the working image, maps stitched back.",
    ),
    click.option("--overlap", type=click.IntRange(0), default=None, help="Pixels neighbouring tiles share [0]."),
    click.option(
        "--roi",
        type=click.Path(dir_okay=False, exists=True),
        default=None,
        help="Region of interest: a mask picture, white where the model inspects (any size, the images' "
        "aspect ratio); outside it nothing scores.",
    ),
)


def shape_overrides(
    image_size: int | list[int] | None, resize: str | None, tile: int | list[int] | None, overlap: int | None, roi
) -> dict[str, Any]:
    """The parameters :func:`shape_options` set (None: the config's value)."""
    if overlap is not None and tile is None:
        raise click.UsageError("--overlap needs --tile")
    tiling = None if tile is None else {"size": tile, "overlap": overlap or 0}
    return {"image_size": image_size, "resize": resize, "tile": tiling, "roi": roi}


decision_options = option_group(
    "The options saying how a scored image is judged and which defect regions are reported.",
    click.option(
        "--min-area",
        default=0,
        show_default=True,
        type=click.IntRange(0),
        help="Defect regions (connected pixels at or above the pixel threshold) smaller than this many pixels "
        "of the original image are left out.",
    ),
    click.option(
        "--decision",
        type=click.Choice(DECISION_RULES),
        default="score",
        show_default=True,
        help="score: defective when the image score reaches the threshold; regions: defective when any "
        "defect region of at least --min-area pixels remains.",
    ),
)


@cli.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("method", type=click.Choice(sorted(METHODS)))
@click.option(
    "--dataset",
    "-d",
    "datasets",
    multiple=True,
    default=("hazelnut_reduced",),
    show_default=True,
    help="Dataset name under the data root (mtd, an MVTec AD class, a custom folder), a path to a "
    "folder in MVTec AD layout, or 'all' for the 15 MVTec AD classes. Repeatable.",
)
@click.option(
    "--config",
    "-c",
    "config",
    default=None,
    help="YAML config file, or the name of a shipped config (e.g. patchcore_paper).",
)
@click.option("--backbone", default=None, help="timm backbone name (overrides the config).")
@click.option("--weights", default=None, type=click.Path(dir_okay=False), help="Explicit backbone weight file.")
@click.option(
    "--data-root",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder holding the datasets [default: $INDAD_DATA_DIR or ./datasets].",
)
@click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option(
    "--results-dir",
    default="results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the JSON, markdown and CSV results go.",
)
@click.option("--seed", default=None, type=int, help="Random seed (overrides the config).")
@shape_options
@click.option("--no-download", is_flag=True, help="Never download a missing dataset.")
@click.option("--verbose", "-v", is_flag=True, help="More log messages.")
@click.option("--quiet", "-q", is_flag=True, help="Warnings only, no progress bars.")
def run_command(
    method: str,
    datasets: tuple[str, ...],
    config: str | None,
    backbone: str | None,
    weights: str | None,
    data_root: str | None,
    device: str | None,
    results_dir: str,
    seed: int | None,
    image_size: int | list[int] | None,
    resize: str | None,
    tile: int | list[int] | None,
    overlap: int | None,
    roi: str | None,
    no_download: bool,
    verbose: bool,
    quiet: bool,
) -> None:
    """Fit METHOD on each dataset's good training images, evaluate it on the test images, write the results."""
    from ..experiment import run_experiment
    from ..results import markdown_table, per_defect_table

    setup_logging(verbose, quiet)
    try:
        params = resolve_params(
            method,
            config,
            {
                "backbone_name": backbone,
                "weights": weights,
                "device": device,
                "seed": seed,
                "progress": False if quiet else None,
                **shape_overrides(image_size, resize, tile, overlap, roi),
            },
        )
        report, paths = run_experiment(method, list(datasets), params, data_root, results_dir, download=not no_download)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"\n{method} · backbone {report['backbone']['name']} · device {report['device']}\n")
    click.echo(markdown_table(report))
    click.echo(per_defect_table(report))
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


MODEL_ARG = click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))


engine_options = option_group(
    "The options choosing where the work runs: this process, or a Ray cluster.",
    click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Run here, or on Ray workers (pip install 'indad[ray]').",
    ),
    click.option(
        "--address",
        default=None,
        help="Ray cluster address (auto, HOST:6379, ray://HOST:10001) [default: $RAY_ADDRESS, "
        "else a Ray started here].",
    ),
    click.option(
        "--ray-workers",
        type=click.IntRange(1),
        default=None,
        help="Ray workers [default: as many as the cluster's CPUs (GPUs) hold].",
    ),
    click.option("--cpus-per-worker", type=click.FloatRange(0, min_open=True), default=1, show_default=True),
    click.option(
        "--gpus-per-worker",
        type=click.FloatRange(0),
        default=0,
        show_default=True,
        help="GPUs per Ray worker (> 0: workers run on CUDA).",
    ),
    click.option(
        "--threads",
        type=click.IntRange(1),
        default=None,
        help="Torch threads of this process (local) or of each Ray worker [default: torch's, or "
        "--cpus-per-worker]. Equal thread counts give bit-identical scores.",
    ),
)


def make_engine(
    engine: str,
    address: str | None,
    ray_workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float,
    threads: int | None,
    progress: bool,
):
    """The :class:`~indad.distributed.RayEngine` for ``--engine ray`` (None for local, with ``--threads`` applied)."""
    if engine == "local":
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return None
    try:
        from ..distributed.ray_engine import RayEngine
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    return RayEngine(address, ray_workers, cpus_per_worker, gpus_per_worker, threads, progress)


@cli.command("fit")
@click.argument("method", type=click.Choice(sorted(METHODS)))
@click.argument("data", type=click.Path(exists=True))
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False), help="Model file to write (e.g. model.indad)."
)
@click.option("--config", "-c", default=None, help="YAML config file or shipped config name.")
@click.option("--backbone", default=None, help="timm backbone name (overrides the config).")
@click.option("--weights", default=None, type=click.Path(dir_okay=False), help="Explicit backbone weight file.")
@click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option(
    "--holdout",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of the good images held out to calibrate the thresholds (0: none).",
)
@click.option(
    "--quantile",
    default=0.99,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Quantile of the held-out good scores used as threshold.",
)
@shape_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@engine_options
def fit_command(
    method: str,
    data: str,
    out: str,
    config: str | None,
    backbone: str | None,
    weights: str | None,
    device: str | None,
    holdout: float,
    quantile: float,
    image_size: int | list[int] | None,
    resize: str | None,
    tile: int | list[int] | None,
    overlap: int | None,
    roi: str | None,
    quiet: bool,
    **engine: Any,
) -> None:
    """Fit METHOD on DATA (a folder in MVTec AD layout, or a folder of good images) and save it to --out.

    With --engine ray, the training images are cut into shards fitted by Ray workers and merged here.
    """
    runner = make_engine(**engine, progress=not quiet)
    for warning in quick_warnings(data):  # the quick dataset checks (indad check runs them all)
        click.echo(warning, err=True)
    try:
        overrides = {"backbone_name": backbone, "weights": weights, "device": device, "progress": not quiet}
        params = resolve_params(method, config, overrides | shape_overrides(image_size, resize, tile, overlap, roi))
        model = build_model(method, params, config or "options").fit(
            data, holdout=holdout, quantile=quantile, engine=runner
        )
        model.save(out)
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    t = model.thresholds
    click.echo(f"{method} fitted in {model.timings['fit_s']:.1f} s -> {out}")
    if t is not None:
        click.echo(f"thresholds from {t.n_images} held-out good images: image {t.image:.6g}, pixel {t.pixel:.6g}")


@cli.command("calibrate")
@MODEL_ARG
@click.option(
    "--good",
    "good",
    type=click.Path(exists=True),
    default=None,
    help="Folder of good images not used in fit: thresholds at a quantile of their scores.",
)
@click.option(
    "--validation",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Labelled folder in MVTec AD layout: F1-optimal thresholds.",
)
@click.option("--quantile", default=0.99, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def calibrate_command(
    model_path: str, good: str | None, validation: str | None, quantile: float, device: str, quiet: bool
) -> None:
    """Set MODEL's thresholds from good images (--good) or a labelled validation set (--validation)."""
    from ..methods import load_model

    if (good is None) == (validation is None):
        raise click.UsageError("give exactly one of --good or --validation")
    try:
        model = load_model(model_path, device=device, progress=not quiet)
        t = model.calibrate(good, quantile) if good else model.calibrate_f1(validation)
        model.save(model_path)
    except USER_ERRORS as exc:  # e.g. a validation set without defective images
        raise _fail(exc) from exc
    click.echo(f"{model_path}: {t.rule} thresholds from {t.n_images} images: image {t.image:.6g}, pixel {t.pixel:.6g}")


@cli.command("predict")
@MODEL_ARG
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default=None,
    help="torch (a model file) or onnx (an exported .onnx) [default: by the file's suffix].",
)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option(
    "--workers", default=0, show_default=True, type=click.IntRange(0), help="Image reading processes (local engine)."
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda (local engine; Ray workers: --gpus-per-worker).",
)
@decision_options
@click.option("--record", "record_target", default=None, help="Also write each result to this prediction record "
              "(an SQLite file or a database URL; see indad feedback / retrain).")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@engine_options
def predict_command(
    model_path: str,
    inputs: tuple[str, ...],
    out: str,
    overwrite: bool,
    runtime: str | None,
    batch_size: int,
    workers: int,
    device: str,
    min_area: int,
    decision: str,
    record_target: str | None,
    quiet: bool,
    **engine: Any,
) -> None:
    """Score images and folders (recursively) with MODEL: CSV, JSONL with defect regions, heatmaps, overlays and
    masks in --out.

    With --engine ray, Ray workers (each loading MODEL once) score the images; MODEL, the images and --out
    must be on storage every node sees.
    """
    from ..inference import open_scorer, predict_folder

    runtime = runtime or ("onnx" if model_path.endswith(".onnx") else "torch")
    runner = make_engine(**engine, progress=not quiet)
    try:
        rule = Decision(decision, min_area)
        if runner is None:
            scorer = open_scorer(model_path, runtime, device)
            result = predict_folder(scorer, inputs, out, overwrite, batch_size, workers, not quiet, rule)
        else:
            result = runner.predict_folder(model_path, inputs, out, overwrite, batch_size, runtime, rule)
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    if record_target:
        from ..lifecycle.sinks import record_predictions

        click.echo(record_predictions(record_target, result.rows, model_path), err=True)
    defective = sum(1 for r in result.rows if r["decision"] == "defective")
    click.echo(f"{len(result.rows)} images, {defective} defective, {result.failed} unreadable -> {result.out}")
    if result.thresholds is None:
        click.echo("the model has no thresholds: no decisions or masks (see `indad calibrate`)", err=True)
    if result.failed:
        sys.exit(1)


@cli.command("export")
@MODEL_ARG
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True)
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), default=None, help="Output file [default: MODEL with .onnx or .pt]."
)
@click.option("--device", default="cpu", show_default=True)
def export_command(model_path: str, fmt: str, out: str | None, device: str) -> None:
    """Export MODEL's whole pipeline (image tensor -> score, map) as ONNX or TorchScript."""
    from pathlib import Path

    from ..export.graph import SUFFIXES, export_model
    from ..methods import load_model

    target = Path(out) if out else Path(model_path).with_suffix(SUFFIXES[fmt])
    try:
        export_model(load_model(model_path, device=device), target, fmt)
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    click.echo(f"{fmt} -> {target}")


@cli.command("update")
@MODEL_ARG
@click.argument("data", type=click.Path(exists=True))
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def update_command(model_path: str, data: str, device: str, quiet: bool) -> None:
    """Add the good images in DATA to MODEL without refitting (thresholds are kept)."""
    from ..methods import load_model

    try:
        model = load_model(model_path, device=device, progress=not quiet)
        model.add_normal(data)
        model.save(model_path)
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    click.echo(f"{model_path}: added the good images of {data}")


@cli.command("app")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on.")
@click.option("--address", default=None, help="Address to listen on [default: Streamlit's, all interfaces].")
@click.option(
    "--data-root",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="Folder holding the datasets [default: $INDAD_DATA_DIR or ./datasets].",
)
@click.option("--headless", is_flag=True, help="Do not open a browser.")
def app_command(port: int, address: str | None, data_root: str | None, headless: bool) -> None:
    """Start the web app: train, inspect and use a model in the browser."""
    try:
        import streamlit  # noqa: F401
    except ImportError as exc:
        raise click.ClickException("the web app needs Streamlit: pip install 'indad[app]'") from exc
    from ..app import serve

    serve(port, headless, address, data_root)


@cli.command("serve")
@MODEL_ARG
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default=None,
    help="torch (a model file) or onnx (an exported .onnx) [default: by the file's suffix].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Torch threads [default: torch's].")
@click.option("--max-batch", default=16, show_default=True, type=click.IntRange(1), help="Most images per batch.")
@click.option(
    "--max-wait-ms",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Longest wait for more images before a batch is scored.",
)
@click.option(
    "--max-body-mb",
    default=64.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Largest request body (MiB).",
)
@click.option(
    "--max-pixels",
    default=50_000_000,
    show_default=True,
    type=click.IntRange(1),
    help="Largest image accepted (pixels; checked before decoding).",
)
@click.option("--max-images", default=64, show_default=True, type=click.IntRange(1), help="Most images per request.")
@click.option(
    "--max-queue",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    help="Most images waiting to be scored; requests beyond get 503 (busy).",
)
@decision_options
@click.option(
    "--token",
    envvar="INDAD_SERVE_TOKEN",
    default=None,
    help="Bearer token required on every route but /healthz [default: $INDAD_SERVE_TOKEN; none: open].",
)
@click.option("--record", "record_target", default=None, help="Prediction record (SQLite file or database URL): "
              "results written there, POST /v1/feedback, drift gauges in /metrics.")  # fmt: skip
@click.option("--images", default=None, type=click.Path(file_okay=False), help="Keep recorded images here.")
def serve_command(
    model_path: str,
    host: str,
    port: int,
    runtime: str | None,
    device: str,
    threads: int | None,
    max_batch: int,
    max_wait_ms: float,
    max_body_mb: float,
    max_pixels: int,
    max_images: int,
    max_queue: int,
    min_area: int,
    decision: str,
    token: str | None,
    record_target: str | None,
    images: str | None,
) -> None:
    """Serve MODEL over HTTP: POST /v1/predict, GET /v1/model, /healthz, /metrics; OpenAPI docs at /docs."""
    try:
        import uvicorn

        from ..service import ServiceOptions, create_app
    except ImportError as exc:
        raise click.ClickException(f"indad serve needs its extra: pip install 'indad[serve]' ({exc})") from exc
    from ..inference import open_scorer

    make_engine("local", None, None, 1, 0, threads, False)  # --threads
    runtime = runtime or ("onnx" if model_path.endswith(".onnx") else "torch")
    try:
        scorer = open_scorer(model_path, runtime, device)
        rule = Decision(decision, min_area)
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    options = ServiceOptions(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_body_bytes=int(max_body_mb * 2**20),
        max_pixels=max_pixels,
        max_images=max_images,
        decision=rule,
        token=token or None,
        decode_threads=threads or 2,
        max_queue=max_queue,
    )
    app = create_app(scorer, options)
    if record_target:
        from ..service.feedback import attach_lifecycle

        attach_lifecycle(app, model_path, record_target, images)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


@cli.command("watch")
@MODEL_ARG
@click.argument("in_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option("--move", is_flag=True, help="Move each scored image to OUT/ok, OUT/ng or OUT/error.")
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.01), help="Seconds between scans.")
@click.option(
    "--settle",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a file must stay unchanged (size, time) before it counts as written.",
)
@click.option("--once", is_flag=True, help="Score what is there, then exit (no watching).")
@click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default=None,
    help="torch (a model file) or onnx (an exported .onnx) [default: by the file's suffix].",
)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Torch threads [default: torch's].")
@decision_options
@click.option("--record", "record_target", default=None, help="Also write each result to this prediction record.")
@click.option("--images", default=None, type=click.Path(file_okay=False), help="Keep recorded images here.")
def watch_command(
    model_path: str,
    in_dir: str,
    out: str,
    move: bool,
    poll: float,
    settle: float,
    once: bool,
    runtime: str | None,
    batch_size: int,
    device: str,
    threads: int | None,
    min_area: int,
    decision: str,
    record_target: str | None,
    images: str | None,
) -> None:
    """Watch IN_DIR: score each new image once (when completely written), append its result to
    OUT/predictions.csv and OUT/predictions.jsonl, write its pictures, and with --move sort it into OUT/ok|ng.

    A restart neither scores a file twice nor skips one. Stop with Ctrl-C.
    """
    from ..inference import open_scorer
    from ..inference.watch import HotFolder

    make_engine("local", None, None, 1, 0, threads, False)  # --threads
    runtime = runtime or ("onnx" if model_path.endswith(".onnx") else "torch")
    try:
        folder = HotFolder(
            open_scorer(model_path, runtime, device),
            Path(in_dir),
            Path(out),
            move,
            settle,
            batch_size,
            Decision(decision, min_area),
            on_rows=None if record_target is None else record_sink(record_target, model_path, images),
        )
        if not once:
            click.echo(f"watching {in_dir} -> {out} (Ctrl-C stops)")
        count = folder.run(poll, once=once)
    except KeyboardInterrupt:
        return
    except USER_ERRORS as exc:
        raise _fail(exc) from exc
    click.echo(f"{count} images scored -> {out}")


cli.add_command(feedback_command)
cli.add_command(review_command)
cli.add_command(retrain_command)
cli.add_command(models_command)
cli.add_command(rollback_command)
cli.add_command(check_command)


def main() -> None:
    """Entry point of the ``indad`` console script."""
    cli()


if __name__ == "__main__":
    main()
