"""SPADE (Cohen & Hoshen 2020, "Sub-Image Anomaly Detection with Deep Pyramid Correspondences")."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..backbones import Backbone
from ..errors import InputError, NotFittedError
from ..memory import NearestNeighbors, TorchNearestNeighbors, blocked_knn, default_searcher
from .anomaly_map import AnomalyMapGenerator
from .base import AnomalyModel, Batch, ModelState, Tensors
from .params import Rule
from .registry import register


def pooled_feature(feature: torch.Tensor) -> torch.Tensor:
    """Global average pooling ``(B, C, h, w) -> (B, C)``."""
    return feature.mean(dim=(2, 3))


def batch_block(batch: int) -> tuple[int, int]:
    """Query and gallery rows per block of the gallery search for a batch of ``batch`` images.

    About two million distances a block (8 MB, in the CPU's cache): per image,
    2048 query rows at batch 1 down to 128 at batch 16 and above. Blocks of a
    fixed size made batch 1 four times slower per image than batch 16 (the
    per-block overhead of tiny products).
    """
    return max(128, 2048 // max(1, batch)), 1024


def gallery_distances(
    query: torch.Tensor,
    bank: torch.Tensor,
    neighbours: torch.Tensor,
    kappa: int,
    aligned: bool,
    block: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Per-location mean distance of test features to their ``kappa`` nearest features in a gallery.

    Parameters
    ----------
    query:
        ``(B, C, h, w)`` features of the test images at one stage.
    bank:
        ``(N, C, h, w)`` the same stage of every training image (any float dtype).
    neighbours:
        ``(B, k)`` indices of each test image's k nearest training images: its gallery.
    kappa:
        Average the distances to this many nearest gallery features.
    aligned:
        Compare each location only with the same location of each gallery image
        (the seed's shortcut) instead of with every location of every gallery
        image (the paper).
    block:
        Query and gallery rows per block of the exact search; None: :func:`batch_block`.

    Returns
    -------
    torch.Tensor
        ``(B, h, w)`` distances, float32.
    """
    idx = neighbours.to(bank.device)
    if aligned:
        d = torch.linalg.vector_norm(bank[idx].float() - query.float()[:, None], dim=2)  # (B, k, h, w)
        return d.topk(min(kappa, d.shape[1]), dim=1, largest=False).values.mean(dim=1)
    b, _, h, w = query.shape
    q = query.flatten(2).transpose(1, 2)  # (B, h * w, C)
    gallery = (bank[idx[:, j]].flatten(2).transpose(1, 2) for j in range(idx.shape[1]))  # one image at a time
    dist, _ = blocked_knn(q, gallery, kappa, block or batch_block(b), with_indices=False)
    return dist.mean(dim=-1).view(b, h, w)


class SPADEModule(nn.Module):
    """Fitted SPADE: normalised images -> (image scores ``(B,)``, anomaly maps ``(B, H, W)``).

    Parameters
    ----------
    backbone:
        Returns the pyramid stages, then the stage whose pooled feature finds the neighbours.
    pooled:
        ``(N, C)`` pooled last-stage features of the training images.
    pyramids:
        Per pyramid stage, ``(N, C_s, h_s, w_s)`` training features (float16 or float32).
    k, kappa, aligned, pixel_k:
        See :class:`SPADE`.
    map_generator:
        Upsampling and blur of the combined map.
    searcher:
        Nearest-neighbour strategy for the pooled features (default: faiss).
    block:
        Query and gallery rows per block of the gallery search; None (the
        default) sizes them by the batch (:func:`batch_block`), a fixed size
        keeps an exported graph independent of the batch.
    """

    def __init__(
        self,
        backbone: Backbone,
        pooled: torch.Tensor,
        pyramids: list[torch.Tensor],
        k: int,
        kappa: int,
        aligned: bool,
        map_generator: AnomalyMapGenerator,
        searcher: NearestNeighbors | None = None,
        block: tuple[int, int] | None = None,
        pixel_k: int = 0,
        runtime: str = "torch",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.runtime = runtime
        self.register_buffer("pooled", pooled)
        for s, bank in enumerate(pyramids):
            self.register_buffer(f"pyramid_{s}", bank)
        self.n_stages = len(pyramids)
        self.k, self.kappa, self.aligned = min(k, pooled.shape[0]), kappa, aligned
        self.pixel_k = min(pixel_k, self.k) if pixel_k > 0 else self.k
        self.map_generator = map_generator
        self.searcher = (searcher or default_searcher(pooled.device)).fit(pooled)
        self.block = block

    @property
    def pyramids(self) -> list[torch.Tensor]:
        """Training features of each pyramid stage."""
        return [getattr(self, f"pyramid_{s}") for s in range(self.n_stages)]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_features(self.backbone(images, self.runtime))

    def score_features(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and maps from backbone features (the pyramid stages, then the pooled stage)."""
        dist, idx = self.searcher.search(pooled_feature(feats[-1]), self.k)
        idx = idx[:, : self.pixel_k]  # the gallery: the nearest pixel_k of the k images (ascending distance)
        # The mean of the stages' upsampled maps, blurred: both steps are linear, so map each stage and average.
        stage_maps = [
            self.map_generator(gallery_distances(stage, bank, idx, self.kappa, self.aligned, self.block))
            for stage, bank in zip(feats[:-1], self.pyramids, strict=True)
        ]
        return dist.mean(dim=1), torch.stack(stage_maps).mean(dim=0)


@register
@dataclass(eq=False, repr=False, kw_only=True)
class SPADE(AnomalyModel):
    """SPADE: kNN on pooled image features, then pixel matching against the nearest images' feature pyramids.

    Parameters
    ----------
    k:
        Nearest training images: their mean pooled-feature distance is the image
        score, and their pyramids are the pixel gallery (the paper uses 50).
    kappa:
        Nearest gallery features averaged for a pixel's score (the paper uses 1).
    aligned:
        Match each location only with the same location of the gallery images
        (faster; the seed's shortcut) instead of every location (the paper).
    half_precision_gallery:
        Store the training feature pyramids in float16 (half the memory).
    pixel_k:
        Training images whose pyramids are a pixel's gallery: the nearest
        ``pixel_k`` of the ``k`` (0: all ``k``, the paper). The image score is
        unchanged; the gallery search's time is proportional to it.
    strides:
        Pyramid stages, then the stage whose pooled feature finds the neighbours
        (default 4, 8, 16, then 32).

    The other parameters are those of :class:`~indad.methods.base.AnomalyModel`.
    """

    method: ClassVar[str] = "spade"
    default_strides: ClassVar[tuple[int, ...]] = (4, 8, 16, 32)

    k: int = 5
    kappa: int = 1
    aligned: bool = False
    half_precision_gallery: bool = True
    pixel_k: int = 3

    rules: ClassVar[dict[str, Rule]] = {
        "k": Rule(int, low=1),
        "kappa": Rule(int, low=1),
        "pixel_k": Rule(int, low=0),
        "aligned": Rule(bool),
        "half_precision_gallery": Rule(bool),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.stage_strides) < 2:
            raise InputError(
                f"SPADE needs at least two strides (pyramid stages, then the pooled stage), got "
                f"{list(self.stage_strides)}"
            )
        self.pooled: torch.Tensor | None = None
        self.pyramids: list[torch.Tensor] = []

    def partial_fit_state(self, batches: Iterable[Batch], shards: int) -> Tensors:
        start = time.perf_counter()
        pooled, pyramids = self._features(batches)
        self.timings["features_s"] = time.perf_counter() - start
        return self._tensors(pooled, pyramids)

    def merge_states(self, parts: list[Tensors]) -> None:
        self.from_state(
            ModelState({name: torch.cat([part[name].to(self.device) for part in parts]) for name in parts[0]})
        )

    def extend_state(self, batches: Iterable[Batch]) -> None:
        pooled, pyramids = self._features(batches)
        self.pooled = torch.cat([self._fitted_pooled(), pooled])
        self.pyramids = [torch.cat(pair) for pair in zip(self.pyramids, pyramids, strict=True)]

    def _features(self, batches: Iterable[Batch]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Pooled last-stage features ``(N, C)`` and each pyramid stage ``(N, C_s, h_s, w_s)`` of the images."""
        dtype = torch.float16 if self.half_precision_gallery else torch.float32
        pooled: list[torch.Tensor] = []
        pyramids: list[list[torch.Tensor]] = [[] for _ in self.stage_strides[:-1]]
        for batch in batches:
            feats = self.fit_features(batch["image"])
            pooled.append(pooled_feature(feats[-1]).float())
            for acc, f in zip(pyramids, feats[:-1], strict=True):
                acc.append(f.to(dtype))
        if not pooled:
            raise InputError("SPADE: no training images")
        return torch.cat(pooled), [torch.cat(p) for p in pyramids]

    @staticmethod
    def _tensors(pooled: torch.Tensor, pyramids: list[torch.Tensor]) -> Tensors:
        return {"pooled": pooled, **{f"pyramid_{s}": p for s, p in enumerate(pyramids)}}

    def _fitted_pooled(self) -> torch.Tensor:
        if self.pooled is None:
            raise NotFittedError("SPADE has no training features: call fit() first")
        return self.pooled

    def to_state(self) -> ModelState:
        return ModelState(self._tensors(self._fitted_pooled(), self.pyramids))

    def from_state(self, state: ModelState) -> None:
        self.pooled = state.tensors["pooled"]
        self.pyramids = [state.tensors[f"pyramid_{s}"] for s in range(len(self.stage_strides) - 1)]

    def build_module(self, exportable: bool = False) -> SPADEModule:
        return SPADEModule(
            self.backbone,
            self._fitted_pooled(),
            self.pyramids,
            self.k,
            self.kappa,
            self.aligned,
            AnomalyMapGenerator(self.input_size, self.blur_sigma),
            TorchNearestNeighbors() if exportable else None,
            (1024, 4096) if exportable else None,
            self.pixel_k,
            self.backbone_runtime,
        )
