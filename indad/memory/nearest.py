"""Exact nearest-neighbour search over a memory bank: faiss, or chunked torch on any device."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class NearestNeighbors(Protocol):
    """A strategy object: index a bank once, then answer k-nearest queries."""

    def fit(self, bank: torch.Tensor) -> "NearestNeighbors":
        """Index ``bank`` ``(M, D)``."""

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Euclidean distances and indices of the ``k`` nearest bank rows, each ``(Q, k)``, on the queries' device."""


class FaissNearestNeighbors:
    """Exact L2 search with faiss; a GPU index when faiss has GPU support and the bank is on CUDA."""

    def __init__(self) -> None:
        self.index = None
        self.size = 0

    def fit(self, bank: torch.Tensor) -> "FaissNearestNeighbors":
        import faiss

        data = np.ascontiguousarray(bank.detach().float().cpu().numpy())
        index = faiss.IndexFlatL2(data.shape[1])
        if bank.device.type == "cuda" and hasattr(faiss, "StandardGpuResources"):
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, bank.device.index or 0, index)
        index.add(data)
        self.index = index
        self.size = data.shape[0]
        return self

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.index is None:
            raise RuntimeError("search before fit")
        k = min(k, self.size)
        q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
        sq, idx = self.index.search(q, k)
        dist = torch.from_numpy(np.sqrt(np.maximum(sq, 0.0))).to(queries.device)
        return dist, torch.from_numpy(idx).to(queries.device)


class TorchNearestNeighbors:
    """Exact L2 search with torch matrix products, in chunks of queries, on the bank's device."""

    def __init__(self, chunk: int = 4096) -> None:
        self.chunk = chunk
        self.bank: torch.Tensor | None = None

    def fit(self, bank: torch.Tensor) -> "TorchNearestNeighbors":
        self.bank = bank.detach().float()
        self._sq = (self.bank * self.bank).sum(1)
        return self

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bank is None:
            raise RuntimeError("search before fit")
        k = min(k, self.bank.shape[0])
        q_all = queries.to(self.bank.device, torch.float32)
        dists, idxs = [], []
        for q in q_all.split(self.chunk):
            sq = (q * q).sum(1, keepdim=True) + self._sq[None, :] - 2.0 * q @ self.bank.T
            d, i = torch.topk(sq, k, dim=1, largest=False)
            dists.append(d.clamp_min(0).sqrt())
            idxs.append(i)
        return torch.cat(dists).to(queries.device), torch.cat(idxs).to(queries.device)


def knn_distances(queries: torch.Tensor, bank: torch.Tensor, k: int = 1,
                  block: tuple[int, int] = (2048, 1024)) -> torch.Tensor:
    """Exact Euclidean distances ``(Q, k)`` from each query to its ``k`` nearest bank rows, ascending.

    For a bank that changes with every query set (SPADE's per-image gallery):
    no index is built, and the distance matrix is formed in blocks of
    ``block`` (queries, bank rows) that fit in the CPU cache, never whole.
    Computed in float32 on the queries' device.
    """
    if bank.shape[0] == 0:
        raise ValueError("knn_distances: the bank is empty")
    k = min(int(k), bank.shape[0])
    q_all = queries.float()
    bank = bank.to(q_all.device, torch.float32)
    bank_sq = (bank * bank).sum(1)
    out = []
    for q in q_all.split(block[0]):
        best: torch.Tensor | None = None  # k smallest of |b|^2 - 2 q.b so far
        for b, b_sq in zip(bank.split(block[1]), bank_sq.split(block[1]), strict=True):
            part = torch.addmm(b_sq[None, :], q, b.T, alpha=-2.0)
            if k == 1:
                part = part.amin(dim=1, keepdim=True)
                best = part if best is None else torch.minimum(best, part)
            else:
                part = part if best is None else torch.cat([best, part], dim=1)
                best = part.topk(min(k, part.shape[1]), dim=1, largest=False).values
        out.append(((q * q).sum(1, keepdim=True) + best).clamp_min(0).sqrt())
    return torch.cat(out)


def default_searcher(device: torch.device) -> NearestNeighbors:
    """faiss on the CPU (and on CUDA when faiss has GPU support); torch on CUDA otherwise."""
    if device.type == "cuda":
        import faiss

        if not hasattr(faiss, "StandardGpuResources"):
            return TorchNearestNeighbors()
    return FaissNearestNeighbors()
