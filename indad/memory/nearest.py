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


def default_searcher(device: torch.device) -> NearestNeighbors:
    """faiss on the CPU (and on CUDA when faiss has GPU support); torch on CUDA otherwise."""
    if device.type == "cuda":
        import faiss

        if not hasattr(faiss, "StandardGpuResources"):
            return TorchNearestNeighbors()
    return FaissNearestNeighbors()
