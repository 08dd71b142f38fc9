"""indad: industrial visual anomaly detection with frozen ImageNet CNN features.

>>> from indad.methods import PatchCore
>>> model = PatchCore().fit("datasets/mtd", holdout=0.1)   # doctest: +SKIP
>>> model.evaluate("datasets/mtd")["image_auroc"]          # doctest: +SKIP
>>> model.save("mtd.indad"); model = indad.load("mtd.indad")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:
    from .methods import AnomalyModel

__all__ = ["__version__", "load"]


def load(
    path: str | os.PathLike, device: str = "auto", weights: str | os.PathLike | None = None, progress: bool = False
) -> AnomalyModel:
    """A fitted model saved with ``model.save(path)``; see :func:`indad.methods.load_model`.

    Importing :mod:`indad` stays light: the methods (and torch) load on the first call.
    """
    from .methods import load_model

    return load_model(path, device=device, weights=weights, progress=progress)
