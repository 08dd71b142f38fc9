"""Alias of :mod:`indad.models` (the seed's README spells it ``from indad.model import ...``)."""

from .models import *  # noqa: F403
from .models import __all__  # noqa: F401
