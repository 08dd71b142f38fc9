"""The hyperparameters every method has for what a line varies: expected variation, photometry, alignment.

:class:`RobustInputs` holds them; :class:`~indad.methods.base.AnomalyModel` derives from it and calls its hooks
where fit batches are made (:meth:`RobustInputs.fit_variants`), where images are scored
(:meth:`RobustInputs.to_reference`, :meth:`RobustInputs.from_reference`) and where the scoring module is built
(:meth:`RobustInputs.standardized`). The changes themselves live in :mod:`indad.data.variation`,
:mod:`indad.data.photometric` and :mod:`indad.data.align`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.align import ALIGN_MODES, MOTIONS, REFERENCE_SIDE, Aligner, grey_picture, unalign_maps
from ..data.photometric import PHOTOMETRIC_MODES, Standardized, standardize
from ..data.transforms import Preprocess
from ..data.variation import Variation, image_seed
from ..errors import InputError, ResourceError
from .params import Rule
from .protocol import Batch

ALIGN_TENSOR = "align_reference"
"""The model file's tensor of the alignment reference (grey, float32, at most 128 px a side)."""


@dataclass(eq=False, repr=False, kw_only=True)
class RobustInputs:
    """What a line varies, and how the model copes with it (every method has these).

    Parameters
    ----------
    variation:
        The expected variation of the line's images, e.g. ``{"brightness": 0.15, "rotate": 3, "jpeg": 70}``
        (keys and ranges: :mod:`indad.data.variation`; None or empty: off). Fit (and ``add_normal``) then
        also sees ``variation_copies`` randomly changed copies of each good image (seeded by ``seed`` and the
        image's name): the memory bank or the statistics hold those changes as normal.
    variation_copies:
        Changed copies of each good image with ``variation`` (each one draws every change anew).
    photometric:
        ``"none"``, or ``"standardize"``: each image's per-channel mean and spread set to fixed values before
        the backbone, at fit and at scoring (exports too); see :mod:`indad.data.photometric`.
    align:
        ``"none"``, or ``"reference"``: each image (at fit and at scoring) is registered to the first training
        image before the backbone sees it; maps are brought back to the image's frame; an image that cannot be
        aligned is logged and used as it is. A region of interest is then in the reference's frame. Python
        scoring only: exports are refused. See :mod:`indad.data.align`.
    align_motion:
        ``"translation"`` (phase correlation) or ``"euclidean"`` (then ECC: shift and rotation).
    """

    rules: ClassVar[dict[str, Rule]] = {
        "variation_copies": Rule(int, low=1),
        "photometric": Rule(choices=PHOTOMETRIC_MODES),
        "align": Rule(choices=ALIGN_MODES),
        "align_motion": Rule(choices=MOTIONS),
    }

    variation: Mapping[str, Any] | None = None
    variation_copies: int = 1
    photometric: str = "none"
    align: str = "none"
    align_motion: str = "euclidean"

    def check_robust_inputs(self) -> None:
        """Check :attr:`variation` (the other settings are in :attr:`rules`); set :attr:`variation_spec`."""
        self.variation_spec: Variation | None = Variation.parse(self.variation)
        self.aligner: Aligner | None = None
        if self.align != "none" and importlib.util.find_spec("cv2") is None:
            raise ResourceError(f'align="{self.align}" needs OpenCV: pip install "indad[align]"')

    # ----------------------------------------------------------------- alignment reference
    def set_align_reference(self, reference: torch.Tensor | None) -> None:
        """Set the alignment reference (a grey picture ``(h, w)``; None: none yet)."""
        self.aligner = None if reference is None else Aligner(reference.float().cpu(), self.align_motion)

    def take_align_reference(self, image: torch.Tensor, preprocess: Preprocess) -> None:
        """With ``align="reference"``, make ``image`` (normalised ``(3, H, W)`` by ``preprocess``) the reference."""
        if self.align != "none":
            side = min(REFERENCE_SIDE, max(image.shape[-2:]))
            self.set_align_reference(grey_picture(image, preprocess.mean, preprocess.std, side))

    def robust_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors a model file keeps for these settings: the alignment reference, when there is one."""
        return {} if self.aligner is None else {ALIGN_TENSOR: self.aligner.reference}

    # ----------------------------------------------------------------- fit
    def fit_variants(self, batch: Batch, preprocess: Preprocess, seed: int) -> Iterator[Batch]:
        """A fit batch (normalised by ``preprocess``) aligned and standardised, then its changed copies.

        Each copy is a batch with the same keys, its paths marked ``#variation-N``.
        """
        images = batch["image"]
        paths = [str(p) for p in batch.get("path", [f"<image {i}>" for i in range(len(images))])]
        images = self.to_reference(images, preprocess, paths)[0]
        yield {**batch, "image": self._standardized_images(images, preprocess)}
        if self.variation_spec is None:
            return
        mean = torch.tensor(preprocess.mean, device=images.device).view(3, 1, 1)
        std = torch.tensor(preprocess.std, device=images.device).view(3, 1, 1)
        for copy in range(1, int(self.variation_copies) + 1):
            changed = torch.stack(
                [
                    (self.variation_spec.apply(image * std + mean, image_seed(seed, path, copy)) - mean) / std
                    for image, path in zip(images, paths, strict=True)
                ]
            )
            marked = [f"{p}#variation-{copy}" for p in paths]
            yield {**batch, "image": self._standardized_images(changed, preprocess), "path": marked}

    def _standardized_images(self, images: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
        if self.photometric == "none":
            return images
        return standardize(images, preprocess.mean, preprocess.std)

    # ----------------------------------------------------------------- scoring
    def to_reference(
        self, images: torch.Tensor, preprocess: Preprocess, names: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised images brought onto the alignment reference, and their motions (None: not aligned)."""
        if self.aligner is None:
            return images, None
        return self.aligner.align(images, preprocess.mean, preprocess.std, names)

    @staticmethod
    def from_reference(maps: torch.Tensor, thetas: torch.Tensor | None) -> torch.Tensor:
        """Anomaly maps of :meth:`to_reference` images brought back to each image's own frame."""
        return maps if thetas is None else unalign_maps(maps, thetas.to(maps.device))

    def standardized(
        self, module: nn.Module, preprocess: Preprocess, exportable: bool, device: torch.device | str
    ) -> nn.Module:
        """``module`` with the photometric standardisation in front when asked; exports refuse alignment."""
        if exportable and self.align != "none":
            raise InputError(
                f'align="{self.align}" registers images with OpenCV before scoring: it cannot be exported '
                "(score with the model file, or fit without align)"
            )
        if self.photometric == "none":
            return module
        return Standardized(module, preprocess.mean, preprocess.std).to(device)
