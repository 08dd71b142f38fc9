"""Running indad on a cluster: fitting shards and scoring folders on Ray (the optional extra ``indad[ray]``).

Importing this package does not import Ray; :class:`RayEngine` does when it is used.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "RayEngine":
        from .ray_engine import RayEngine

        return RayEngine
    raise AttributeError(name)


__all__ = ["RayEngine"]
