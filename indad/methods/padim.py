"""PaDiM (Defard et al. 2020).

"PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and Localization".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import Backbone
from ..errors import InputError, ModelFileError, NotFittedError, ResourceError
from .anomaly_map import AnomalyMapGenerator
from .base import AnomalyModel, Batch, ModelState, Tensors
from .params import Rule
from .registry import register


def stage_channels(channels: torch.Tensor, widths: Sequence[int]) -> list[torch.Tensor]:
    """Per stage, its channels among ``channels`` (ascending indices into the stages' concatenation)."""
    out, offset = [], 0
    for width in widths:
        out.append(channels[(channels >= offset) & (channels < offset + width)] - offset)
        offset += width
    return out


def pyramid_embedding(features: list[torch.Tensor], channels: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Stage maps upsampled to the finest one and concatenated ``(B, D, h, w)``.

    ``channels``: per stage, the channels to keep (:func:`stage_channels`), cut
    before the stage is upsampled; None keeps all.
    """
    size = features[0].shape[-2:]
    maps = []
    for s, f in enumerate(features):
        if channels is not None:
            f = f.index_select(1, channels[s])
        maps.append(f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="nearest"))
    return torch.cat(maps, dim=1)


def available_memory() -> int | None:
    """Bytes of memory free now (Linux), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed: int, what: str) -> None:
    """A :class:`~indad.errors.ResourceError` naming ``what`` when ``needed`` bytes exceed the free memory."""
    free = available_memory()
    if free is not None and needed > free:
        raise ResourceError(
            f"{what} need {needed / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free: use fewer or smaller tiles, "
            "a smaller image_size, coarser strides or a smaller d_reduced"
        )


class GaussianAccumulator:
    """Running sums of per-position embeddings, in float64, for a mean and covariance per position.

    Memory is ``P * d * d`` doubles whatever the number of images; sums from
    several accumulators add exactly (:meth:`merge`).
    """

    def __init__(self) -> None:
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    @classmethod
    def from_sums(cls, count: int, sum_: torch.Tensor, outer: torch.Tensor) -> GaussianAccumulator:
        """An accumulator holding these sums (``(P, d)`` and ``(P, d, d)``, float64) of ``count`` images."""
        acc = cls()
        acc.count, acc.sum, acc.outer = count, sum_, outer
        return acc

    def update(self, emb: torch.Tensor) -> None:
        """Add a batch of embeddings ``(B, d, P)``; a :class:`~indad.errors.ResourceError` if the sums cannot fit."""
        x = emb.double()
        if self.sum is None or self.outer is None:
            _, d, p = x.shape
            check_memory(p * d * (d + 1) * 8, f"PaDiM's statistics ({p} positions x {d}^2 channel pairs)")
            self.sum = torch.zeros(p, d, dtype=torch.float64, device=x.device)
            self.outer = torch.zeros(p, d, d, dtype=torch.float64, device=x.device)
        self.count += x.shape[0]
        self.sum += x.sum(dim=0).T
        xp = x.permute(2, 1, 0).contiguous()  # (P, d, B): contiguous, so bmm runs as one batched product
        self.outer += torch.bmm(xp, xp.transpose(1, 2))

    def sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The running sums ``(P, d)`` and ``(P, d, d)``; an error when no image was added."""
        if self.sum is None or self.outer is None:
            raise InputError("PaDiM: no training images")
        return self.sum, self.outer

    def merge(self, other: GaussianAccumulator) -> None:
        """Add another accumulator's sums (same shape)."""
        (total, outer), (other_sum, other_outer) = self.sums(), other.sums()
        self.count += other.count
        total += other_sum
        outer += other_outer

    def mean_and_covariance(self, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position mean ``(P, d)`` and unbiased covariance plus ``epsilon * I`` ``(P, d, d)``."""
        if self.count < 2:
            raise InputError(f"PaDiM needs at least 2 training images, got {self.count}")
        total, outer = self.sums()
        n = self.count
        mean = total / n
        cov = (outer - n * mean[:, :, None] * mean[:, None, :]) / (n - 1)
        cov += epsilon * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        return mean, cov


def tile_positions(emb: torch.Tensor, tiles: int) -> torch.Tensor:
    """Embeddings of tiles ``(B * tiles, d, h, w)`` as ``(B, d, tiles * h * w)``: a position per tile and place."""
    bt, d, h, w = emb.shape
    return emb.reshape(bt // tiles, tiles, d, h * w).transpose(1, 2).reshape(bt // tiles, d, tiles * h * w)


def whitening_factor(cov: torch.Tensor) -> torch.Tensor:
    """Upper-triangular ``U`` with ``U @ U.T`` the inverse of ``cov`` ``(..., d, d)``: ``|x U|^2`` is ``x cov^-1 x^T``.

    ``U = L^-T`` for the Cholesky factor ``L`` of ``cov`` (computed in ``cov``'s dtype).
    """
    lower = torch.linalg.cholesky(cov)
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
    return torch.linalg.solve_triangular(lower, eye, upper=False).transpose(-1, -2)


def block_edges(d: int, blocks: int) -> list[int]:
    """Boundaries of ``blocks`` near-equal parts of ``range(d)``."""
    return [round(i * d / blocks) for i in range(blocks + 1)]


class PaDiMModule(nn.Module):
    """Fitted PaDiM: normalised images (or their tiles) -> (image scores ``(B,)``, anomaly maps ``(B, H, W)``).

    With ``tiles`` > 1 a batch holds whole images' tiles, each tile position with its own Gaussians.

    The squared Mahalanobis distance ``delta cov^-1 delta^T`` is computed as
    ``|delta U|^2`` with the upper-triangular ``factor`` ``U`` (``U U^T =
    cov^-1``, :func:`whitening_factor`), kept as the ``blocks * (blocks + 1) / 2``
    non-zero blocks of a ``blocks`` x ``blocks`` split: 2/3 of the inverse's
    memory at 3 blocks, which is what the product reads (it is bound by memory;
    docs/benchmarks.md), equal to the inverse's distance within float32 rounding.
    """

    mean: torch.Tensor

    def __init__(
        self,
        backbone: Backbone,
        channels: torch.Tensor,
        mean: torch.Tensor,
        factor: torch.Tensor,
        map_generator: AnomalyMapGenerator,
        tiles: int = 1,
        blocks: int = 3,
        runtime: str = "torch",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.runtime = runtime
        self.tiles = int(tiles)
        self.n_stages = len(backbone.channels)
        for i, chosen in enumerate(stage_channels(channels, backbone.channels)):
            self.register_buffer(f"channels_{i}", chosen)
        self.register_buffer("mean", mean)  # (P, d)
        self.dims = int(factor.shape[-1])
        edges = block_edges(self.dims, max(1, min(int(blocks), self.dims)))
        self.sizes = [b - a for a, b in pairwise(edges)]
        self.n_blocks = len(self.sizes)
        for i in range(self.n_blocks):
            for j in range(i, self.n_blocks):  # U's blocks below the diagonal are zero
                block = factor[:, edges[i] : edges[i + 1], edges[j] : edges[j + 1]].contiguous()
                self.register_buffer(f"factor_{i}_{j}", block)
        self.map_generator = map_generator

    def squared_distances(self, delta: torch.Tensor) -> torch.Tensor:
        """``(P, B)`` squared Mahalanobis distances of ``delta`` ``(P, B, d)`` (differences from the means)."""
        parts = delta.split(self.sizes, dim=-1)
        total = torch.zeros(delta.shape[:-1], dtype=delta.dtype, device=delta.device)
        for j in range(self.n_blocks):
            y = torch.bmm(parts[0], getattr(self, f"factor_0_{j}"))
            for i in range(1, j + 1):
                y = torch.baddbmm(y, parts[i], getattr(self, f"factor_{i}_{j}"))
            total = total + y.square().sum(-1)
        return total

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = pyramid_embedding(
            self.backbone(images, self.runtime), [getattr(self, f"channels_{i}") for i in range(self.n_stages)]
        )
        b, _, h, w = emb.shape
        positions = tile_positions(emb, self.tiles)  # (B', d, P)
        # (P, B', d), contiguous: a strided batch makes bmm copy each position's rows separately (10-20x slower).
        delta = (positions.permute(2, 0, 1) - self.mean[:, None, :]).contiguous()
        dist = self.squared_distances(delta).clamp_min(0).sqrt().T.reshape(b, h, w)
        maps = self.map_generator(dist)
        return maps.amax(dim=(1, 2)), maps


@register
@dataclass(eq=False, repr=False, kw_only=True)
class PaDiM(AnomalyModel):
    """PaDiM: a Gaussian per feature-map position, Mahalanobis distance as the anomaly score.

    Parameters
    ----------
    d_reduced:
        Channels kept by a seeded random choice (0 keeps all).
    epsilon:
        Regulariser added to each covariance diagonal.
    strides:
        Backbone stages used (default strides 4, 8 and 16).

    The other parameters are those of :class:`~indad.methods.base.AnomalyModel`.
    With tiles, each tile position of the working image has its own Gaussians:
    memory grows with the number of tiles (``P * d * d`` floats, P the feature
    positions of all tiles).
    """

    method: ClassVar[str] = "padim"
    default_strides: ClassVar[tuple[int, ...]] = (4, 8, 16)

    d_reduced: int = 100
    epsilon: float = 0.01

    rules: ClassVar[dict[str, Rule]] = {"d_reduced": Rule(int, low=0), "epsilon": Rule(float, low=0, low_open=True)}

    def __post_init__(self) -> None:
        super().__post_init__()
        self._channels: torch.Tensor | None = None
        self.accumulator: GaussianAccumulator | None = None

    @property
    def channels(self) -> torch.Tensor:
        """The ``d_reduced`` channels kept (ascending indices into the stages' concatenation), chosen by the seed."""
        if self._channels is None:
            total = sum(self.backbone.channels)
            if self.d_reduced > total:
                raise InputError(f"d_reduced={self.d_reduced} exceeds the {total} channels of {self.backbone_name}")
            gen = torch.Generator().manual_seed(self.seed)
            keep = torch.randperm(total, generator=gen)[: self.d_reduced or total].sort().values
            self._channels = keep.to(self.device)
        return self._channels

    def partial_fit_state(self, batches: Iterable[Batch], shards: int) -> Tensors:
        start = time.perf_counter()
        acc = GaussianAccumulator()
        self._accumulate(acc, batches)
        self.timings["features_s"] = time.perf_counter() - start
        total, outer = acc.sums()
        return {"count": torch.tensor(acc.count), "sum": total, "outer": outer}

    def merge_states(self, parts: list[Tensors]) -> None:
        shards = [
            GaussianAccumulator.from_sums(int(p["count"]), p["sum"].to(self.device), p["outer"].to(self.device))
            for p in parts
        ]
        for shard in shards[1:]:  # the statistics are sums: merged exactly, into the first part's tensors
            shards[0].merge(shard)
        self.accumulator = shards[0]

    def extend_state(self, batches: Iterable[Batch]) -> None:
        self._accumulate(self._fitted_accumulator(), batches)

    def _accumulate(self, acc: GaussianAccumulator, batches: Iterable[Batch]) -> None:
        channels = stage_channels(self.channels, self.backbone.channels)
        for batch in batches:
            emb = pyramid_embedding(self.fit_features(batch["image"]), channels)
            acc.update(tile_positions(emb, self.tiles_per_image))

    def _fitted_accumulator(self) -> GaussianAccumulator:
        if self.accumulator is None:
            raise NotFittedError("PaDiM has no statistics: call fit() first")
        return self.accumulator

    def to_state(self) -> ModelState:
        acc = self._fitted_accumulator()
        total, outer = acc.sums()
        return ModelState({"channels": self.channels, "sum": total, "outer": outer}, {"count": acc.count})

    def from_state(self, state: ModelState) -> None:
        if not torch.equal(state.tensors["channels"].cpu(), self.channels.cpu()):
            raise ModelFileError("the stored channel choice differs from the one this seed and backbone give")
        self.accumulator = GaussianAccumulator.from_sums(
            int(state.meta["count"]), state.tensors["sum"], state.tensors["outer"]
        )

    def build_module(self, exportable: bool = False) -> PaDiMModule:
        start = time.perf_counter()
        mean, cov = self._fitted_accumulator().mean_and_covariance(self.epsilon)
        factor = whitening_factor(cov)
        self.timings["gaussian_s"] = time.perf_counter() - start
        return PaDiMModule(
            self.backbone,
            self.channels,
            mean.float(),
            factor.float(),
            AnomalyMapGenerator(self.input_size, self.blur_sigma),
            self.tiles_per_image,
            runtime=self.backbone_runtime,
        )
