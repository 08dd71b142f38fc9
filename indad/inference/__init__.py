"""Using a fitted model: scoring folders of images and drawing heatmaps, overlays and masks."""

from .folder import predict_folder
from .scorer import Scorer, TorchScorer, open_scorer
from .visualize import heatmap_image, map_to_original, mask_image, overlay_image

__all__ = [
    "Scorer",
    "TorchScorer",
    "heatmap_image",
    "map_to_original",
    "mask_image",
    "open_scorer",
    "overlay_image",
    "predict_folder",
]
