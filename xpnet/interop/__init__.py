"""Interop: weights in the safetensors format and ONNX export, on top of ``state_dict`` and the
layer tree.  The ``safetensors`` and ``onnx`` packages are optional extras, imported only when used."""

from .onnx_export import export_onnx
from .safetensors_io import load_safetensors, save_safetensors

__all__ = ["export_onnx", "load_safetensors", "save_safetensors"]
