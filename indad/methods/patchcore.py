"""PatchCore (Roth et al. 2021, "Towards Total Recall in Industrial Anomaly Detection")."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import Backbone
from ..backbones.chunked import ChunkedBackbone
from ..errors import InputError, NotFittedError
from ..memory import (
    GreedyCoresetSampler,
    HnswNearestNeighbors,
    NearestNeighbors,
    TorchNearestNeighbors,
    default_searcher,
    take_rows,
)
from ..memory.pool import PatchPool
from .anomaly_map import AnomalyMapGenerator
from .base import AnomalyModel, Batch, ModelState, Tensors
from .params import Rule
from .registry import register

log = logging.getLogger(__name__)


def patch_embedding(features: list[torch.Tensor]) -> torch.Tensor:
    """Locally aware patch features ``(B, D, h, w)`` from backbone maps (finest first).

    Each map is averaged over its 3x3 neighbourhood (stride 1, zero padding as in
    the reference implementations: border patches stay distinguishable, which
    matters for defects at an object's edge), the coarser maps are upsampled
    bilinearly to the finest, and all are concatenated along channels.
    """
    size = features[0].shape[-2:]
    out = []
    for f in features:
        f = F.avg_pool2d(f, kernel_size=3, stride=1, padding=1)
        if f.shape[-2:] != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        out.append(f)
    return torch.cat(out, dim=1)


def patch_queries(
    backbone: Backbone | ChunkedBackbone, images: torch.Tensor, runtime: str | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch features ``(B, h * w, D)`` of a normalised batch (the backbone on ``runtime``), and the grid ``(h, w)``."""
    emb = patch_embedding(backbone(images, runtime))
    b, d, h, w = emb.shape
    return emb.permute(0, 2, 3, 1).reshape(b, h * w, d), (h, w)


def reweighting_weights(
    queries: torch.Tensor,
    distances: torch.Tensor,
    neighbours: torch.Tensor,
    bank: torch.Tensor,
    searcher: NearestNeighbors,
    n_reweight: int,
) -> torch.Tensor:
    """The image-score weights of Roth et al. 2021, Eq. 7.

    Parameters
    ----------
    queries:
        ``(B, P, D)`` patch features of each image.
    distances, neighbours:
        ``(B, P)`` distance of each patch to its nearest bank feature, and that feature's index.
    bank:
        ``(M, D)`` memory bank.
    n_reweight:
        ``b`` in Eq. 7: how many bank neighbours of the nearest feature ``m*`` to
        compare against; 0 gives weights of 1.

    Returns
    -------
    torch.Tensor
        ``(B,)`` weights ``w = 1 - exp(s*) / sum_{m in N_b(m*)} exp(|m_test - m|)``, where
        ``m_test`` is the patch farthest from the bank, ``s*`` its distance and
        ``m*`` its nearest bank feature; Eq. 7's score is ``w * s*``.
    """
    s_star, where = distances.max(dim=1)
    if n_reweight <= 0:
        return torch.ones_like(s_star)
    batch = torch.arange(queries.shape[0], device=queries.device)
    m_test = queries[batch, where]  # (B, D)
    m_star = bank[neighbours[batch, where].to(bank.device)]  # (B, D)
    _, support = searcher.search(m_star, n_reweight)  # N_b(m*), m* itself among them
    support_feats = bank[support.to(bank.device)].to(m_test.device)  # (B, b, D)
    d = torch.linalg.vector_norm(support_feats - m_test[:, None, :], dim=-1)  # (B, b)
    return 1.0 - torch.exp(s_star - torch.logsumexp(d, dim=1))


IMAGE_SCORES = ("max_map", "max_patch")
GRAPH_TENSOR = "hnsw_graph"
"""The model file's tensor of the HNSW graph of the memory bank (uint8, without the bank's float16 copy)."""
SEARCHES = ("exact", "hnsw")
TILE_FEATURES = ("tiles", "image")
POOL_PER_BANK = 16
"""With ``max_bank``, the greedy selection chooses from at most this many patches per bank row."""


class PatchCoreModule(nn.Module):
    """Fitted PatchCore: normalised images -> (image scores ``(B,)``, anomaly maps ``(B, H, W)``)."""

    memory_bank: torch.Tensor

    def __init__(
        self,
        backbone: Backbone | ChunkedBackbone,
        memory_bank: torch.Tensor,
        searcher: NearestNeighbors,
        map_generator: AnomalyMapGenerator,
        n_reweight: int = 0,
        image_score: str = "max_map",
        runtime: str = "torch",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.runtime = runtime
        self.register_buffer("memory_bank", memory_bank)
        self.searcher = searcher.fit(memory_bank)
        self.map_generator = map_generator
        self.n_reweight = int(n_reweight)
        self.image_score = image_score

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        queries, (h, w) = patch_queries(self.backbone, images, self.runtime)
        b, _, d = queries.shape
        dist, idx = self.searcher.search(queries.reshape(-1, d), 1)
        dist, idx = dist.view(b, h * w), idx.view(b, h * w)
        maps = self.map_generator(dist.view(b, h, w))
        base = maps.amax(dim=(1, 2)) if self.image_score == "max_map" else dist.max(dim=1).values
        weights = reweighting_weights(queries, dist, idx, self.memory_bank, self.searcher, self.n_reweight)
        return weights * base, maps


@register
@dataclass(eq=False, repr=False, kw_only=True)
class PatchCore(AnomalyModel):
    """PatchCore: nearest-neighbour distance of locally aware patch features to a coreset memory bank.

    Parameters
    ----------
    f_coreset:
        Fraction of all training patches kept in the memory bank by greedy
        k-center selection (1.0 keeps every patch).
    projection_dim:
        Dimensions of the random projection the coreset distances use.
    coreset_subsample:
        Share of the training patches (a seeded random subset) the greedy
        k-center selection chooses from; the bank keeps ``f_coreset`` of all
        patches all the same. Below 1 the selection takes about that share of
        its time (neighbouring patches overlap, so most are near-duplicates).
    n_reweight:
        Neighbours ``b`` of the image-score re-weighting of Eq. 7 (0 disables it).
    image_score:
        ``"max_map"``: the maximum of the blurred anomaly map; ``"max_patch"``: the
        largest patch distance, as in the paper. The re-weighting multiplies either.
    blur_sigma:
        Gaussian blur of the anomaly map, in pixels.
    strides:
        Backbone stages used (default the strides 8 and 16).
    backbone_runtime:
        Runtime of the backbone when scoring (see :class:`~indad.methods.base.AnomalyModel`).
    fit_runtime:
        Runtime of the backbone when fitting (and in :meth:`add_normal`).
        Default ``"torch"``: the greedy coreset amplifies the tiny differences of
        ONNX Runtime's features into another bank, so the fit keeps torch's
        features unless asked (measured: docs/benchmarks.md).
    search:
        Nearest-neighbour search of the memory bank when scoring on the CPU:
        ``"hnsw"`` (approximate, a faiss HNSW graph walked on a float16 copy of the
        bank, kept in the model file; a distance is never below the
        exact one) or ``"exact"`` (faiss flat index). On CUDA and in exported graphs
        the search is exact.
    ef_search:
        Candidates the HNSW search keeps (higher: closer to exact, slower).
    tile_features:
        With ``tile``: ``"tiles"``, each overlapping tile through the backbone and scored, the tiles'
        maps stitched (overlaps averaged); ``"image"``: the backbone over the working image in chunks
        of the tile's size that do not overlap (:mod:`~indad.backbones.chunked`), every place scored
        once and one map made for the whole image (the overlap is then unused). Fit and scoring use the
        same path. Without ``tile``, ignored.
    max_bank:
        At most this many patches in the memory bank (0: no cap, ``f_coreset`` of all patches): with
        many high-resolution images the bank, and the coreset's work, would grow without bound.

    ``backbone_runtime="torch", search="exact"`` scores as the paper does; the
    defaults (ONNX Runtime, HNSW with ``ef_search=16``) and what they were
    measured to cost and gain are in docs/methods.md and docs/benchmarks.md.

    The other parameters are those of :class:`~indad.methods.base.AnomalyModel`.
    """

    method: ClassVar[str] = "patchcore"
    default_strides: ClassVar[tuple[int, ...]] = (8, 16)

    f_coreset: float = 0.01
    projection_dim: int = 128
    coreset_subsample: float = 1.0
    n_reweight: int = 0
    image_score: str = "max_map"
    blur_sigma: float = 8.0
    backbone_runtime: str = "onnxruntime"
    fit_runtime: str = "torch"
    search: str = "hnsw"
    ef_search: int = 16
    tile_features: str = "tiles"
    max_bank: int = 0

    rules: ClassVar[dict[str, Rule]] = {
        "f_coreset": Rule(float, low=0, high=1, low_open=True),
        "coreset_subsample": Rule(float, low=0, high=1, low_open=True),
        "projection_dim": Rule(int, low=0),
        "n_reweight": Rule(int, low=0),
        "image_score": Rule(choices=IMAGE_SCORES),
        "search": Rule(choices=SEARCHES),
        "ef_search": Rule(int, low=1),
        "tile_features": Rule(choices=TILE_FEATURES),
        "max_bank": Rule(int, low=0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self.memory_bank: torch.Tensor | None = None
        self._graph: torch.Tensor | None = None  # the HNSW graph of the bank, once built or loaded

    @property
    def splits_tiles(self) -> bool:
        """Whether fit and scoring cut the working image into tiles (``tile_features="tiles"``)."""
        return self.tile_grid is not None and self.tile_features == "tiles"

    def features_backbone(self, exportable: bool = False) -> Backbone | ChunkedBackbone:
        """The backbone fit and scoring run: chunked over the working image with ``tile_features="image"``."""
        grid = self.tile_grid
        if grid is None or self.splits_tiles:
            return self.backbone
        batch = 1 << 30 if exportable else self.batch_size  # an export: one pass, no loop over the batch
        return ChunkedBackbone(self.backbone, self.working_size, grid.tiling.size, batch)

    def searcher(self, exportable: bool = False) -> NearestNeighbors:
        """The nearest-neighbour search the scoring module uses (see :attr:`search`)."""
        if exportable:
            return TorchNearestNeighbors()
        if self.search == "hnsw" and torch.device(self.device).type == "cpu":
            graph = None if self._graph is None else self._graph.cpu().numpy()
            return HnswNearestNeighbors(ef_search=self.ef_search, graph=graph)
        return default_searcher(self.device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch features ``(B * h * w, D)`` of a normalised batch."""
        queries, _ = patch_queries(self.features_backbone(), images, self.backbone_runtime)
        return queries.reshape(-1, queries.shape[-1])

    def _fit_embed(self, images: torch.Tensor) -> torch.Tensor:
        """:meth:`embed` with the backbone on :attr:`fit_runtime`."""
        emb = patch_embedding(self.features_backbone()(images, self.fit_runtime))
        return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])

    def _sampler(self, fraction: float | None = None) -> GreedyCoresetSampler:
        return GreedyCoresetSampler(fraction or self.f_coreset, self.projection_dim, self.seed, self.progress)

    def partial_fit_state(self, batches: Iterable[Batch], shards: int) -> Tensors:
        """The shard's patches reduced by greedy k-center to as many as the whole bank keeps (``shards`` x its share).

        With several shards, :meth:`merge_states` runs a second greedy pass over
        their union (a two-level coreset); with one, this is the whole selection.
        The ``coreset_subsample`` share is drawn batch by batch as the features come (only it is kept), and with
        ``max_bank`` at most :data:`POOL_PER_BANK` x ``max_bank`` of those (a seeded uniform reservoir).
        """
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(self.seed)
        pool = PatchPool(POOL_PER_BANK * self.max_bank, self.seed) if self.max_bank else None
        # Until the coreset is chosen, the patches live in float16 chunks: half the memory, no copy to join them.
        chunks, total = [], 0
        for batch in batches:
            emb = self._fit_embed(batch["image"]).half()
            total += len(emb)
            emb = self._subsample(emb, gen) if self.coreset_subsample < 1 else emb
            if pool is None:
                chunks.append(emb)
            else:
                pool.add(emb)
        chunks = chunks if pool is None else pool.chunks()
        if not chunks:
            raise InputError("PatchCore: no training images")
        self.timings["features_s"] = time.perf_counter() - start
        start = time.perf_counter()
        n = min(sum(len(c) for c in chunks), self._bank_size(min(1.0, self.f_coreset * shards) * total))
        keep = self._sampler().select(chunks, n)
        self.timings["coreset_s"] = time.perf_counter() - start
        return {"features": take_rows(chunks, keep).float(), "count": torch.tensor(total)}

    def _bank_size(self, share: float) -> int:
        """Rows of the bank for ``share`` patches: at least 1, at most ``max_bank`` (when set)."""
        n = max(1, round(share))
        return min(n, self.max_bank) if self.max_bank else n

    def _subsample(self, chunk: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A seeded random ``coreset_subsample`` share of the chunk's rows, in their order."""
        keep = torch.randperm(len(chunk), generator=gen)[: max(1, round(self.coreset_subsample * len(chunk)))]
        return chunk[keep.sort().values.to(chunk.device)]

    def merge_states(self, parts: list[Tensors]) -> None:
        union = torch.cat([p["features"].to(self.device) for p in parts])
        total = sum(int(p["count"]) for p in parts)
        n = self._bank_size(self.f_coreset * total)
        if n < union.shape[0]:
            start = time.perf_counter()
            union = union[self._sampler().select(union, n)].contiguous()
            self.timings["global_coreset_s"] = time.perf_counter() - start
        self.memory_bank, self._graph = union, None
        log.info("patchcore: memory bank %d of %d patches, %d dims", union.shape[0], total, union.shape[1])

    def extend_state(self, batches: Iterable[Batch]) -> None:
        bank = self._fitted_bank()
        new = torch.cat([self._fit_embed(batch["image"]) for batch in batches])
        keep = self._sampler().extend(bank, new)
        self.memory_bank, self._graph = torch.cat([bank, new[keep]]).contiguous(), None

    def to_state(self) -> ModelState:
        """The memory bank, and its HNSW graph once built (loading then skips building it again)."""
        tensors = {"memory_bank": self._fitted_bank()}
        if self._graph is not None:
            tensors[GRAPH_TENSOR] = self._graph
        return ModelState(tensors)

    def from_state(self, state: ModelState) -> None:
        self.memory_bank = state.tensors["memory_bank"]
        self._graph = state.tensors.get(GRAPH_TENSOR)

    def build_module(self, exportable: bool = False) -> PatchCoreModule:
        searcher = self.searcher(exportable)
        backbone = self.features_backbone(exportable)
        if isinstance(backbone, ChunkedBackbone):  # one map of the padded image, cut to the working size
            maps = AnomalyMapGenerator(backbone.padded_size, self.blur_sigma, self.working_size)
        else:
            maps = AnomalyMapGenerator(self.input_size, self.blur_sigma)
        module = PatchCoreModule(
            backbone,
            self._fitted_bank(),
            searcher,
            maps,
            self.n_reweight,
            self.image_score,
            self.backbone_runtime,
        )
        if isinstance(searcher, HnswNearestNeighbors) and not searcher.from_graph:
            self._graph = torch.from_numpy(searcher.graph())
        return module

    def _fitted_bank(self) -> torch.Tensor:
        if self.memory_bank is None:
            raise NotFittedError("PatchCore has no memory bank: call fit() first")
        return self.memory_bank
