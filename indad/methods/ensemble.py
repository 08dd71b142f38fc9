"""Ensemble: several fitted methods score the same images; their image scores and anomaly maps are averaged.

The default members are PatchCore on ``tf_efficientnet_lite0`` at 256 and at
320 px, the best pair measured (docs/accuracy.md).

The ensemble is one method of the protocol (:mod:`.base`), built from others:

- fit: every member sees the same images, each preprocessed at its own size from
  the source (each member reads the images itself: a folder is read once per
  member). :meth:`Ensemble.fit_batches` yields member 0's batches, then member
  1's...; each batch says whose it is, and :meth:`Ensemble.partial_fit_state`
  hands each member its own run of batches.
- state: the members' states under prefixes (``m0/memory_bank``, ``m1/...``),
  each member's plain values and backbone fingerprint in the meta.
- scoring: the ensemble's working size, normalisation and resize mode are those
  of its *reference member*, the largest (the first of equal sizes). The
  scoring module takes that member's input, resizes it bilinearly to each other
  member's size (and renormalises it to that member's backbone), and returns the
  mean of the image scores and the mean of the maps, each brought to the working
  size: one input per image, the same in Python, the CLI, the service and an
  exported graph (what resizing the input costs against each member reading the
  file: docs/accuracy.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..backbones import Backbone
from ..data.transforms import as_size
from ..errors import InputError, ModelFileError
from .base import NATIVE, RUNTIME_PARAMS, AnomalyModel, Batch, ModelState, Tensors
from .registry import METHODS, check_fingerprint, register

DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"method": "patchcore", "image_size": 256},
    {"method": "patchcore", "image_size": 320},
)
"""The default members: PatchCore on lite0 at 256 and 320 px (the best pair measured: docs/accuracy.md)."""
FUSIONS = ("mean",)
MEMBER_KEY = "member"
"""The key of an ensemble fit batch that says which member's batch it is."""
# The ensemble's own shape parameters are its reference member's; these must stay at their defaults.
PER_MEMBER = ("tile", "blur_sigma", "fp16", "backbone_runtime", "fit_runtime", "weights")
DERIVED = ("backbone_name", "strides", "image_size", "crop_size", "resize")


def _prefix(i: int) -> str:
    return f"m{i}/"


def build_member(i: int, spec: Any, seed: int, runtime: dict[str, Any]) -> AnomalyModel:
    """Member ``i`` of an ensemble from its spec ``{"method": name, **params}``.

    ``runtime`` (device, progress, number of workers) is the ensemble's; ``seed``
    is used unless the spec sets one. Raises :class:`~indad.errors.InputError`
    naming the member and the bad value.
    """
    where = f"ensemble: members[{i}]"
    if not isinstance(spec, dict) or "method" not in spec:
        raise InputError(f"{where} must be a mapping with a 'method' key, got {spec!r}")
    params = dict(spec)
    name = params.pop("method")
    if name == Ensemble.method:
        raise InputError(f"{where}: an ensemble cannot be a member of an ensemble")
    if name not in METHODS:
        known = ", ".join(m for m in METHODS if m != Ensemble.method)
        raise InputError(f"{where}: unknown method {name!r} (known: {known})")
    cls = METHODS[name]
    defaults = cls.param_defaults()
    unknown = [k for k in params if k not in defaults]
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for {name}")
    for key in RUNTIME_PARAMS:
        if key in params:
            raise InputError(
                f"{where}: {key} is not set per member; "
                + (
                    "the members' weights come from the usual sources"
                    if key == "weights"
                    else f"set {key} on the ensemble"
                )
            )
    for key in ("variation", "photometric", "align"):
        if params.get(key) not in (None, {}, "none"):
            raise InputError(f"{where}: {key} is set on the ensemble, not in a member (it applies to every member)")
    for key, why in (
        ("tile", "tiles are not supported in an ensemble"),
        ("roi", "set the region of interest on the ensemble"),
        ("crop_size", "crops are not supported in an ensemble"),
    ):
        if params.get(key) is not None:
            raise InputError(f"{where}: {key}={params[key]!r} is not supported inside a member ({why})")
    if params.get("image_size") == NATIVE:
        raise InputError(f"{where}: image_size={NATIVE!r} is not supported in an ensemble (give a size)")
    params.setdefault("seed", seed)
    try:
        return cls(**params, **runtime)
    except InputError as exc:
        raise type(exc)(f"{where}: {exc}") from exc


