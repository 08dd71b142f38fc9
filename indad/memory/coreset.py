"""Greedy k-center coreset selection (Roth et al. 2021, Algorithm 1) on randomly projected features."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..progress import Progress, ProgressBar, progress_bar
from .nearest import blocked_knn

log = logging.getLogger(__name__)


def random_projection(features: torch.Tensor | Sequence[torch.Tensor], dim: int, seed: int = 0) -> torch.Tensor:
    """Features projected to ``dim`` dimensions by a seeded Gaussian random projection.

    ``features`` is an ``(N, D)`` tensor, returned unchanged when ``D <= dim``, or
    a sequence of row chunks, whose projections (or, when ``D <= dim``, float32
    copies) are written into one new float32 ``(N, dim)`` tensor: the chunks may
    be float16, the whole bank is never held twice in float32. The projection
    matrix comes from scikit-learn's ``GaussianRandomProjection``; the product is
    computed by torch on the features' device.
    """
    if isinstance(features, torch.Tensor):
        n_features = features.shape[1]
        if dim <= 0 or n_features <= dim:
            return features
        return features @ _projection_matrix(n_features, dim, seed).to(features.device, features.dtype).T
    chunks = list(features)
    n_features = chunks[0].shape[1]
    out_dims = n_features if dim <= 0 or n_features <= dim else dim
    matrix = None if out_dims == n_features else _projection_matrix(n_features, dim, seed).to(chunks[0].device).T
    out = torch.empty(sum(len(c) for c in chunks), out_dims, dtype=torch.float32, device=chunks[0].device)
    row = 0
    for chunk in chunks:
        out[row : row + len(chunk)] = chunk.float() if matrix is None else chunk.float() @ matrix
        row += len(chunk)
    return out


def take_rows(chunks: Sequence[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (in that order) of the concatenation of ``chunks``, without concatenating them."""
    out = chunks[0].new_empty(len(index), chunks[0].shape[1])
    start = 0
    for chunk in chunks:
        inside = ((index >= start) & (index < start + len(chunk))).nonzero().squeeze(1)
        out[inside] = chunk[index[inside] - start]
        start += len(chunk)
    return out


def _projection_matrix(n_features: int, dim: int, seed: int) -> torch.Tensor:
    """``(dim, n_features)`` float32 Gaussian random projection matrix of scikit-learn."""
    from sklearn.random_projection import GaussianRandomProjection

    rp = GaussianRandomProjection(n_components=dim, random_state=seed)
    rp.fit(np.zeros((1, n_features), dtype=np.float32))
    return torch.from_numpy(np.asarray(rp.components_, dtype=np.float32))


def _sq_norms(x: torch.Tensor, block: int = 1 << 16) -> torch.Tensor:
    """``(N,)`` squared norms of the rows, summed in blocks of rows (no ``N x D`` temporary)."""
    return torch.cat([(b * b).sum(dim=1) for b in x.split(block)])


def greedy_k_center(
    features: torch.Tensor,
    n: int,
    start: int = 0,
    progress: Progress = False,
    bound_dims: int = 16,
    initial_sq_dist: torch.Tensor | None = None,
    hot_share: float = 0.8,
) -> torch.Tensor:
    """Greedy k-center selection (Roth et al. 2021, Algorithm 1) with pruned distance updates.

    Starting from ``start``, each step adds the point farthest from every point
    chosen so far (ties: the lowest index). A point's distance to its nearest
    centre only changes when a new centre is closer than that distance, and
    the distance in the top principal directions is a lower bound of the full
    distance (an orthogonal projection never lengthens a vector). Only the
    "hot" points, whose distance is at least a threshold, are updated at every
    step (their bound in ``bound_dims`` dimensions first, the full distance for
    those it does not rule out); the others cannot be the farthest until the
    farthest distance falls below the threshold, and then catch up on the
    centres they missed in blocks (a ``4 * bound_dims`` dimensional bound by
    matrix product, the full distance for the pairs it does not rule out)
    before the threshold is lowered.

    With ``bound_dims=0`` every distance is computed at every step (the plain
    version). On points whose float32 distances are exact (integer points of
    small norm) both versions give identical indices; on other points both are
    subject to float rounding, which may order two near-tied points differently
    (the two versions sum some dot products in different orders).

    Parameters
    ----------
    features:
        ``(N, D)`` points.
    n:
        How many to choose, ``1 <= n <= N``.
    start:
        Index of the first point.
    bound_dims:
        Dimensions of the principal subspace used for the per-step bound; 0 (or
        ``>= D/2``) computes every distance at every step (the plain version).
    initial_sq_dist:
        ``(N,)`` squared distance of each point to centres chosen before (from
        other points): the selection continues from them, and ``start`` is
        ignored (the first point is the farthest one).
    hot_share:
        The threshold, as a share of the largest squared distance when it is set.

    Returns
    -------
    torch.Tensor
        ``(n,)`` int64 indices in the order they were chosen.
    """
    total, dims = features.shape
    if not 1 <= n <= total:
        raise InputError(f"cannot choose {n} of {total} points")
    if not bool(torch.isfinite(features).all()):
        raise InputError("coreset features contain NaN or infinite values")
    with progress_bar("coreset", n, progress, mininterval=1.0) as bar:
        if 0 < bound_dims < dims // 2:
            first = start if initial_sq_dist is None else None  # else the farthest point
            return _HotColdGreedy(features, bound_dims, initial_sq_dist).run(n, first, hot_share, bar)
        return _plain_greedy(features, n, start, initial_sq_dist, bar)


