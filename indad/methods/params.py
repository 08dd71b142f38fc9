"""Hyperparameter checks, declared as a table per method and checked in one place, and their plain-data form."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.tiles import Tiling
from ..errors import InputError


@dataclass(frozen=True)
class Rule:
    """What a scalar hyperparameter may be: its type, bounds (open or closed) or its choices."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> Any:
        """``value`` as :attr:`kind`; :class:`~indad.errors.InputError` naming ``name`` when it breaks the rule."""
        if self.choices:
            if value not in self.choices:
                raise InputError(f"{name} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.kind is bool:
            if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
                return bool(value)
            raise InputError(f"{name} must be true or false, got {value!r}")
        try:
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError
            if self.kind is int and float(value) != int(value):
                raise ValueError
            number = self.kind(value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(
                f"{name} must be {'an integer' if self.kind is int else 'a number'}, got {value!r}"
            ) from None
        if not self._in_bounds(number):
            raise InputError(f"{name} must be {self.describe()}, got {value}")
        return number

    def _in_bounds(self, number: float) -> bool:
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return False
        return self.high is None or number <= self.high

    def describe(self) -> str:
        """The bounds in words: ``>= 1``, ``> 0`` or ``in (0, 1]``."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}]"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        return f"<= {_number(self.high or 0)}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def class_rules(cls: type) -> dict[str, Rule]:
    """The ``rules`` tables of ``cls`` and its bases, merged (a subclass's rule wins)."""
    rules: dict[str, Rule] = {}
    for klass in reversed(cls.__mro__):
        rules.update(vars(klass).get("rules", {}))
    return rules


def check_params(model: object, rules: Mapping[str, Rule]) -> None:
    """Check every hyperparameter of ``model`` named in ``rules`` and set it to its checked value."""
    for name, rule in rules.items():
        setattr(model, name, rule.check(name, getattr(model, name)))


def plain_value(value: Any) -> Any:
    """A hyperparameter's value as plain (JSON) data, for model files and configs."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    if isinstance(value, (torch.device, os.PathLike)):
        return str(value)
    if isinstance(value, Tiling):
        return value.to_dict()
    if isinstance(value, np.ndarray):  # an ROI given as an array: the model file keeps the mask itself
        return f"<array {value.shape[0]}x{value.shape[1]}>"
    if callable(value):  # a progress callback
        return True
    return value