def member_spec(model: AnomalyModel) -> dict[str, Any]:
    """Every hyperparameter of a member, as plain data (what an ensemble's model file keeps)."""
    return {"method": model.method, **{k: v for k, v in model.hparams().items() if k not in RUNTIME_PARAMS}}


def reference_index(models: Sequence[AnomalyModel]) -> int:
    """The member whose input the ensemble takes: the largest input, the first of equal ones."""
    areas = [m.input_size[0] * m.input_size[1] for m in models]
    return areas.index(max(areas))


def _same(name: str, value: Any, reference: Any) -> bool:
    """Whether two values of the shape parameter ``name`` say the same (``[256, 256]`` and ``256`` do)."""
    if value is None or reference is None:
        return value is None and reference is None
    if name in ("image_size", "crop_size"):
        return as_size(value, name) == as_size(reference, name)
    if name == "strides":
        return tuple(int(s) for s in value) == tuple(int(s) for s in reference)
    return bool(value == reference)


def _per_member_reason(name: str) -> str:
    if name == "tile":
        return "tiles are not supported in an ensemble"
    if name == "weights":
        return "an ensemble's members take their weights from the usual sources (cache, hub, PyPI packages)"
    return "not an ensemble setting: set it in its members"


def split_state(tensors: Tensors, count: int) -> list[Tensors]:
    """The ``m{i}/`` prefixed tensors of an ensemble's state, per member, prefixes removed."""
    out: list[Tensors] = [{} for _ in range(count)]
    for name, tensor in tensors.items():
        head, _, rest = name.partition("/")
        if not (head.startswith("m") and head[1:].isdigit() and int(head[1:]) < count and rest):
            raise ModelFileError(f"ensemble state: unexpected tensor {name!r} (expected m0/... to m{count - 1}/...)")
        out[int(head[1:])][rest] = tensor
    return out


def renormalisation(
    source: tuple[Sequence[float], Sequence[float]], target: tuple[Sequence[float], Sequence[float]]
) -> torch.Tensor:
    """``(2, 1, 3, 1, 1)`` scale and shift taking an input normalised by ``source`` (mean, std) to ``target``'s."""
    (m0, s0), (m1, s1) = (tuple(map(torch.tensor, p)) for p in (source, target))
    scale, shift = s0 / s1, (m0 - m1) / s1
    return torch.stack([scale, shift]).float().view(2, 1, 3, 1, 1)


