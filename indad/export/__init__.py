"""The model file format (safetensors + JSON header) and exported graphs (ONNX, TorchScript).

Loading a model file into a method is :func:`indad.load` (:func:`indad.methods.load_model`).
"""

from ..errors import ModelFileError
from .model_file import FORMAT, read_header, read_tensors, write_model_file

__all__ = ["FORMAT", "ModelFileError", "read_header", "read_tensors", "write_model_file"]
