"""Commands that make or change a model: ``run``, ``fit``, ``calibrate``, ``update``."""

from __future__ import annotations

from typing import Any

import click

from ..config import build_model, resolve_params
from ..methods import METHODS
from .options import (
    MODEL_ARG,
    USER_ERRORS,
    backbone_option,
    config_option,
    data_root_option,
    device_option,
    engine_options,
    make_engine,
    quiet_option,
    robust_options,
    robust_overrides,
    setup_logging,
    shape_options,
    shape_overrides,
    user_error,
    verbose_option,
    weights_option,
)

method_arg = click.argument("method", type=click.Choice(sorted(METHODS)))


@click.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@method_arg
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
@config_option
@backbone_option
@weights_option
@data_root_option
@device_option(None)
@click.option(
    "--results-dir",
    default="results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the JSON, markdown and CSV results go.",
)
@click.option("--seed", default=None, type=int, help="Random seed (overrides the config).")
@shape_options
@robust_options
@click.option("--no-download", is_flag=True, help="Never download a missing dataset.")
@verbose_option
@quiet_option("Warnings only, no progress bars.")
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
    variation: dict[str, float] | None,
    variation_copies: int | None,
    photometric: str | None,
    align: str | None,
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
                **robust_overrides(variation, variation_copies, photometric, align),
            },
        )
        report, paths = run_experiment(method, list(datasets), params, data_root, results_dir, download=not no_download)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    click.echo(f"\n{method} · backbone {report['backbone']['name']} · device {report['device']}\n")
    click.echo(markdown_table(report))
    click.echo(per_defect_table(report))
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")


@click.command("fit")
@method_arg
@click.argument("data", type=click.Path(exists=True))
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False), help="Model file to write (e.g. model.indad)."
)
@config_option
@backbone_option
@weights_option
@device_option(None)
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
@robust_options
@quiet_option()
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
    variation: dict[str, float] | None,
    variation_copies: int | None,
    photometric: str | None,
    align: str | None,
    quiet: bool,
    **engine: Any,
) -> None:
    """Fit METHOD on DATA (a folder in MVTec AD layout, or a folder of good images) and save it to --out.

    With --engine ray, the training images are cut into shards fitted by Ray workers and merged here.
    """
    from ..lifecycle.checks import quick_warnings

    runner = make_engine(**engine, progress=not quiet)
    for warning in quick_warnings(data):  # the quick dataset checks (indad check runs them all)
        click.echo(warning, err=True)
    try:
        overrides = {"backbone_name": backbone, "weights": weights, "device": device, "progress": not quiet}
        overrides |= shape_overrides(image_size, resize, tile, overlap, roi)
        params = resolve_params(
            method, config, overrides | robust_overrides(variation, variation_copies, photometric, align)
        )
        model = build_model(method, params, config or "options").fit(
            data, holdout=holdout, quantile=quantile, engine=runner
        )
        model.save(out)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    t = model.thresholds
    click.echo(f"{method} fitted in {model.timings['fit_s']:.1f} s -> {out}")
    if t is not None:
        click.echo(f"thresholds from {t.n_images} held-out good images: image {t.image:.6g}, pixel {t.pixel:.6g}")


@click.command("calibrate")
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
@device_option()
@quiet_option()
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
        raise user_error(exc) from exc
    click.echo(f"{model_path}: {t.rule} thresholds from {t.n_images} images: image {t.image:.6g}, pixel {t.pixel:.6g}")


@click.command("update")
@MODEL_ARG
@click.argument("data", type=click.Path(exists=True))
@device_option()
@quiet_option()
def update_command(model_path: str, data: str, device: str, quiet: bool) -> None:
    """Add the good images in DATA to MODEL without refitting (thresholds are kept)."""
    from ..methods import load_model

    try:
        model = load_model(model_path, device=device, progress=not quiet)
        model.add_normal(data)
        model.save(model_path)
    except USER_ERRORS as exc:
        raise user_error(exc) from exc
    click.echo(f"{model_path}: added the good images of {data}")
