"""TEMPORARY (replaced by the rules branch)."""
from .results import atomic_output  # noqa: F401
