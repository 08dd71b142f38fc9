"""A frozen timm CNN that returns the feature maps of chosen stages."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import BackboneError
from .weights import load_pretrained

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime")
"""How a backbone runs its forward pass: eager torch, or an ONNX Runtime session of the same network (CPU)."""

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
    runtime:
        ``"torch"`` (eager), or ``"onnxruntime"``: on the CPU the forward pass runs
        through an ONNX Runtime session of the same pruned network, exported once
        per backbone (in memory) and checked against torch on its first call;
        on CUDA, while tracing or exporting, and when ONNX Runtime is missing or
        disagrees with torch, the forward pass is torch's.

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
        runtime: str = "torch",
    ) -> None:
        super().__init__()
        import timm

        if runtime not in RUNTIMES:
            raise BackboneError(f"unknown backbone runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")

        check_backbone_name(name)
        # timm's random initialisation and the weight sources draw from torch's generator: leave the caller's alone
        with torch.random.fork_rng(devices=[]):
            model: Any = timm.create_model(
                name, pretrained=False
            )  # a timm network: feature_info, forward_intermediates
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
        self.runtime = runtime
        self._sessions: dict[tuple[int, int], Any] = {}  # ONNX Runtime sessions by input size, made on first use
        self._session_failed = False

    def train(self, mode: bool = True) -> Backbone:
        """The backbone stays in eval mode (frozen batch-norm statistics)."""
        return super().train(False)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (e.g. sent to a Ray worker): the ONNX Runtime session is made again where it is used."""
        state = self.__dict__.copy()
        state["_sessions"] = {}
        return state

    def _uses_onnxruntime(self, x: torch.Tensor, runtime: str) -> bool:
        if runtime != "onnxruntime" or self._session_failed or x.device.type != "cpu" or x.requires_grad:
            return False
        tracing = torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
        return not (tracing or torch.onnx.is_in_onnx_export())

    @torch.no_grad()
    def forward(self, x: torch.Tensor, runtime: str | None = None) -> list[torch.Tensor]:
        """Feature maps, one per requested stride, for a normalised batch ``(B, 3, H, W)``.

        ``runtime`` (one of :data:`RUNTIMES`) runs this call on it; None: on :attr:`runtime`.
        """
        if self._uses_onnxruntime(x, runtime or self.runtime):
            size = (int(x.shape[-2]), int(x.shape[-1]))
            if size not in self._sessions:
                self._sessions[size] = self._make_session(x)
            session = self._sessions[size]
            if session is not None:
                outputs = session.run(None, {"images": x.detach().float().contiguous().numpy()})
                return [torch.from_numpy(o) for o in outputs]
        return self._torch_forward(x)

    def _torch_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        use_amp = self.fp16 and x.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            feats = self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True)
        return [f.float() for f in feats]

    def _make_session(self, example: torch.Tensor, tolerance: float = 1e-3) -> Any:
        """An ONNX Runtime session of the network, or None (torch is used) when it cannot be made or disagrees."""
        try:
            session = onnxruntime_session(self, example.shape[-2:])
            probe = example[:1].detach().float().contiguous()
            got = session.run(None, {"images": probe.numpy()})
            want = self._torch_forward(probe)
            scale = max(1.0, max(float(w.abs().max()) for w in want))
            err = max(float((torch.from_numpy(g) - w).abs().max()) for g, w in zip(got, want, strict=True))
            if err > tolerance * scale:
                raise RuntimeError(f"ONNX Runtime features differ from torch's by {err:.3g} (scale {scale:.3g})")
            return session
        except Exception as exc:  # any failure falls back to torch, with the reason logged
            self._session_failed = True
            log.warning("backbone %s: ONNX Runtime not used (%s); running torch", self.name, exc)
            return None


class _Intermediates(nn.Module):
    """The pruned network as a plain module returning its feature maps as a tuple (what the ONNX export traces)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.model = backbone.model
        self.indices = backbone.indices

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True))


def onnxruntime_session(backbone: Backbone, size: Sequence[int], threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of ``backbone``'s network (input ``images``, dynamic batch), exported in memory."""
    import onnxruntime as ort

    buffer = io.BytesIO()
    names = [f"stride{s}" for s in backbone.strides]
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        example = torch.zeros(1, 3, int(size[0]), int(size[1]))
        torch.onnx.export(
            _Intermediates(backbone).eval(),
            (example,),
            buffer,  # type: ignore[arg-type]
            input_names=["images"],
            output_names=names,
            dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
            opset_version=17,
            dynamo=False,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep, as OMP PASSIVE
    options.log_severity_level = 3
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def state_fingerprint(model: nn.Module) -> str:
    """A short SHA-256 of a model's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
