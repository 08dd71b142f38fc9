"""indad: industrial visual anomaly detection with frozen ImageNet CNN features.

>>> from indad.models import PatchCore
>>> model = PatchCore().fit("datasets/mtd")          # doctest: +SKIP
>>> model.evaluate("datasets/mtd")["image_auroc"]    # doctest: +SKIP
"""

__version__ = "0.1.0"
