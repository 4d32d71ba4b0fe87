"""Frontends: ONNX models -> tinymlir's level-0 IR."""

from tinymlir.frontend.onnx_importer import OnnxImportError, import_onnx, parse_onnx_for_opt

__all__ = ["OnnxImportError", "import_onnx", "parse_onnx_for_opt"]
