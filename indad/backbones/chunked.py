"""The backbone over a whole working image, run chunk by chunk: one feature map an image, no overlapping tiles.

Tiles that overlap (``tile={"size": 256, "overlap": 32}``) send every pixel of
their overlap through the backbone twice or four times (1.31x the pixels at
256/32) and every tile's patches to the scoring (the same place scored in each
tile). The chunked backbone cuts the working image, padded at its bottom and
right to a multiple of the deepest stride, into chunks of the tile's size that
do not overlap (the last chunk of a row or column ends at the padded border and
starts on a stride multiple, overlapping the one before it), runs the backbone
on batches of chunks (a size that stays in the cache: one forward pass over the
whole 5 MP image was slower here than its 256 px chunks), and writes each
chunk's feature maps into one feature map of the whole padded image. Patches
at a chunk's border see the backbone's zero padding, as a tile's do; fit and
scoring cut the same chunks, so the memory bank matches what is scored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .extractor import Backbone


def chunk_starts(length: int, chunk: int, step: int) -> list[int]:
    """Starts of chunks of ``chunk`` pixels covering ``length`` (a multiple of ``step``) without gaps.

    Every ``chunk`` pixels, then one ending at ``length`` when the last falls short.
    """
    if chunk > length:
        raise InputError(f"a chunk of {chunk} pixels does not fit in the working size's {length}")
    if chunk % step or length % step:
        raise InputError(f"chunk {chunk} and length {length} must be multiples of the stride {step}")
    starts = list(range(0, length - chunk + 1, chunk))
    if starts[-1] + chunk < length:
        starts.append(length - chunk)
    return starts


def padded_length(length: int, step: int) -> int:
    """``length`` rounded up to a multiple of ``step``."""
    return -(-length // step) * step


class ChunkedBackbone(nn.Module):
    """A :class:`~indad.backbones.Backbone` over whole working images ``(B, 3, H, W)``, chunk by chunk.

    Called as the backbone is (``features = chunked(images, runtime)``), it
    returns one map per stride of the padded image ``(B, C, Hp / s, Wp / s)``,
    ``Hp`` and ``Wp`` the working size rounded up to the deepest stride.

    Parameters
    ----------
    backbone:
        The network.
    image_size:
        ``(H, W)`` of the working image.
    chunk:
        ``(height, width)`` of a chunk (the tile's size), multiples of the deepest stride.
    batch:
        Chunks per forward pass.
    """

    def __init__(self, backbone: Backbone, image_size: tuple[int, int], chunk: tuple[int, int], batch: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.step = max(backbone.strides)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.padded_size = (padded_length(image_size[0], self.step), padded_length(image_size[1], self.step))
        self.chunk = (int(chunk[0]), int(chunk[1]))
        self.batch = max(1, int(batch))
        rows = chunk_starts(self.padded_size[0], self.chunk[0], self.step)
        cols = chunk_starts(self.padded_size[1], self.chunk[1], self.step)
        self.origins = [(top, left) for top in rows for left in cols]

    @property
    def strides(self) -> tuple[int, ...]:
        """The backbone's strides."""
        return self.backbone.strides

    @property
    def channels(self) -> tuple[int, ...]:
        """The backbone's channels per stride."""
        return self.backbone.channels

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        """Images padded at the bottom and right to the padded size (zeros: the normalised mean)."""
        (h, w), (hp, wp) = self.image_size, self.padded_size
        if tuple(images.shape[-2:]) != (h, w):
            raise InputError(f"the chunked backbone takes images of {self.image_size}, got {tuple(images.shape[-2:])}")
        return images if (hp, wp) == (h, w) else F.pad(images, (0, wp - w, 0, hp - h))

    @torch.no_grad()
    def forward(self, images: torch.Tensor, runtime: str | None = None) -> list[torch.Tensor]:
        padded = self.pad(images)
        ch, cw = self.chunk
        chunks = torch.stack([padded[:, :, t : t + ch, c : c + cw] for t, c in self.origins], dim=1).flatten(0, 1)
        parts = [self.backbone(b, runtime) for b in chunks.split(self.batch)]
        per_stride = [torch.cat([p[i] for p in parts]) for i in range(len(self.strides))]
        return [self._assemble(f, s, images.shape[0]) for f, s in zip(per_stride, self.strides, strict=True)]

    def _assemble(self, chunk_maps: torch.Tensor, stride: int, batch: int) -> torch.Tensor:
        """Chunk maps ``(B * chunks, C, ch / s, cw / s)`` -> one map ``(B, C, Hp / s, Wp / s)``.

        The last chunk of a row or column, which overlaps the one before it, overwrites their overlap.
        """
        hp, wp = self.padded_size[0] // stride, self.padded_size[1] // stride
        per_image = chunk_maps.reshape(batch, len(self.origins), *chunk_maps.shape[1:])
        out = chunk_maps.new_empty((batch, chunk_maps.shape[1], hp, wp))
        for i, (top, left) in enumerate(self.origins):
            t, c = top // stride, left // stride
            out[:, :, t : t + per_image.shape[-2], c : c + per_image.shape[-1]] = per_image[:, i]
        return out
