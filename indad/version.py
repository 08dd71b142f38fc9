"""The version of indad (read by the package metadata, model files and results)."""

__version__ = "0.1.0"
