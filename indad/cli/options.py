"""What the commands share: option declarations (each written once), logging, and turning errors into messages."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import IndadError
from ..thresholds import DECISION_RULES

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

# Errors shown as one clear message, without a traceback: indad's own, and files missing or in the way.
USER_ERRORS = (IndadError, FileNotFoundError, FileExistsError)


def user_error(exc: Exception) -> click.ClickException:
    """``exc`` (one of :data:`USER_ERRORS`) as a one-line message for the user."""
    return click.ClickException(str(exc))


def setup_logging(verbose: bool, quiet: bool) -> None:
    """Log indad's messages to stderr: INFO by default, DEBUG with --verbose, warnings only with --quiet."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    logger = logging.getLogger("indad")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def option_group(doc: str, *options: Callable[[Any], Any]) -> Callable[[F], F]:
    """A decorator adding ``options`` to a command, in this order in its ``--help``; ``doc`` says what they are."""

    def add(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    add.__doc__ = doc
    return add


def device_option(default: str | None = "auto") -> Callable[[F], F]:
    """``--device``: where the model runs (None: the config's choice)."""
    shown = "[default: the config's, else auto]" if default is None else f"[default: {default}]"
    return click.option("--device", default=default, help=f"auto (CUDA when present), cpu, cuda, cuda:N {shown}.")


def quiet_option(help: str = "No progress bars.") -> Callable[[F], F]:
    """``--quiet`` (``-q``): what it silences."""
    return click.option("--quiet", "-q", is_flag=True, help=help)


verbose_option = click.option("--verbose", "-v", is_flag=True, help="More log messages.")
config_option = click.option(
    "--config", "-c", default=None, help="YAML config file, or the name of a shipped config (e.g. patchcore_paper)."
)
backbone_option = click.option("--backbone", default=None, help="timm backbone name (overrides the config).")
weights_option = click.option(
    "--weights", default=None, type=click.Path(dir_okay=False), help="Explicit backbone weight file."
)
data_root_option = click.option(
    "--data-root",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder holding the datasets [default: $INDAD_DATA_DIR or ./datasets].",
)
runtime_option = click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default=None,
    help="torch (a model file) or onnx (an exported .onnx) [default: by the file's suffix].",
)
batch_size_option = click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
threads_option = click.option(
    "--threads", type=click.IntRange(1), default=None, help="Torch threads [default: torch's]."
)
record_option = click.option(
    "--record",
    "record_target",
    default=None,
    help="Also write each result to this prediction record (an SQLite file or a database URL; see indad feedback, "
    "indad retrain).",
)
images_option = click.option(
    "--images", default=None, type=click.Path(file_okay=False), help="Keep the recorded images here (by hash)."
)
MODEL_ARG = click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))


def scorer_runtime(model_path: str, runtime: str | None) -> str:
    """``--runtime``, or by the model file's suffix: ``onnx`` for an ``.onnx`` export, else ``torch``."""
    return runtime or ("onnx" if model_path.endswith(".onnx") else "torch")


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
    image_size: int | list[int] | None,
    resize: str | None,
    tile: int | list[int] | None,
    overlap: int | None,
    roi: str | None,
) -> dict[str, Any]:
    """The parameters :func:`shape_options` set (None: the config's value)."""
    if overlap is not None and tile is None:
        raise click.UsageError("--overlap needs --tile")
    tiling = None if tile is None else {"size": tile, "overlap": overlap or 0}
    return {"image_size": image_size, "resize": resize, "tile": tiling, "roi": roi}


def parse_variation(text: str) -> dict[str, float]:
    """``brightness=0.15,rotate=3,jpeg=70`` as a ``variation`` mapping; :class:`click.BadParameter` when malformed.

    The keys and ranges are checked by the model (:class:`~indad.data.variation.Variation`).
    """
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        key, sep, value = item.partition("=")
        if not item or not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE[,KEY=VALUE...] (e.g. brightness=0.15,rotate=3), got {text!r}")
        try:
            number = float(value)
        except ValueError:
            raise click.BadParameter(f"{key.strip()} must be a number, got {value.strip()!r}") from None
        out[key.strip()] = int(number) if number.is_integer() else number
    return out


def _variation(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, float] | None:
    return None if value is None else parse_variation(value)


robust_options = option_group(
    "The options saying what a line varies and how the model copes: variation, photometry, alignment.",
    click.option(
        "--variation",
        callback=_variation,
        default=None,
        help="Expected variation the fit adds to the good images, e.g. brightness=0.15,rotate=3,jpeg=70 "
        "(keys: brightness, contrast, gamma, rotate, shift, scale, blur, noise, jpeg) (overrides the config).",
    ),
    click.option(
        "--variation-copies",
        type=click.IntRange(1),
        default=None,
        help="Changed copies of each good image with --variation [default: the config's, else 1].",
    ),
    click.option(
        "--photometric",
        type=click.Choice(["none", "standardize"]),
        default=None,
        help="standardize: each image's per-channel mean and spread set to fixed values, at fit and scoring.",
    ),
    click.option(
        "--align",
        type=click.Choice(["none", "reference"]),
        default=None,
        help="reference: register each image to the first training image before scoring (fixtured parts).",
    ),
)


def robust_overrides(
    variation: dict[str, float] | None, variation_copies: int | None, photometric: str | None, align: str | None
) -> dict[str, Any]:
    """The parameters :func:`robust_options` set (None: the config's value)."""
    return {
        "variation": variation,
        "variation_copies": variation_copies,
        "photometric": photometric,
        "align": align,
    }


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


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's thread count in this process (None: torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def make_engine(
    engine: str,
    address: str | None,
    ray_workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float,
    threads: int | None,
    progress: bool,
) -> Any:
    """The :class:`~indad.distributed.RayEngine` for ``--engine ray`` (None for local, with ``--threads`` applied)."""
    if engine == "local":
        set_threads(threads)
        return None
    try:
        from ..distributed.ray_engine import RayEngine
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    return RayEngine(address, ray_workers, cpus_per_worker, gpus_per_worker, threads, progress)
