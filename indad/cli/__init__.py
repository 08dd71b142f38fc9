"""Command line interface (click)."""

from .main import cli, main

__all__ = ["cli", "main"]
