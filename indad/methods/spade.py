"""SPADE (Cohen & Hoshen 2020, "Sub-Image Anomaly Detection with Deep Pyramid Correspondences")."""

from __future__ import annotations

import time
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import Backbone
from ..memory import NearestNeighbors, default_searcher, knn_distances
from .anomaly_map import AnomalyMapGenerator
from .base import AnomalyModel


def pooled_feature(feature: torch.Tensor) -> torch.Tensor:
    """Global average pooling ``(B, C, h, w) -> (B, C)``."""
    return feature.mean(dim=(2, 3))


def gallery_distances(query: torch.Tensor, gallery: torch.Tensor, kappa: int, aligned: bool) -> torch.Tensor:
    """Per-location mean distance of one image's features to their ``kappa`` nearest gallery features.

    Parameters
    ----------
    query:
        ``(C, h, w)`` features of the test image at one stage.
    gallery:
        ``(k, C, h, w)`` the same stage of its k nearest training images.
    kappa:
        Average the distances to this many nearest gallery features.
    aligned:
        Compare each location only with the same location of each gallery image
        (the seed's shortcut) instead of with every location of every gallery
        image (the paper).

    Returns
    -------
    torch.Tensor
        ``(h, w)`` distances, float32.
    """
    c, h, w = query.shape
    if aligned:
        d = torch.linalg.vector_norm(gallery.float() - query.float()[None], dim=1)  # (k, h, w)
        return d.topk(min(kappa, d.shape[0]), dim=0, largest=False).values.mean(dim=0)
    q = query.reshape(c, h * w).T
    g = gallery.permute(0, 2, 3, 1).reshape(-1, c)  # every location of every gallery image
    return knn_distances(q, g, kappa).mean(dim=1).reshape(h, w)


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
    k, kappa, aligned:
        See :class:`SPADE`.
    map_generator:
        Upsampling and blur of the combined map.
    searcher:
        Nearest-neighbour strategy for the pooled features (default: faiss).
    """

    def __init__(self, backbone: Backbone, pooled: torch.Tensor, pyramids: list[torch.Tensor], k: int, kappa: int,
                 aligned: bool, map_generator: AnomalyMapGenerator, searcher: NearestNeighbors | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("pooled", pooled)
        for s, bank in enumerate(pyramids):
            self.register_buffer(f"pyramid_{s}", bank)
        self.n_stages = len(pyramids)
        self.k, self.kappa, self.aligned = min(k, pooled.shape[0]), kappa, aligned
        self.map_generator = map_generator
        self.searcher = (searcher or default_searcher(pooled.device)).fit(pooled)

    @property
    def pyramids(self) -> list[torch.Tensor]:
        """Training features of each pyramid stage."""
        return [getattr(self, f"pyramid_{s}") for s in range(self.n_stages)]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_features(self.backbone(images))

    def score_features(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and maps from backbone features (the pyramid stages, then the pooled stage)."""
        dist, idx = self.searcher.search(pooled_feature(feats[-1]), self.k)
        size = self.map_generator.size
        maps = []
        for i in range(feats[0].shape[0]):
            stage_maps = []
            for stage, bank in zip(feats[:-1], self.pyramids, strict=True):
                d = gallery_distances(stage[i], bank[idx[i].to(bank.device)], self.kappa, self.aligned)
                stage_maps.append(F.interpolate(d[None, None], size=size, mode="bilinear", align_corners=False))
            maps.append(torch.cat(stage_maps, dim=1).mean(dim=1))
        return dist.mean(dim=1), self.map_generator(torch.cat(maps))


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
    strides:
        Pyramid stages, then the stage whose pooled feature finds the neighbours
        (default 4, 8, 16, then 32).
    **kwargs:
        Shared options of :class:`~indad.methods.base.AnomalyModel`.
    """

    method = "spade"
    default_strides = (4, 8, 16, 32)

    def __init__(self, backbone_name: str = "tf_efficientnet_lite0", k: int = 5, kappa: int = 1,
                 aligned: bool = False, half_precision_gallery: bool = True, **kwargs) -> None:
        if int(k) < 1 or int(kappa) < 1:
            raise ValueError(f"k and kappa must be >= 1, got k={k}, kappa={kappa}")
        self.k, self.kappa = int(k), int(kappa)
        self.aligned = bool(aligned)
        self.half_precision_gallery = bool(half_precision_gallery)
        super().__init__(backbone_name=backbone_name, **kwargs)
        if len(self.strides) < 2:
            raise ValueError(f"SPADE needs at least two strides (pyramid stages, then the pooled stage), got "
                             f"{list(self.strides)}")
        self.pooled: torch.Tensor | None = None
        self.pyramids: list[torch.Tensor] = []

    def _fit(self, batches: Iterable[dict]) -> None:
        start = time.perf_counter()
        dtype = torch.float16 if self.half_precision_gallery else torch.float32
        pooled: list[torch.Tensor] = []
        pyramids: list[list[torch.Tensor]] = [[] for _ in self.strides[:-1]]
        for batch in batches:
            feats = self.backbone(batch["image"])
            pooled.append(pooled_feature(feats[-1]).float())
            for acc, f in zip(pyramids, feats[:-1], strict=True):
                acc.append(f.to(dtype))
        if not pooled:
            raise ValueError("SPADE: no training images")
        self.pooled = torch.cat(pooled)
        self.pyramids = [torch.cat(p) for p in pyramids]
        self.timings["features_s"] = time.perf_counter() - start

    def _build_module(self) -> SPADEModule:
        return SPADEModule(self.backbone, self.pooled, self.pyramids, self.k, self.kappa, self.aligned,
                           AnomalyMapGenerator(self.preprocess.output_size, self.blur_sigma))