class EnsembleModule(nn.Module):
    """Fitted members fused: normalised images at the working size -> (mean scores ``(B,)``, mean maps ``(B, H, W)``).

    Each member gets the input resized bilinearly to its own size and
    renormalised to its backbone; its map is resized bilinearly back to the
    working size. Only torch operations with fixed loop bounds: exportable when
    the members' modules are.
    """

    renorm: torch.Tensor

    def __init__(
        self,
        members: Sequence[nn.Module],
        sizes: Sequence[tuple[int, int]],
        working_size: tuple[int, int],
        renorms: Sequence[torch.Tensor | None],
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.sizes = [tuple(s) for s in sizes]
        self.working_size = tuple(working_size)
        self.renormalised = [r is not None for r in renorms]
        stacked = torch.stack([torch.zeros(2, 1, 3, 1, 1) if r is None else r for r in renorms])
        self.register_buffer("renorm", stacked)

    def member_input(self, i: int, images: torch.Tensor) -> torch.Tensor:
        """Member ``i``'s network input from the ensemble's."""
        x = images
        if self.renormalised[i]:
            x = x * self.renorm[i, 0] + self.renorm[i, 1]
        if self.sizes[i] != self.working_size:
            x = F.interpolate(x, size=self.sizes[i], mode="bilinear", align_corners=False)
        return x

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total_scores: torch.Tensor | None = None
        total_maps: torch.Tensor | None = None
        for i, member in enumerate(self.members):
            scores, maps = member(self.member_input(i, images))
            if self.sizes[i] != self.working_size:
                maps = F.interpolate(maps[:, None], size=self.working_size, mode="bilinear", align_corners=False)[:, 0]
            total_scores = scores.float() if total_scores is None else total_scores + scores.float()
            total_maps = maps.float() if total_maps is None else total_maps + maps.float()
        assert total_scores is not None and total_maps is not None
        n = float(len(self.members))
        return total_scores / n, total_maps / n


@register
@dataclass(eq=False, repr=False, kw_only=True)
class Ensemble(AnomalyModel):
    """Several methods (members) fitted on the same images; image scores and anomaly maps averaged.

    Parameters
    ----------
    members:
        One mapping per member: ``{"method": "patchcore", "image_size": 320, ...}``,
        a method name and any of its hyperparameters (defaults: the method's, and
        the ensemble's ``seed``). Not inside a member: another ensemble, ``tile``,
        ``roi`` (set it on the ensemble), ``crop_size``, ``image_size="native"``,
        and ``device``, ``progress``, ``num_workers``, ``weights`` (the
        ensemble's apply). Members must share ``resize``. Default: PatchCore on
        ``tf_efficientnet_lite0`` at 256 and at 320 px.
    fusion:
        ``"mean"``: the mean of the members' image scores, and the mean of their
        maps resized bilinearly to the working size.

    The working size, ``backbone_name`` (its normalisation), ``strides`` and
    ``resize`` are the reference member's (the largest input, the first of
    equal ones): the ensemble's own values of these follow it (any other value
    given is an error), as ``tile``, ``blur_sigma``, ``fp16``,
    ``backbone_runtime``, ``fit_runtime`` and ``weights`` must stay at their
    defaults: they are set per member. ``roi``, ``batch_size`` (images per
    scoring pass), ``device``, ``num_workers``, ``seed`` and ``progress`` are
    the ensemble's, as in :class:`~indad.methods.base.AnomalyModel`.

    Fitting reads the training images once per member, and costs the members'
    fits added up; scoring costs the members' scoring added up. Fit inputs must be
    images (a folder, paths, PIL images or arrays): a normalised tensor or a
    ready DataLoader has one size only.
    """

    method: ClassVar[str] = "ensemble"

    members: tuple[dict[str, Any], ...] | list[dict[str, Any]] = DEFAULT_MEMBERS
    fusion: str = "mean"

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise InputError(f"ensemble: fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        defaults = type(self).param_defaults()
        for name in PER_MEMBER:
            if getattr(self, name) != defaults[name]:
                raise InputError(f"ensemble: {name}={getattr(self, name)!r}: {_per_member_reason(name)}")
        self.member_models = self._build_members()
        reference = self.reference
        for name in DERIVED:
            value = getattr(self, name)
            ref = reference.stage_strides if name == "strides" else getattr(reference, name)
            if not (_same(name, value, defaults[name]) or _same(name, value, ref)):
                raise InputError(
                    f"ensemble: {name}={value!r} differs from its reference member's ({ref!r}): "
                    "the ensemble works at its largest member's size; set it in the members"
                )
            setattr(self, name, ref)
        self.members = [member_spec(m) for m in self.member_models]
        super().__post_init__()

    def _build_members(self) -> list[AnomalyModel]:
        if not isinstance(self.members, (list, tuple)) or not self.members:
            raise InputError(f"ensemble: members must be a non-empty list of mappings, got {self.members!r}")
        runtime = {"device": self.device, "progress": self.progress, "num_workers": self.num_workers}
        models = [build_member(i, spec, int(self.seed), runtime) for i, spec in enumerate(self.members)]
        modes = {m.resize for m in models}
        if len(modes) > 1:
            raise InputError(f"ensemble: the members must share resize, got {', '.join(sorted(map(str, modes)))}")
        if modes == {"fit"} and len({round(m.input_size[0] / m.input_size[1], 6) for m in models}) > 1:
            raise InputError('ensemble: with resize="fit" the members\' sizes must share one aspect ratio')
        return models

    @property
    def reference(self) -> AnomalyModel:
        """The member whose input the ensemble takes (the largest; see the class docstring)."""
        return self.member_models[reference_index(self.member_models)]

    @property
    def backbone(self) -> Backbone:
        """The reference member's backbone (each member's is in the state's meta)."""
        return self.reference.backbone

    def member_label(self, i: int) -> str:
        """``m1 patchcore tf_efficientnet_lite0 320x320``: member ``i`` in words."""
        m = self.member_models[i]
        h, w = m.input_size
        return f"m{i} {m.method} {m.backbone_name} {w}x{h}"

    # ----------------------------------------------------------------- the method protocol
    def fit_batches(self, data: Any, desc: str) -> Iterator[Batch]:
        """Every member's fit batches of ``data``, member after member, each tagged with ``"member"``: its index.

        Each member reads and preprocesses the images itself, at its own size.
        """
        if isinstance(data, (torch.Tensor, DataLoader, Dataset)):
            raise InputError(
                f"ensemble: fit and add_normal take images (a folder, paths, PIL images or arrays), not a "
                f"{type(data).__name__}: each member preprocesses them at its own size"
            )
        for i, member in enumerate(self.member_models):
            for read in member.fit_batches(data, f"{desc} ({self.member_label(i)})"):
                for batch in self.fit_variants(read, member.preprocess, self.seed):  # the ensemble's settings
                    batch[MEMBER_KEY] = i
                    yield batch

    def _per_member(self, batches: Iterable[Batch]) -> Iterator[tuple[int, Iterator[Batch]]]:
        """Each member's index and run of batches, in order (lazily: one member's batches at a time)."""
        yield from itertools.groupby(batches, key=lambda b: int(b[MEMBER_KEY]))

    def partial_fit_state(self, batches: Iterable[Batch], shards: int) -> Tensors:
        """Each member's :meth:`partial_fit_state` of its batches, under its prefix (``m0/``, ``m1/``...)."""
        part: Tensors = {}
        seen = set()
        for i, group in self._per_member(batches):
            member = self.member_models[i]
            member.timings = {}
            part.update({_prefix(i) + k: v for k, v in member.partial_fit_state(group, shards).items()})
            self.timings.update({_prefix(i) + k: v for k, v in member.timings.items()})
            seen.add(i)
        if seen != set(range(len(self.member_models))):
            raise InputError("ensemble: no training images")
        return part

    def merge_states(self, parts: list[Tensors]) -> None:
        count = len(self.member_models)
        per_part = [split_state(p, count) for p in parts]
        for i, member in enumerate(self.member_models):
            member.merge_states([p[i] for p in per_part])
            member.rebuild()  # the ensemble's module reuses each member's
            self.timings.update({_prefix(i) + k: v for k, v in member.timings.items()})

    def extend_state(self, batches: Iterable[Batch]) -> None:
        for i, group in self._per_member(batches):
            self.member_models[i].extend_state(group)
        for member in self.member_models:
            member.rebuild()

    def to_state(self) -> ModelState:
        tensors: Tensors = {}
        members = []
        for i, member in enumerate(self.member_models):
            state = member.to_state()
            tensors.update({_prefix(i) + k: v for k, v in state.tensors.items()})
            backbone = member.backbone
            members.append(
                {
                    "method": member.method,
                    "state": state.meta,
                    "backbone": {"name": member.backbone_name, "fingerprint": backbone.fingerprint},
                }
            )
        return ModelState(tensors, {"members": members})

    def from_state(self, state: ModelState) -> None:
        metas = state.meta.get("members", [])
        count = len(self.member_models)
        if len(metas) != count:
            raise ModelFileError(f"ensemble state: {len(metas)} members stored, {count} configured")
        tensors = split_state(state.tensors, count)
        for i, (member, meta) in enumerate(zip(self.member_models, metas, strict=True)):
            if meta["method"] != member.method:
                raise ModelFileError(f"ensemble state: member {i} is {meta['method']!r}, configured {member.method!r}")
            check_fingerprint(member.backbone, meta["backbone"], f"ensemble member {i}")
            # each member gets its own scoring module: it can score alone, and the ensemble's module reuses it
            member.restore(ModelState(tensors[i], meta["state"]))

    def build_module(self, exportable: bool = False) -> EnsembleModule:
        modules = [
            m.module if m.module is not None and not exportable else m.scoring_module(exportable).eval()
            for m in self.member_models
        ]
        norm = (self.preprocess.mean, self.preprocess.std)
        renorms = [
            None
            if (m.preprocess.mean, m.preprocess.std) == norm
            else renormalisation(norm, (m.preprocess.mean, m.preprocess.std))
            for m in self.member_models
        ]
        return EnsembleModule(modules, [m.input_size for m in self.member_models], self.input_size, renorms).to(
            self.device
        )
