"""Greedy k-center coreset selection (Roth et al. 2021, Algorithm 1) on randomly projected features."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..progress import Progress, track
from .nearest import blocked_knn

log = logging.getLogger(__name__)


def random_projection(features: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """Features projected to ``dim`` dimensions by a seeded Gaussian random projection.

    Returned unchanged when they have ``dim`` dimensions or fewer. The projection
    matrix comes from scikit-learn's ``GaussianRandomProjection``; the product is
    computed by torch on the features' device.
    """
    n_features = features.shape[1]
    if dim <= 0 or n_features <= dim:
        return features
    from sklearn.random_projection import GaussianRandomProjection

    rp = GaussianRandomProjection(n_components=dim, random_state=seed)
    rp.fit(np.zeros((1, n_features), dtype=np.float32))
    matrix = torch.from_numpy(np.asarray(rp.components_, dtype=np.float32)).to(features.device, features.dtype)
    return features @ matrix.T


def greedy_k_center(
    features: torch.Tensor, n: int, start: int = 0, progress: Progress = False, bound_dims: int = 16,
    initial_sq_dist: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy k-center selection (Roth et al. 2021, Algorithm 1), exact, with pruned distance updates.

    Starting from ``start``, each step adds the point farthest from every point
    chosen so far (ties: the lowest index). A point's distance to its nearest
    centre can only drop when the new centre is closer. The distance in the top
    ``bound_dims`` principal directions is a lower bound of the full distance (an
    orthogonal projection never lengthens a vector), so each step computes that
    cheap bound for every point and the full distance only for the points it does
    not rule out. The result equals :func:`greedy_k_center_plain`.

    Parameters
    ----------
    features:
        ``(N, D)`` points.
    n:
        How many to choose, ``1 <= n <= N``.
    start:
        Index of the first point.
    bound_dims:
        Dimensions of the principal subspace used for the bound; 0 (or ``>= D/2``)
        computes every distance at every step.
    initial_sq_dist:
        ``(N,)`` squared distance of each point to centres chosen before (from
        other points): the selection continues from them, and ``start`` is
        ignored (the first point is the farthest one).

    Returns
    -------
    torch.Tensor
        ``(n,)`` int64 indices in the order they were chosen.
    """
    total, dims = features.shape
    if not 1 <= n <= total:
        raise ValueError(f"cannot choose {n} of {total} points")
    x = features
    sq_norms = (x * x).sum(dim=1)
    use_bound = 0 < bound_dims < dims // 2
    if use_bound:
        z = x @ _principal_basis(x, bound_dims)
        z_sq = (z * z).sum(dim=1)
        # Slack on the bound's comparison absorbs rounding: no true candidate is missed.
        slack = 1e-4 * (sq_norms + sq_norms.max())
    if initial_sq_dist is None:
        min_dist = torch.full((total,), float("inf"), dtype=x.dtype, device=x.device)
        current = torch.tensor(start, dtype=torch.long, device=x.device)
    else:
        min_dist = initial_sq_dist.to(x.device, x.dtype).clone()
        current = torch.argmax(min_dist)
    chosen = torch.empty(n, dtype=torch.long, device=x.device)
    for i in track(range(n), "coreset", n, progress, mininterval=1.0):
        chosen[i] = current
        candidates = None
        if use_bound:
            bound = torch.addmv(z_sq + z_sq[current], z, z[current], alpha=-2.0)
            found = (bound <= min_dist + slack).nonzero().squeeze(1)
            if found.numel() <= total // 2:
                candidates = found
        # Squared distances to the new centre: |x|^2 - 2 x.c + |c|^2, one matrix-vector product.
        if candidates is None:
            dist = torch.addmv(sq_norms + sq_norms[current], x, x[current], alpha=-2.0)
            torch.minimum(min_dist, dist, out=min_dist)
        else:
            dist = torch.addmv(sq_norms[candidates] + sq_norms[current], x[candidates], x[current], alpha=-2.0)
            min_dist[candidates] = torch.minimum(min_dist[candidates], dist)
        min_dist[current] = -1.0  # never chosen twice, even among exact duplicates
        current = torch.argmax(min_dist)
    return chosen


def greedy_k_center_plain(features: torch.Tensor, n: int, start: int = 0, progress: Progress = False) -> torch.Tensor:
    """The reference version of :func:`greedy_k_center`: every distance at every step."""
    return greedy_k_center(features, n, start, progress, bound_dims=0)


def coverage_radius(features: torch.Tensor, centres: torch.Tensor) -> float:
    """The k-center objective: the largest distance from a point of ``features`` to its nearest centre."""
    dist, _ = blocked_knn(features, centres.to(features.device, features.dtype), 1, block=(4096, 4096),
                          with_indices=False)
    return float(dist.max())


def _principal_basis(x: torch.Tensor, k: int, sample: int = 20000, seed: int = 0) -> torch.Tensor:
    """``(D, k)`` orthonormal columns spanning the top principal directions of (a sample of) ``x``."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(x.shape[0], generator=gen)[:sample].to(x.device)
    sub = x[pick].double()
    _, _, vh = torch.linalg.svd(sub - sub.mean(dim=0), full_matrices=False)
    return vh[:k].T.contiguous().to(x.dtype)


class GreedyCoresetSampler:
    """Keeps a fraction of the memory bank with greedy k-center selection.

    Parameters
    ----------
    fraction:
        Share of the points to keep, in ``(0, 1]``; 1 keeps everything.
    projection_dim:
        Dimensions of the random projection the distances are computed on
        (0 disables the projection).
    seed:
        Seeds the projection and the first point.
    """

    def __init__(self, fraction: float = 0.1, projection_dim: int = 128, seed: int = 0, progress: Progress = True) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"coreset fraction must be in (0, 1], got {fraction}")
        self.fraction = float(fraction)
        self.projection_dim = int(projection_dim)
        self.seed = int(seed)
        self.progress = progress

    def select(self, features: torch.Tensor, n: int | None = None) -> torch.Tensor:
        """Indices of the points to keep, ``(n,)`` int64: ``n`` of them, by default the fraction's share."""
        total = features.shape[0]
        n = max(1, int(round(self.fraction * total))) if n is None else int(n)
        if n >= total:
            return torch.arange(total, device=features.device)
        projected = random_projection(features, self.projection_dim, self.seed)
        start = int(torch.randint(total, (1,), generator=torch.Generator().manual_seed(self.seed)))
        log.info("coreset: choosing %d of %d points (%d dims)", n, total, projected.shape[1])
        return greedy_k_center(projected, n, start, progress=self.progress)

    def extend(self, centres: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Indices of new points to keep, continuing the greedy selection from ``centres``.

        Keeps the same fraction of ``features`` as :meth:`select` would, each
        step taking the point farthest from all centres, old and new.
        """
        total = features.shape[0]
        n = max(1, int(round(self.fraction * total)))
        if n >= total:
            return torch.arange(total, device=features.device)
        projected = random_projection(features, self.projection_dim, self.seed)
        old = random_projection(centres.to(features.device, features.dtype), self.projection_dim, self.seed)
        sq_dist = blocked_knn(projected, old, 1, block=(4096, 4096), with_indices=False)[0][:, 0].square()
        return greedy_k_center(projected, n, progress=self.progress, initial_sq_dist=sq_dist)
