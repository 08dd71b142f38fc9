"""Reference versions the memory-bank code is checked against (tests and benchmarks, not the package)."""

from __future__ import annotations

import torch

from indad.memory import blocked_knn, greedy_k_center


def greedy_k_center_plain(features: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """Greedy k-center with every distance computed at every step: what the pruned version must equal."""
    return greedy_k_center(features, n, start, bound_dims=0)


def exact_grid(features: torch.Tensor) -> torch.Tensor:
    """The points scaled and rounded to integers, small enough for exact float32 distances.

    With ``D`` dimensions every coordinate ends in ``[-L, L]``, ``L = floor(sqrt(2**24 / D) / 2)``
    (181 for 128 dimensions), so every squared norm, dot product and squared
    distance, and every partial sum of them, is an integer below ``2**24``:
    computed in float32 in any order (any BLAS kernel, CPU or CUDA) it is exact.
    Greedy k-center selection on these points therefore has one exact answer.
    """
    levels = max(1, int((2**24 / features.shape[1]) ** 0.5 / 2))
    peak = float(features.abs().max()) if features.numel() else 0.0
    scale = levels / peak if peak > 0 else 1.0
    return (features.float() * scale).round_().clamp_(-levels, levels)


def coverage_radius(features: torch.Tensor, centres: torch.Tensor) -> float:
    """The k-center objective: the largest distance from a point of ``features`` to its nearest centre."""
    dist, _ = blocked_knn(
        features, centres.to(features.device, features.dtype), 1, block=(4096, 4096), with_indices=False
    )
    return float(dist.max())
