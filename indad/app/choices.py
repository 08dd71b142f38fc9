"""The app's settings: backbones and methods offered, their parameters, what the model sees of an image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backbones import OFFLINE_BACKBONES
from ..config import load_config
from ..data.tiles import Tiling, tile_origins
from ..errors import ConfigError
from ..methods import METHODS, AnomalyModel

MIN_GOOD_IMAGES = 3
HOLDOUT_MIN_IMAGES = 10  # fewer good images than this: all train, no thresholds from a holdout
HOLDOUT = 0.1
ONLINE_BACKBONES = ("wide_resnet50_2", "resnet18", "resnet50", "efficientnet_b4")
NEEDS_INTERNET = " (needs internet)"


# ----------------------------------------------------------------- settings
def backbone_choices() -> list[str]:
    """Backbone labels: the offline ones first, the others marked as needing internet."""
    return list(OFFLINE_BACKBONES) + [name + NEEDS_INTERNET for name in ONLINE_BACKBONES]


def backbone_name(label: str) -> str:
    """The timm name behind a label of :func:`backbone_choices`."""
    return label.removesuffix(NEEDS_INTERNET)


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter the sidebar offers."""

    name: str
    label: str
    low: float
    high: float
    step: float
    help: str


MAIN_PARAMS: dict[str, tuple[ParamSpec, ...]] = {
    "patchcore": (
        ParamSpec(
            "f_coreset",
            "Coreset fraction",
            0.001,
            1.0,
            0.001,
            "Share of the training patches kept in the memory bank; more is slower and a little more accurate.",
        ),
        ParamSpec(
            "n_reweight",
            "Re-weighting neighbours",
            0,
            9,
            1,
            "Neighbours of the re-weighting of the paper's image score; 0 turns it off.",
        ),
    ),
    "padim": (
        ParamSpec(
            "d_reduced",
            "Channels kept",
            10,
            400,
            10,
            "Random channels kept per position for the Gaussian; more is slower and uses more memory.",
        ),
    ),
    "spade": (
        ParamSpec("k", "Nearest images (k)", 1, 50, 1, "Training images the image score averages over."),
        ParamSpec("kappa", "Nearest pixels (kappa)", 1, 10, 1, "Gallery features each pixel score averages over."),
    ),
}
COMMON_PARAMS = (
    ParamSpec(
        "image_size",
        "Image size (px)",
        64,
        2048,
        32,
        "The working size: every image is resized to it (tiles are cut from it).",
    ),
    ParamSpec("blur_sigma", "Map blur (sigma, px)", 0.0, 16.0, 0.5, "Gaussian blur of the anomaly maps."),
)


TILE_SIZE, TILE_OVERLAP = 128, 16  # where the sidebar's tile settings start


def shape_params(image_size: int, resize: str, tile_size: int | None = None, overlap: int = 0) -> dict[str, Any]:
    """The model parameters saying how an image meets the network: resize mode and tiles.

    Parameters
    ----------
    image_size:
        The working size every image is resized to (the tiles are cut from it).
    resize:
        One of :data:`~indad.data.transforms.RESIZE_MODES` (``"fit"`` keeps the aspect ratio).
    tile_size, overlap:
        Square tiles of ``tile_size`` pixels sharing ``overlap`` pixels; None: untiled.

    Raises
    ------
    InputError
        An unknown resize mode, a tile larger than the working size, an overlap not smaller than the tile.
    """
    # the model's own checks, before any training starts
    AnomalyModel.param_rules()["resize"].check("resize", resize)
    if tile_size is None:
        return {"resize": resize, "tile": None}
    tile = {"size": int(tile_size), "overlap": int(overlap)}
    tiling = Tiling.parse(tile)
    assert tiling is not None
    tile_origins((image_size, image_size), tiling)
    return {"resize": resize, "tile": tile}


def shape_summary(model: AnomalyModel) -> str:
    """How ``model`` sees an image, in words: ``"fit into 256x256, tiles of 128x128 (overlap 16)"``."""
    height, width = model.preprocess.output_size
    words = f"{model.preprocess.mode} into {width}x{height}"
    if model.tiling is not None:
        th, tw = model.tiling.size
        words += f", tiles of {tw}x{th} (overlap {model.tiling.overlap})"
    return words + (", a region of interest" if model.roi_mask is not None else "")


def default_params(method: str) -> dict[str, Any]:
    """The method's shipped config (``indad/configs/METHOD.yaml``) as parameters."""
    return dict(load_config(method, method)["params"])


APP_METHODS = tuple(m for m in MAIN_PARAMS if m in METHODS)
"""The methods the sidebar offers: not the ensemble, whose backbone and image size are per member (CLI, configs)."""


def param_specs(method: str) -> tuple[ParamSpec, ...]:
    """The hyperparameters offered for ``method``: its own, then the shared ones."""
    if method not in APP_METHODS:
        raise ConfigError(f"unknown method {method!r} in the app; known: {', '.join(APP_METHODS)}")
    return MAIN_PARAMS[method] + COMMON_PARAMS


VARIATION_SPECS = (
    ParamSpec("brightness", "Brightness (+-)", 0.0, 0.5, 0.05, "Lamp or exposure drift: pixel values times 1 +- this."),
    ParamSpec("rotate", "Rotation (+- degrees)", 0.0, 15.0, 1.0, "How far a part may turn in its fixture."),
    ParamSpec("shift", "Shift (+- px)", 0.0, 32.0, 1.0, "How far a part may move, in pixels of the working image."),
    ParamSpec("blur", "Blur (sigma, px)", 0.0, 3.0, 0.25, "Focus changes: a Gaussian blur up to this sigma."),
    ParamSpec("jpeg", "JPEG quality (0: off)", 0.0, 95.0, 5.0, "Images saved as JPEG at this quality or better."),
)
"""The expected variation the sidebar offers (every key: :mod:`indad.data.variation`); 0 is off."""


def robust_params(variation: dict[str, float], standardize: bool, align: bool = False) -> dict[str, Any]:
    """The model parameters of the sidebar's expected variation (0 values off), photometric standardisation and
    alignment to a reference good image (``align="reference"``).

    Raises :class:`~indad.errors.InputError` naming a bad value (the model's own check).
    """
    from ..data.variation import Variation

    changes = {k: (int(v) if k == "jpeg" else float(v)) for k, v in variation.items() if v}
    spec = Variation.parse(changes)
    return {
        "variation": None if spec is None else spec.to_dict(),
        "photometric": "standardize" if standardize else "none",
        "align": "reference" if align else "none",
    }
