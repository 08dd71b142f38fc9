"""Memory banks: greedy k-center coreset selection and nearest-neighbour search."""

from .coreset import GreedyCoresetSampler, greedy_k_center, greedy_k_center_plain, random_projection
from .nearest import FaissNearestNeighbors, NearestNeighbors, TorchNearestNeighbors, default_searcher, knn_distances

__all__ = [
    "FaissNearestNeighbors",
    "GreedyCoresetSampler",
    "NearestNeighbors",
    "TorchNearestNeighbors",
    "default_searcher",
    "greedy_k_center",
    "greedy_k_center_plain",
    "knn_distances",
    "random_projection",
]
