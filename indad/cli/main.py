"""The ``indad`` command line: the group, and its commands from the modules by what they do.

- :mod:`.train`: ``run``, ``fit``, ``calibrate``, ``update``;
- :mod:`.score`: ``predict``, ``export``;
- :mod:`.serve`: ``serve``, ``watch``, ``app``; :mod:`.line`: ``stream``;
- :mod:`.lifecycle`: ``check``, ``feedback``, ``review``, ``retrain``, ``models``, ``rollback``;
- :mod:`.options`: the options they share, each declared once (:mod:`.sinks`: the sink options).
"""

from __future__ import annotations

import click

from .. import __version__
from .lifecycle import (
    check_command,
    feedback_command,
    models_command,
    retrain_command,
    review_command,
    rollback_command,
)
from .line import stream_command
from .options import USER_ERRORS, setup_logging
from .score import export_command, predict_command
from .serve import app_command, serve_command, watch_command
from .train import calibrate_command, fit_command, run_command, update_command

__all__ = ["USER_ERRORS", "cli", "main", "run_command", "setup_logging"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="indad")
def cli() -> None:
    """indad: industrial visual anomaly detection (SPADE, PaDiM, PatchCore) on frozen ImageNet CNN features."""


for _command in (
    run_command,
    fit_command,
    calibrate_command,
    predict_command,
    export_command,
    update_command,
    app_command,
    serve_command,
    watch_command,
    stream_command,
    check_command,
    feedback_command,
    review_command,
    retrain_command,
    models_command,
    rollback_command,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``indad`` console script."""
    cli()


if __name__ == "__main__":
    main()
