"""The ``indad`` command line."""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from ..backbones import BackboneError, WeightsNotFoundError
from ..config import ConfigError, load_config
from ..data import DatasetLayoutError, DownloadError, ImageReadError
from ..methods import METHODS

# Errors a user can fix: shown as one clear message, without a traceback.
USER_ERRORS = (ConfigError, BackboneError, WeightsNotFoundError, DatasetLayoutError, DownloadError, ImageReadError,
               FileNotFoundError)


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


@cli.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("method", type=click.Choice(sorted(METHODS)))
@click.option("--dataset", "-d", "datasets", multiple=True, default=("hazelnut_reduced",), show_default=True,
              help="Dataset name under the data root (mtd, an MVTec AD class, a custom folder), a path to a "
                   "folder in MVTec AD layout, or 'all' for the 15 MVTec AD classes. Repeatable.")
@click.option("--config", "-c", "config", default=None,
              help="YAML config file, or the name of a shipped config (e.g. patchcore_paper).")
@click.option("--backbone", default=None, help="timm backbone name (overrides the config).")
@click.option("--weights", default=None, type=click.Path(dir_okay=False),
              help="Explicit backbone weight file.")
@click.option("--data-root", default=None, type=click.Path(file_okay=False),
              help="Folder holding the datasets [default: $INDAD_DATA_DIR or ./datasets].")
@click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Where the JSON, markdown and CSV results go.")
@click.option("--seed", default=None, type=int, help="Random seed (overrides the config).")
@click.option("--no-download", is_flag=True, help="Never download a missing dataset.")
@click.option("--verbose", "-v", is_flag=True, help="More log messages.")
@click.option("--quiet", "-q", is_flag=True, help="Warnings only, no progress bars.")
def run_command(method: str, datasets: tuple[str, ...], config: str | None, backbone: str | None,
                weights: str | None, data_root: str | None, device: str | None, results_dir: str,
                seed: int | None, no_download: bool, verbose: bool, quiet: bool) -> None:
    """Fit METHOD on each dataset's good training images, evaluate it on the test images, write the results."""
    from ..experiment import run_experiment
    from ..results import markdown_table, per_defect_table

    setup_logging(verbose, quiet)
    try:
        params = load_config(config, method)["params"] if config else {}
        overrides = {"backbone_name": backbone, "weights": weights, "device": device, "seed": seed}
        params.update({k: v for k, v in overrides.items() if v is not None})
        if quiet:
            params["progress"] = False
        report, paths = run_experiment(method, list(datasets), params, data_root, results_dir,
                                       download=not no_download)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"\n{method} · backbone {report['backbone']['name']} · device {report['device']}\n")
    click.echo(markdown_table(report))
    click.echo(per_defect_table(report))
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")


def main() -> None:
    """Entry point of the ``indad`` console script."""
    cli()


if __name__ == "__main__":
    main()
