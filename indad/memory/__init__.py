"""Memory banks: greedy k-center coreset selection and nearest-neighbour search."""

from .coreset import (
    GreedyCoresetSampler,
    coverage_radius,
    exact_grid,
    greedy_k_center,
    greedy_k_center_plain,
    random_projection,
    take_rows,
)
from .nearest import FaissNearestNeighbors, NearestNeighbors, TorchNearestNeighbors, blocked_knn, default_searcher

__all__ = [
    "FaissNearestNeighbors",
    "GreedyCoresetSampler",
    "NearestNeighbors",
    "TorchNearestNeighbors",
    "blocked_knn",
    "coverage_radius",
    "default_searcher",
    "exact_grid",
    "greedy_k_center",
    "greedy_k_center_plain",
    "random_projection",
    "take_rows",
]
