"""Alias of :mod:`indad.methods` (the seed's README spells it ``from indad.model import PatchCore``)."""

from .methods import *  # noqa: F403
from .methods import __all__  # noqa: F401
