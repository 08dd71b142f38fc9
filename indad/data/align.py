"""Registration of images to a reference good image, for fixtured parts (``align="reference"``).

The reference is a small grey picture of the first training image (at most :data:`REFERENCE_SIDE` pixels a
side), kept in the model file. Each image is brought to it by OpenCV: phase correlation finds the translation,
and for a euclidean motion ECC then refines translation and rotation from there. Motions are expressed in
normalised coordinates (``affine_grid``'s, edges at -1 and 1), so one found on the small pictures applies to the
working image, and its inverse brings anomaly maps back to the image's own frame.

An image that cannot be aligned (ECC does not converge, the correlation peak is weak, or the motion found is
implausibly large) is logged as a warning and used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .variation import theta_of, warp

log = logging.getLogger(__name__)

ALIGN_MODES = ("none", "reference")
"""``none``: images as they are; ``reference``: each image registered to the first training image."""
MOTIONS = ("translation", "euclidean")
"""What registration may change: a shift (phase correlation), or a shift and a rotation (then ECC)."""
REFERENCE_SIDE = 128
"""The longest side of the reference picture the model keeps, in pixels."""
MIN_PEAK = 0.03
"""Phase correlation peaks below this (0..1) are taken as no match."""
MIN_ECC = 0.6
"""ECC correlation coefficients below this are taken as no match."""
MAX_SHIFT = 0.25
"""Shifts beyond this share of the picture's size are taken as no match."""
MAX_ANGLE = 20.0
"""Rotations beyond this many degrees are taken as no match."""


def grey_picture(image: torch.Tensor, mean: Sequence[float], std: Sequence[float], side: int) -> torch.Tensor:
    """A normalised image ``(3, H, W)`` as a grey ``float32`` picture of 0..1 values, its longest side ``side``."""
    m = torch.tensor(list(mean), dtype=torch.float32, device=image.device).view(3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32, device=image.device).view(3, 1, 1)
    grey = (image.float() * s + m).clamp(0, 1).mean(dim=0)
    h, w = grey.shape
    scale = side / max(h, w)
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    return F.interpolate(grey[None, None], size=size, mode="area")[0, 0].cpu()


@dataclass(frozen=True)
class Aligner:
    """Registration to a reference picture (see the module's docstring).

    Attributes
    ----------
    reference:
        The grey reference picture ``(h, w)``, 0..1 values.
    motion:
        One of :data:`MOTIONS`.
    """

    reference: torch.Tensor
    motion: str = "euclidean"

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise InputError(f"align_motion must be one of {', '.join(MOTIONS)}, got {self.motion!r}")
        if self.reference.ndim != 2 or min(self.reference.shape) < 8:
            raise InputError(f"an alignment reference must be a grey picture (h, w), got {tuple(self.reference.shape)}")

    def estimate(self, picture: torch.Tensor, name: str = "image") -> torch.Tensor | None:
        """The normalised ``2x3`` theta bringing ``picture`` (grey, the reference's size) onto the reference.

        None when it cannot be aligned (a warning naming ``name`` is logged).
        """
        import cv2

        ref = self.reference.numpy().astype(np.float32)
        img = picture.numpy().astype(np.float32)
        h, w = ref.shape
        window = cv2.createHanningWindow((w, h), cv2.CV_32F)
        (dx, dy), peak = cv2.phaseCorrelate(ref, img, window)
        if peak < MIN_PEAK:
            _warn(name, f"phase correlation peak {peak:.3f} < {MIN_PEAK}")
            return None
        warp_matrix = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
        if self.motion == "euclidean":
            mask = np.ones(ref.shape, dtype=np.uint8)
            criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
            try:
                cc, found = cv2.findTransformECC(ref, img, warp_matrix, cv2.MOTION_EUCLIDEAN, criteria, mask, 5)
            except cv2.error as exc:
                _warn(name, f"ECC did not converge ({str(exc).strip().splitlines()[-1]})")
                return None
            if not cc >= MIN_ECC:
                _warn(name, f"ECC correlation {cc:.3f} < {MIN_ECC}")
                return None
            warp_matrix = np.asarray(found, dtype=np.float32)
        angle = float(np.degrees(np.arctan2(warp_matrix[1, 0], warp_matrix[0, 0])))
        tx, ty = float(warp_matrix[0, 2]), float(warp_matrix[1, 2])
        if abs(tx) > MAX_SHIFT * w or abs(ty) > MAX_SHIFT * h or abs(angle) > MAX_ANGLE:
            _warn(name, f"implausible motion (shift {tx:.1f}, {ty:.1f} px, rotation {angle:.1f} deg)")
            return None
        return theta_of(warp_matrix.astype(np.float64), (h, w))

    def align(
        self, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], names: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images ``(B, 3, H, W)`` brought onto the reference, and each one's theta ``(B, 2, 3)``.

        Borders are filled from the image (mirrored); an image that cannot be aligned stays as it is (identity).
        """
        side = max(self.reference.shape)
        thetas = []
        for i, image in enumerate(images):
            picture = grey_picture(image, mean, std, side)
            if tuple(picture.shape) != tuple(self.reference.shape):
                picture = F.interpolate(picture[None, None], size=tuple(self.reference.shape), mode="area")[0, 0]
            theta = self.estimate(picture, names[i] if names is not None else f"image {i}")
            thetas.append(IDENTITY if theta is None else theta)
        stacked = torch.stack(thetas).to(images.device)
        return warp(images, stacked), stacked


IDENTITY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _warn(name: str, why: str) -> None:
    log.warning("%s cannot be aligned to the reference (%s): scored as it is", name, why)


def inverse(thetas: torch.Tensor) -> torch.Tensor:
    """The inverse motions of normalised thetas ``(B, 2, 3)``."""
    full = torch.cat([thetas.double(), thetas.new_tensor([0.0, 0.0, 1.0]).double().expand(len(thetas), 1, 3)], dim=1)
    return torch.linalg.inv(full)[:, :2].to(thetas.dtype)


def unalign_maps(maps: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """Anomaly maps ``(B, H, W)`` of aligned images brought back to each image's own frame."""
    return warp(maps[:, None].float(), inverse(thetas), padding="border")[:, 0].to(maps.dtype)