def _initial_distances(x: torch.Tensor, initial_sq_dist: torch.Tensor | None) -> torch.Tensor:
    if initial_sq_dist is None:
        return torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)
    return initial_sq_dist.to(x.device, x.dtype).clone()


def _plain_greedy(
    x: torch.Tensor, n: int, start: int, initial_sq_dist: torch.Tensor | None, bar: ProgressBar
) -> torch.Tensor:
    """Every squared distance to every new centre: ``|x|^2 - 2 x.c + |c|^2``, one matrix-vector product a step."""
    sq_norms = _sq_norms(x)
    min_dist = _initial_distances(x, initial_sq_dist)
    if initial_sq_dist is None:
        current = torch.tensor(start, dtype=torch.long, device=x.device)
    else:
        current = torch.argmax(min_dist)
    chosen = torch.empty(n, dtype=torch.long, device=x.device)
    for i in range(n):
        chosen[i] = current
        dist = torch.addmv(sq_norms + sq_norms[current], x, x[current], alpha=-2.0)
        torch.minimum(min_dist, dist, out=min_dist)
        min_dist[current] = -1.0  # never chosen twice, even among exact duplicates
        current = torch.argmax(min_dist)
        bar.update(1)
    return chosen


class _HotColdGreedy:
    """State of the pruned greedy selection: every point's squared distance to its nearest centre.

    ``min_dist`` is exact for the hot points (kept, with their features, in the
    ``hot_*`` copies) and an upper bound for the cold ones, which have folded in
    the first ``stamp`` centres only. Every cold value is below ``threshold``.
    """

    row_block, centre_block, pair_block = 4096, 1024, 1 << 16

    def __init__(self, x: torch.Tensor, bound_dims: int, initial_sq_dist: torch.Tensor | None) -> None:
        total, dims = x.shape
        self.x = x
        self.sq = _sq_norms(x)
        basis = _principal_basis(x, min(4 * bound_dims, dims))
        self.w = x @ basis  # the catch-up bound's coordinates
        self.w_sq = _sq_norms(self.w)
        self.z = x @ basis[:, :bound_dims]  # the step bound's: the first principal directions
        self.z_sq = _sq_norms(self.z)
        # Slack on the bounds' comparisons absorbs their rounding: no true update is missed.
        self.slack = 1e-4 * (self.sq + self.sq.max())
        self.min_dist = _initial_distances(x, initial_sq_dist)
        self.stamp = torch.zeros(total, dtype=torch.long, device=x.device)
        self.threshold = float("-inf")
        self._heat(torch.arange(total, device=x.device))

    def _heat(self, hot: torch.Tensor) -> None:
        """Make ``hot`` (ascending indices, all up to date) the hot set: copies of its rows, or the whole arrays."""
        self.hot = hot
        if hot.numel() == self.x.shape[0]:
            self.hot_z, self.hot_z_sq, self.hot_x, self.hot_sq = self.z, self.z_sq, self.x, self.sq
            self.hot_slack, self.hot_dist = self.slack, self.min_dist
            return
        self.hot_z, self.hot_z_sq, self.hot_x, self.hot_sq = self.z[hot], self.z_sq[hot], self.x[hot], self.sq[hot]
        self.hot_slack, self.hot_dist = self.slack[hot], self.min_dist[hot]

    def run(self, n: int, start: int | None, hot_share: float, bar: ProgressBar) -> torch.Tensor:
        self.chosen = torch.empty(n, dtype=torch.long, device=self.x.device)
        pos = start  # None: the farthest point
        i = 0
        while i < n:
            if pos is None:
                pos = int(torch.argmax(self.hot_dist))  # the first of the ties: the lowest index
                if float(self.hot_dist[pos]) < self.threshold:  # a cold point may be farther
                    self._cool(i, hot_share)
                    pos = None
                    continue
            self.chosen[i] = self.hot[pos]
            self._step(pos)
            i += 1
            bar.update(1)
            pos = None
            if i == 1 and n > 1:  # every distance is exact now: set the first threshold
                self._cool(i, hot_share)
        return self.chosen

    def _step(self, pos: int) -> None:
        """Fold the hot point at ``pos``, the new centre, into the hot distances."""
        c = self.hot[pos]
        bound = torch.addmv(self.hot_z_sq + self.z_sq[c], self.hot_z, self.z[c], alpha=-2.0)
        candidates = (bound <= self.hot_dist + self.hot_slack).nonzero().squeeze(1)
        near = slice(None) if candidates.numel() > self.hot.numel() // 2 else candidates
        dist = torch.addmv(self.hot_sq[near] + self.sq[c], self.hot_x[near], self.x[c], alpha=-2.0)
        self.hot_dist[near] = torch.minimum(self.hot_dist[near], dist)
        self.hot_dist[pos] = -1.0  # never chosen twice, even among exact duplicates

    def _cool(self, done: int, share: float) -> None:
        """Lower the threshold to ``share`` of the largest distance; the points at or above it catch up and are hot."""
        if self.hot_dist is not self.min_dist:
            self.min_dist[self.hot] = self.hot_dist
        self.stamp[self.hot] = done
        while True:
            farthest = float(self.min_dist.max())  # cold values: upper bounds
            # Rounded to the distances' precision, so that comparing it with them is exact everywhere.
            threshold = float(torch.tensor(share * farthest if farthest > 0 else -0.5, dtype=self.min_dist.dtype))
            stale = ((self.min_dist >= threshold) & (self.stamp < done)).nonzero().squeeze(1)
            for rows in stale.split(self.row_block) if stale.numel() else ():
                self._catch_up(rows, done)
            self.stamp[stale] = done
            hot = (self.min_dist >= threshold).nonzero().squeeze(1)  # all up to date now
            if hot.numel():
                self.threshold = threshold
                self._heat(hot)
                return

    def _catch_up(self, rows: torch.Tensor, done: int) -> None:
        """Fold the centres ``rows`` missed (of the first ``done``) into their distances."""
        w, w_sq, slack = self.w[rows], self.w_sq[rows, None], self.slack[rows]
        for lo in range(int(self.stamp[rows].min()), done, self.centre_block):
            centres = self.chosen[lo : min(done, lo + self.centre_block)]
            bound = torch.addmm(w_sq + self.w_sq[centres], w, self.w[centres].T, alpha=-2.0)
            r, c = (bound <= (self.min_dist[rows] + slack)[:, None]).nonzero(as_tuple=True)
            for pr, pc in zip(rows[r].split(self.pair_block), centres[c].split(self.pair_block), strict=True):
                dot = (self.x[pr] * self.x[pc]).sum(dim=1)
                self.min_dist.scatter_reduce_(0, pr, self.sq[pr] + self.sq[pc] - 2.0 * dot, "amin")


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

    The selection runs on the float32 projections as they are. (Rounded to an
    integer grid on which every float32 distance is exact, it would be
    bit-identical to the plain version, but that grid's rounding, at 181 levels a
    coordinate, cost 0.7 point of image ROC AUC on MTD: 0.9695 against 0.9767.)
    """

    def __init__(
        self, fraction: float = 0.1, projection_dim: int = 128, seed: int = 0, progress: Progress = True
    ) -> None:
        if not 0 < fraction <= 1:
            raise InputError(f"coreset fraction must be in (0, 1], got {fraction}")
        self.fraction = float(fraction)
        self.projection_dim = int(projection_dim)
        self.seed = int(seed)
        self.progress = progress

    def select(self, features: torch.Tensor | Sequence[torch.Tensor], n: int | None = None) -> torch.Tensor:
        """Indices of the points to keep, ``(n,)`` int64: ``n`` of them, by default the fraction's share.

        ``features``: an ``(N, D)`` tensor or a sequence of row chunks of one (float16 is fine).
        """
        chunks = [features] if isinstance(features, torch.Tensor) else list(features)
        total = sum(len(c) for c in chunks)
        n = max(1, round(self.fraction * total)) if n is None else int(n)
        if n >= total:
            return torch.arange(total, device=chunks[0].device)
        projected = random_projection(chunks, self.projection_dim, self.seed)
        start = int(torch.randint(total, (1,), generator=torch.Generator().manual_seed(self.seed)))
        log.info("coreset: choosing %d of %d points (%d dims)", n, total, projected.shape[1])
        return greedy_k_center(projected, n, start, progress=self.progress)

    def extend(self, centres: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Indices of new points to keep, continuing the greedy selection from ``centres``.

        Keeps the same fraction of ``features`` as :meth:`select` would, each
        step taking the point farthest from all centres, old and new.
        """
        total = features.shape[0]
        n = max(1, round(self.fraction * total))
        if n >= total:
            return torch.arange(total, device=features.device)
        projected = random_projection(features, self.projection_dim, self.seed)
        old = random_projection(centres.to(features.device, features.dtype), self.projection_dim, self.seed)
        sq_dist = blocked_knn(projected, old, 1, block=(4096, 4096), with_indices=False)[0][:, 0].square()
        return greedy_k_center(projected, n, progress=self.progress, initial_sq_dist=sq_dist)
