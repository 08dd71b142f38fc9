"""indad: industrial visual anomaly detection with frozen ImageNet CNN features.

>>> from indad.models import PatchCore
>>> model = PatchCore().fit("datasets/mtd", holdout=0.1)   # doctest: +SKIP
>>> model.evaluate("datasets/mtd")["image_auroc"]          # doctest: +SKIP
>>> model.save("mtd.indad"); model = indad.load("mtd.indad")  # doctest: +SKIP
"""

__version__ = "0.1.0"


def load(path, device: str = "auto", weights=None, progress: bool = False):
    """A fitted model saved with ``model.save(path)``; see :func:`indad.methods.load_model`."""
    from .methods import load_model

    return load_model(path, device=device, weights=weights, progress=progress)
