"""Memory banks: greedy k-center coreset selection and nearest-neighbour search."""

from .coreset import (
    GreedyCoresetSampler,
    greedy_k_center,
    random_projection,
    take_rows,
)
from .nearest import (
    FaissNearestNeighbors,
    HnswNearestNeighbors,
    NearestNeighbors,
    TorchNearestNeighbors,
    blocked_knn,
    default_searcher,
)

__all__ = [
    "FaissNearestNeighbors",
    "GreedyCoresetSampler",
    "HnswNearestNeighbors",
    "NearestNeighbors",
    "TorchNearestNeighbors",
    "blocked_knn",
    "default_searcher",
    "greedy_k_center",
    "random_projection",
    "take_rows",
]
