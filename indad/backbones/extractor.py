"""A frozen timm CNN that returns the feature maps of chosen stages."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import BackboneError
from .weights import load_pretrained

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_backbone_name(name: str) -> None:
    """Raise :class:`BackboneError` naming ``name`` and similar names when timm has no such model."""
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:12]}*")[:8]
        raise BackboneError(
            f"unknown backbone {name!r}: not a timm model." + (f" Similar names: {', '.join(close)}." if close else "")
        )


def backbone_normalization(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The per-channel input ``(mean, std)`` the backbone's weights were trained with (no network is built)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    mean = getattr(cfg, "mean", None) or IMAGENET_MEAN
    std = getattr(cfg, "std", None) or IMAGENET_STD
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) is CUDA when present, else the CPU; anything else is taken as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BackboneError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackboneError(f"device {device!r} asked for, but CUDA is not available here")
    return dev


class Backbone(nn.Module):
    """Frozen ImageNet CNN from timm, cut after the deepest stage it is asked for.

    Parameters
    ----------
    name:
        A timm model name, e.g. ``"tf_efficientnet_lite0"`` or ``"wide_resnet50_2"``.
    strides:
        Output strides of the stages to return (e.g. ``(8, 16)``). For each stride
        the deepest stage at that resolution is used.
    weights:
        Optional explicit weight file; see :func:`indad.backbones.weights.load_pretrained`.
    fp16:
        Run the network in half precision with autocast (CUDA only).

    Attributes
    ----------
    mean, std:
        The input normalisation the weights were trained with (a property of the
        backbone, not a global constant).
    channels:
        Channel count of each returned map.
    weights_source, fingerprint:
        Where the weights came from and a short hash of them.
    """

    def __init__(
        self,
        name: str,
        strides: Sequence[int],
        weights: str | os.PathLike | None = None,
        fp16: bool = False,
    ) -> None:
        super().__init__()
        import timm

        check_backbone_name(name)
        # timm's random initialisation and the weight sources draw from torch's generator: leave the caller's alone
        with torch.random.fork_rng(devices=[]):
            model: Any = timm.create_model(name, pretrained=False)  # a timm network: feature_info, forward_intermediates
            if not hasattr(model, "forward_intermediates") or not getattr(model, "feature_info", None):
                raise BackboneError(
                    f"backbone {name!r} cannot return intermediate feature maps through timm; choose a CNN "
                    "such as tf_efficientnet_lite0 or wide_resnet50_2"
                )
            self.weights_source = load_pretrained(model, name, weights)

        info = model.feature_info
        available = [int(f["reduction"]) for f in info]
        indices = []
        for s in strides:
            matches = [i for i, r in enumerate(available) if r == int(s)]
            if not matches:
                raise BackboneError(f"backbone {name!r} has no stage at stride {s}; its strides are {available}")
            indices.append(matches[-1])
        if indices != sorted(set(indices)):
            raise BackboneError(f"strides {list(strides)} must be distinct and increasing")
        # Drop every stage after the deepest one used, and the head: same outputs, less work.
        model.prune_intermediate_layers(indices=indices, prune_head=True, prune_norm=True)
        model.eval().requires_grad_(False)

        self.name = name
        self.model = model
        self.indices = indices
        self.strides = tuple(int(s) for s in strides)
        self.channels = tuple(int(info[i]["num_chs"]) for i in indices)
        self.mean, self.std = backbone_normalization(name)
        self.fp16 = bool(fp16)
        self.fingerprint = state_fingerprint(model)

    def train(self, mode: bool = True) -> Backbone:
        """The backbone stays in eval mode (frozen batch-norm statistics)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps, one per requested stride, for a normalised batch ``(B, 3, H, W)``."""
        use_amp = self.fp16 and x.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            feats = self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True)
        return [f.float() for f in feats]


def state_fingerprint(model: nn.Module) -> str:
    """A short SHA-256 of a model's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
