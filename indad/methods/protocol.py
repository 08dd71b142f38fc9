"""The method protocol: the public hooks that fitting in one process, on a Ray cluster, saving, loading and
exporting are built from.

- :meth:`MethodProtocol.partial_fit_state` and :meth:`MethodProtocol.merge_states`:
  one shard's part of the fitted state (plain tensors, computable in another
  process), and the state from every shard's part; a one-process fit is one shard;
- :meth:`MethodProtocol.extend_state`: more normal images without refitting;
- :meth:`MethodProtocol.to_state` and :meth:`MethodProtocol.from_state`: what a model file holds;
- :meth:`MethodProtocol.build_module`: the plain scoring ``nn.Module`` of network inputs (one tile, when tiled).

:class:`~indad.methods.base.AnomalyModel` implements everything else on top of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Batch = dict[str, Any]
"""A batch of images: ``image`` (a normalised ``(B, 3, H, W)`` tensor on the model's device), and, from
files, ``path``; from a labelled dataset also ``label``, ``defect``, ``mask`` and ``has_mask``."""

Tensors = dict[str, torch.Tensor]
"""Named tensors: a shard's part of the fitted state, or the tensors of a model file."""


@dataclass(frozen=True)
class ModelState:
    """The fitted state of a method: its tensors and plain (JSON) values, as a model file holds them."""

    tensors: Tensors
    meta: dict[str, Any] = field(default_factory=dict)


class MethodProtocol(ABC):
    """What a method implements (see the module's docstring)."""

    @abstractmethod
    def partial_fit_state(self, batches: Iterable[Batch], shards: int) -> Tensors:
        """What one of ``shards`` disjoint parts of the normal images contributes to the state.

        ``batches`` hold that part's images; the tensors returned go to
        :meth:`merge_states`, possibly from another process.
        """

    @abstractmethod
    def merge_states(self, parts: list[Tensors]) -> None:
        """Set the fitted state from every shard's :meth:`partial_fit_state`, in shard order (parts may be reused)."""

    @abstractmethod
    def extend_state(self, batches: Iterable[Batch]) -> None:
        """Extend the fitted state with batches of further normal images."""

    @abstractmethod
    def to_state(self) -> ModelState:
        """The fitted state: tensors and plain values, enough for :meth:`from_state`."""

    @abstractmethod
    def from_state(self, state: ModelState) -> None:
        """Restore what :meth:`to_state` returned (tensors on the model's device)."""

    @abstractmethod
    def build_module(self, exportable: bool = False) -> nn.Module:
        """The fitted module of network inputs ``(B, 3, h, w)`` -> (scores ``(B,)``, maps ``(B, h, w)``).

        Network inputs are tiles when tiled: a batch then holds whole images' tiles in :meth:`fit_batches`'
        order. :meth:`scoring_module` wraps it for whole images.

        ``exportable``: only torch operations (no faiss), with loop bounds that do
        not depend on the batch size, for ONNX and TorchScript export.
        """
