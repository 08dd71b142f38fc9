"""Model files (save / load, no pickle) and exported graphs (ONNX, TorchScript)."""

from .model_file import ModelFileError, load_model, read_header, save_model

__all__ = ["ModelFileError", "load_model", "read_header", "save_model"]
