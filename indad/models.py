"""Alias of :mod:`indad.methods`, the import path of the methods (kept for code written against it)."""

from .methods import *  # noqa: F403
from .methods import __all__  # noqa: F401
