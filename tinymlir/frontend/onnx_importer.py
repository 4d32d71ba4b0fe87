"""The ONNX frontend: an ONNX model -> a level-0 module (`nn` + `quant` + `arith.constant`).

    module = import_onnx("model.onnx")        # or bytes, or an onnx.ModelProto

The module holds one `func.func @forward`: its arguments are the graph inputs (in order,
initializers excluded), its results the graph outputs. Every value has a static shape,
taken from ONNX shape inference (`strict_mode=True, data_prop=True`) where it gives one
and computed from the op otherwise (the com.microsoft ops have no ONNX schema).

What the ONNX ops become:

  float ops           Conv, Gemm, MatMul, Add/Sub/Mul/Div, Relu, Clip, Softmax,
                      BatchNormalization, GlobalAveragePool, AveragePool -> the `nn` op
  data movement       MaxPool, Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Pad
                      -> the `nn` op, on float or (between Q and DQ) quantized tensors
  forwarded           Identity, Dropout (inference)
  constants           float initializers / Constant nodes -> `arith.constant`; integer
                      ones are only read (shapes, axes, pads) or, when a DequantizeLinear
                      (or a QOperator) reads them, become a `quant.constant` of the
                      quantized type that node gives them
  QDQ                 QuantizeLinear -> quant.quantize, DequantizeLinear -> quant.dequantize
  QOperator           QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger and
                      com.microsoft QLinearAdd / QLinearGlobalAveragePool -> dequantize ->
                      float op -> quantize, the same shape as a QDQ model, so `fuse-qdq`
                      raises both kinds of model to `quant` ops the same way

ConvInteger / MatMulInteger produce int32: their inputs are dequantized with scale 1 and
their zero-points, the float op runs, and the result is quantized to
`!quant.uniform<i32:f32, 1.0:0>`. The float accumulator holds every integer exactly
while |acc| < 2^24 (float32), so the lowering is exact up to there.

An integer graph input must be read only by DequantizeLinear / QOperator operands that
agree on its scale and zero-point; its argument then has that quantized type. A value
that a QuantizeLinear made and a DequantizeLinear reads must be dequantized with the
scale and zero-point it was quantized with (the IR has no reinterpreting cast).

Every failure raises `OnnxImportError` with a one-line message saying what, where and why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import BytesAttr, DenseIntOrFPElementsAttr, ModuleOp, TensorType, f32
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue
from xdsl.utils.exceptions import VerifyException

from tinymlir.dialects import nn, quant
from tinymlir.dialects.nn import broadcast_shape, pooled_size
from tinymlir.dialects.quant import UniformQuantizedType

__all__ = ["OnnxImportError", "import_onnx", "parse_onnx_for_opt", "MIN_OPSET", "MAX_OPSET"]

MIN_OPSET, MAX_OPSET = 13, 21
FUNC_NAME = "forward"
F32_MAX = float(np.finfo(np.float32).max)

# ONNX integer element types that can be the storage of a quantized tensor.
_STORAGE = {TensorProto.INT8: "i8", TensorProto.UINT8: "u8", TensorProto.INT16: "i16", TensorProto.INT32: "i32"}
_NP_STORAGE = {np.dtype(np.int8): "i8", np.dtype(np.uint8): "u8", np.dtype(np.int16): "i16", np.dtype(np.int32): "i32"}


class OnnxImportError(Exception):
    """The model cannot be imported; the message is one line: what, where, why."""

    def __init__(self, message: str):
        text = " ".join(str(message).split())
        if len(text) > 400:
            text = text[:397] + "..."
        super().__init__(text)


# -- public API ------------------------------------------------------------------------
def import_onnx(model: str | os.PathLike | bytes | bytearray | memoryview | onnx.ModelProto) -> ModuleOp:
    """Import an ONNX model (path, serialized bytes or ModelProto) as a verified module."""
    return _import(*_load(model))


def parse_onnx_for_opt(io: IO[bytes]) -> ModuleOp:
    """Frontend hook for xDSLOptMain's `available_frontends['onnx']`."""
    raw = getattr(io, "buffer", io)  # a text-mode stream still has its bytes underneath
    name = getattr(io, "name", None)
    try:
        data = raw.read()
    except Exception as e:
        raise OnnxImportError(f"cannot read ONNX model '{name or '<stream>'}': {e}") from e
    if isinstance(data, str):
        raise OnnxImportError(f"cannot read ONNX model '{name or '<stream>'}': the stream must be opened in binary mode")
    return _import(*_load(bytes(data), str(name) if isinstance(name, str) else "<stream>"))


def _import(proto: onnx.ModelProto, source: str) -> ModuleOp:
    try:
        return _Importer(proto, source).run()
    except OnnxImportError:
        raise
    except Exception as e:  # a bug or an unforeseen model: still one line, still ours
        raise OnnxImportError(f"cannot import '{source}': {type(e).__name__}: {e}") from e


# -- loading ---------------------------------------------------------------------------
def _load(model: Any, source: str | None = None) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, source or (f"<ModelProto {model.graph.name}>" if model.graph.name else "<ModelProto>")
    if isinstance(model, (bytes, bytearray, memoryview)):
        source = source or "<bytes>"
        try:
            return onnx.load_model_from_string(bytes(model)), source
        except Exception as e:
            raise OnnxImportError(f"cannot read ONNX model '{source}': {_describe(e)}") from e
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        if not os.path.isfile(source):
            raise OnnxImportError(f"cannot read ONNX model '{source}': no such file")
        try:
            return onnx.load(source), source  # also loads external data next to the file
        except Exception as e:
            raise OnnxImportError(f"cannot read ONNX model '{source}': {_describe(e)}") from e
    raise OnnxImportError(f"import_onnx expects a path, bytes or an onnx.ModelProto, got {type(model).__name__}")


def _describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type #{elem_type}"


def _sanitize(name: str) -> str | None:
    """An ONNX name as an xDSL name hint (letters, digits, '_'; no leading digit)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not s:
        return None
    if not (s[0].isalpha() or s[0] == "_"):
        s = "v" + s
    s = SSAValue.extract_valid_name(s) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s) else None
    return s or None


def _norm_axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise OnnxImportError(f"{what}: axis {axis} is out of range for rank {rank}")
    return axis % rank


# -- the importer ----------------------------------------------------------------------
class _Importer:
    def __init__(self, model: onnx.ModelProto, source: str):
        self.model = model
        self.source = source
        self.block: Block | None = None
        self.values: dict[str, SSAValue] = {}  # ONNX name -> SSA value
        self.consts: dict[str, np.ndarray] = {}  # ONNX name -> constant data
        self.const_cache: dict[Any, SSAValue] = {}  # (name, type) -> materialized constant
        self.types: dict[str, onnx.TypeProto] = {}  # ONNX name -> inferred / declared type
        self.node: onnx.NodeProto | None = None
        self.node_index = -1

    # -- diagnostics helpers -------------------------------------------------------------
    def where(self, node: onnx.NodeProto | None = None, index: int | None = None) -> str:
        node = node or self.node
        if node is None:
            return "the graph"
        if node.name:
            return f"node '{node.name}'"
        i = self.node_index if index is None else index
        outs = [o for o in node.output if o]
        return f"node #{i} -> '{outs[0]}'" if outs else f"node #{i}"

    def at(self) -> str:
        """'Conv (node 'conv_1')' for messages."""
        assert self.node is not None
        return f"{self.node.op_type} ({self.where()})"

    def error(self, message: str) -> OnnxImportError:
        return OnnxImportError(message)

    # -- top level -----------------------------------------------------------------------
    def run(self) -> ModuleOp:
        self.check_model()
        self.check_opsets()
        inferred = self.infer_shapes()
        graph = inferred.graph
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            self.types.setdefault(vi.name, vi.type)
        if graph.sparse_initializer:
            raise self.error(f"sparse initializer '{graph.sparse_initializer[0].values.name}' is not supported")
        for init in graph.initializer:
            self.consts[init.name] = self.read_tensor(init, f"initializer '{init.name}'")
        for i, node in enumerate(graph.node):
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.node, self.node_index = node, i
                self.consts[node.output[0]] = self.constant_node_value(node)
        self.node, self.node_index = None, -1

        inputs = [vi for vi in graph.input if vi.name not in self.consts]
        arg_types = [self.input_type(vi, graph) for vi in inputs]
        self.block = Block(arg_types=arg_types)
        for vi, arg in zip(inputs, self.block.args):
            arg.name_hint = _sanitize(vi.name)
            self.values[vi.name] = arg

        for i, node in enumerate(graph.node):
            self.node, self.node_index = node, i
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                continue
            try:
                self.import_node(node)
            except OnnxImportError:
                raise
            except VerifyException as e:
                raise self.error(f"{self.at()} gives invalid IR: {e}") from e
            except Exception as e:
                raise self.error(f"cannot import {self.at()}: {type(e).__name__}: {e}") from e
        self.node, self.node_index = None, -1

        results = []
        for vi in graph.output:
            if vi.name in self.values:
                results.append(self.values[vi.name])
            elif vi.name in self.consts:
                results.append(self.float_const(vi.name, f"graph output '{vi.name}'"))
            else:
                raise self.error(f"graph output '{vi.name}' is not computed by any node")
        self.block.add_op(func.ReturnOp(*results))
        fn = func.FuncOp(FUNC_NAME, (arg_types, [r.type for r in results]), Region(self.block))
        module = ModuleOp([fn])
        try:
            module.verify()
        except VerifyException as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise self.error(f"the IR imported from '{self.source}' does not verify: {first}") from e
        return module

    def read_tensor(self, t: onnx.TensorProto, what: str) -> np.ndarray:
        """The value of a TensorProto; a data type onnx cannot read is an error, not a crash."""
        if t.data_type not in TensorProto.DataType.values() or t.data_type == TensorProto.UNDEFINED:
            raise self.error(f"cannot read {what}: unknown or undefined data type {t.data_type}")
        try:
            return numpy_helper.to_array(t)
        except Exception as e:
            raise self.error(f"cannot read {what} ({_type_name(t.data_type)}): {_describe(e)}") from e

    def check_model(self) -> None:
        try:
            onnx.checker.check_model(self.model)
        except Exception as e:
            msg = str(e).strip().splitlines()
            first = msg[0] if msg else type(e).__name__
            ctx = next((ln.strip() for ln in msg[1:] if ln.strip().startswith("==> Context")), "")
            raise self.error(f"invalid ONNX model '{self.source}': {first}{' ' + ctx if ctx else ''}") from e

    def check_opsets(self) -> None:
        versions = [o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")]
        if not versions:
            raise self.error(f"ONNX model '{self.source}' imports no default-domain opset")
        v = versions[0]
        if not MIN_OPSET <= v <= MAX_OPSET:
            raise self.error(f"opset {v} is not supported ({MIN_OPSET} to {MAX_OPSET}) in '{self.source}'")

    def infer_shapes(self) -> onnx.ModelProto:
        try:
            return onnx.shape_inference.infer_shapes(self.model, strict_mode=True, data_prop=True)
        except Exception as e:
            msg = str(e).strip().splitlines()
            raise self.error(f"ONNX shape inference failed for '{self.source}': {msg[0] if msg else type(e).__name__}") from e

    # -- types and shapes ------------------------------------------------------------------
    def elem_type(self, name: str) -> int | None:
        t = self.types.get(name)
        if t is None or not t.HasField("tensor_type"):
            return None
        return t.tensor_type.elem_type

    def inferred_shape(self, name: str) -> tuple[int, ...] | None:
        t = self.types.get(name)
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        dims = []
        for d in t.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                return None
            dims.append(int(d.dim_value))
        return tuple(dims)

    def input_type(self, vi: onnx.ValueInfoProto, graph: onnx.GraphProto) -> Attribute:
        name = vi.name
        if not vi.type.HasField("tensor_type"):
            kind = (vi.type.WhichOneof("value") or "unknown").replace("_type", "")
            article = "an" if kind[0] in "aeiou" else "a"
            raise self.error(f"input '{name}' has {article} {kind} type; tinymlir needs tensors")
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            raise self.error(f"input '{name}' has no shape; tinymlir needs static shapes")
        shape = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                if d.dim_value < 0:
                    raise self.error(f"input '{name}' has a negative dimension {d.dim_value}")
                shape.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                raise self.error(f"input '{name}' has a dynamic dimension '{d.dim_param}'; tinymlir needs static shapes")
            else:
                raise self.error(f"input '{name}' has an unknown dimension {i}; tinymlir needs static shapes")
        et = tt.elem_type
        if et != TensorProto.FLOAT:
            self.check_not_parameter(name, graph)
        if et == TensorProto.FLOAT:
            return TensorType(f32, shape)
        if et in _STORAGE:
            qt = self.graph_input_qtype(name, graph, shape)
            return TensorType(qt, shape)
        raise self.error(f"unsupported element type '{_type_name(et)}' for '{name}'")

    def check_not_parameter(self, name: str, graph: onnx.GraphProto) -> None:
        """A graph input that a node reads as a parameter (scale, shape, pads, ...) is an error."""
        for i, node in enumerate(graph.node):
            params = _PARAM_INPUTS.get(node.op_type, {})
            for idx, inp in enumerate(node.input):
                if inp == name and idx in params:
                    self.node, self.node_index = node, i
                    msg = f"{self.at()}: {params[idx]} '{name}' must be a constant (initializer or Constant node), but it is a graph input"
                    self.node, self.node_index = None, -1
                    raise self.error(msg)

    def graph_input_qtype(self, name: str, graph: onnx.GraphProto, shape: Sequence[int]) -> UniformQuantizedType:
        """The quantized type of an integer graph input: the one every reader gives it."""
        found: list[tuple[UniformQuantizedType, str]] = []
        for i, node in enumerate(graph.node):
            for idx, inp in enumerate(node.input):
                if inp != name:
                    continue
                self.node, self.node_index = node, i
                if idx not in _QUANT_OPERANDS.get(node.op_type, {}):
                    raise self.error(
                        f"unsupported element type '{_type_name(self.elem_type(name) or 0)}' for '{name}': an integer "
                        f"input must be read by DequantizeLinear or a QOperator, not by {self.at()}"
                    )
                found.append((self.operand_qtype(node, idx, shape), self.at()))
        self.node, self.node_index = None, -1
        if not found:
            raise self.error(
                f"unsupported element type '{_type_name(self.elem_type(name) or 0)}' for '{name}': "
                "an integer input must be read by DequantizeLinear or a QOperator"
            )
        qt, first = found[0]
        for other, where in found[1:]:
            if other != qt:
                raise self.error(
                    f"input '{name}' is dequantized as {_qstr(qt)} by {first} and as {_qstr(other)} by {where}; "
                    "tinymlir needs one quantized type per value"
                )
        return qt

    def result_shape(self, name: str, computed: Sequence[int] | None) -> tuple[int, ...]:
        inferred = self.inferred_shape(name)
        if inferred is not None and computed is not None and tuple(computed) != inferred:
            raise self.error(
                f"{self.at()}: ONNX shape inference gives '{name}' the shape {list(inferred)}, "
                f"but the op computes {list(computed)}"
            )
        shape = inferred if inferred is not None else computed
        if shape is None:
            raise self.error(f"{self.at()}: cannot determine a static shape for '{name}'; tinymlir needs static shapes")
        return tuple(int(d) for d in shape)

    # -- operands ------------------------------------------------------------------------
    def input_name(self, idx: int) -> str:
        assert self.node is not None
        return self.node.input[idx] if idx < len(self.node.input) else ""

    def has_input(self, idx: int) -> bool:
        return self.input_name(idx) != ""

    def const(self, idx: int, what: str, required: bool = True) -> np.ndarray | None:
        """The constant value of input `idx` (None when an optional input is absent)."""
        name = self.input_name(idx)
        if not name:
            if required:
                raise self.error(f"{self.at()}: missing {what} input")
            return None
        if name in self.consts:
            return self.consts[name]
        kind = "a graph input" if isinstance(self.values.get(name), BlockArgument) else "computed at run time"
        raise self.error(
            f"{self.at()}: {what} '{name}' must be a constant (initializer or Constant node), but it is {kind}"
        )

    def float_const(self, name: str, what: str) -> SSAValue:
        arr = self.consts[name]
        if arr.dtype != np.float32:
            raise self.error(f"unsupported element type '{_np_type_name(arr.dtype)}' for '{name}' ({what})")
        key = ("f32", name)
        if key not in self.const_cache:
            data = np.ascontiguousarray(arr, dtype="<f4")
            attr = DenseIntOrFPElementsAttr(TensorType(f32, data.shape), BytesAttr(data.tobytes()))
            op = arith.ConstantOp(attr)
            op.result.name_hint = _sanitize(name)
            self.emit(op)
            self.const_cache[key] = op.result
        return self.const_cache[key]

    def value(self, idx: int, what: str = "input") -> SSAValue:
        """Input `idx` as an SSA value of any tensor type (float constants are materialized)."""
        name = self.input_name(idx)
        if not name:
            raise self.error(f"{self.at()}: missing {what}")
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            arr = self.consts[name]
            if arr.dtype == np.float32:
                return self.float_const(name, f"{what} of {self.at()}")
            raise self.error(
                f"unsupported element type '{_np_type_name(arr.dtype)}' for '{name}' ({what} of {self.at()}); "
                "integer constants must be read by DequantizeLinear or a QOperator"
            )
        raise self.error(f"{self.at()}: {what} '{name}' is not defined before its use")

    def float_value(self, idx: int, what: str = "input") -> SSAValue:
        v = self.value(idx, what)
        et = v.type.element_type if isinstance(v.type, TensorType) else None
        if et != f32:
            raise self.error(f"{self.at()}: {what} '{self.input_name(idx)}' must be a float32 tensor, got {v.type}")
        return v

    def shape_of_input(self, idx: int) -> tuple[int, ...]:
        name = self.input_name(idx)
        if name in self.values:
            return nn.shape_of(self.values[name])
        if name in self.consts:
            return tuple(self.consts[name].shape)
        shape = self.inferred_shape(name)
        if shape is None:
            raise self.error(f"{self.at()}: cannot determine a static shape for '{name}'")
        return shape

    def int_storage_of(self, idx: int) -> str:
        """The storage name (i8, u8, i16, i32) of integer input `idx`."""
        name = self.input_name(idx)
        if name in self.consts:
            dt = self.consts[name].dtype
            if dt in _NP_STORAGE:
                return _NP_STORAGE[dt]
            raise self.error(f"unsupported element type '{_np_type_name(dt)}' for '{name}' ({self.at()})")
        v = self.values.get(name)
        if v is not None and isinstance(v.type, TensorType) and isinstance(v.type.element_type, UniformQuantizedType):
            return v.type.element_type.storage_name
        et = self.elem_type(name)
        if et in _STORAGE:
            return _STORAGE[et]
        raise self.error(
            f"unsupported element type '{_type_name(et) if et is not None else 'unknown'}' for '{name}' ({self.at()})"
        )

    def quantized(self, idx: int, qt: UniformQuantizedType, what: str) -> SSAValue:
        """Input `idx` as a tensor of quantized type `qt` (an integer constant becomes quant.constant)."""
        name = self.input_name(idx)
        if not name:
            raise self.error(f"{self.at()}: missing {what}")
        if name in self.consts:
            arr = self.consts[name]
            if _NP_STORAGE.get(arr.dtype) != qt.storage_name:
                raise self.error(
                    f"{self.at()}: {what} '{name}' holds {_np_type_name(arr.dtype)}, expected {qt.storage_name} storage"
                )
            key = ("q", name, qt)
            if key not in self.const_cache:
                op = quant.ConstantOp(arr, TensorType(qt, arr.shape))
                op.result.name_hint = _sanitize(name)
                self.emit(op)
                self.const_cache[key] = op.result
            return self.const_cache[key]
        if name not in self.values:
            raise self.error(f"{self.at()}: {what} '{name}' is not defined before its use")
        v = self.values[name]
        got = v.type.element_type if isinstance(v.type, TensorType) else None
        if got != qt:
            if not isinstance(got, UniformQuantizedType):
                raise self.error(f"{self.at()}: {what} '{name}' must be an integer tensor, got {v.type}")
            raise self.error(
                f"{self.at()}: {what} '{name}' was quantized as {_qstr(got)} but is dequantized as {_qstr(qt)}; "
                "tinymlir needs the same scale and zero-point on both sides"
            )
        return v

    # -- quantization parameters -----------------------------------------------------------
    def make_qtype(self, scale: np.ndarray, zp: np.ndarray | None, storage: str, shape: Sequence[int],
                   axis: int | None, what: str) -> UniformQuantizedType:
        """The quantized type of a tensor of `shape` from ONNX scale / zero-point / axis.

        Per-axis when the scale is 1-D with more than one element, or when it is 1-D and an
        axis was given and fits; per-tensor otherwise. `axis` None = not given (the
        ONNX default, 1, then applies to per-axis scales)."""
        scale = np.asarray(scale)
        if scale.dtype != np.float32:
            raise self.error(f"{self.at()}: {what} scale must be float32, got {_np_type_name(scale.dtype)}")
        if zp is None:
            zp = np.zeros(scale.shape, dtype=np.int64)
        zp = np.asarray(zp)
        if zp.shape != scale.shape:
            raise self.error(f"{self.at()}: {what} scale {list(scale.shape)} and zero-point {list(zp.shape)} differ in shape")
        if scale.ndim > 1:
            raise self.error(f"{self.at()}: blocked quantization ({scale.ndim}-D scale) is not supported")
        bad = np.flatnonzero(~(np.isfinite(scale.reshape(-1)) & (scale.reshape(-1) > 0)))
        if bad.size:
            i = int(bad[0])
            which = f"scale #{i}" if scale.ndim else "scale"
            raise self.error(
                f"{self.at()}: {what} {which} is {float(scale.reshape(-1)[i])!r}; scales must be positive and finite"
            )
        scales = [float(np.float32(s)) for s in scale.reshape(-1)]
        zps = [int(z) for z in zp.reshape(-1)]
        if scale.ndim == 1 and (scale.size > 1 or axis is not None):
            ax = _norm_axis(1 if axis is None else axis, len(shape), f"{self.at()}: {what}")
            if shape[ax] == scale.size:
                return UniformQuantizedType(storage, scales, zps, axis=ax)
            if scale.size != 1:
                raise self.error(
                    f"{self.at()}: {what} has {scale.size} scales but dimension {ax} of {list(shape)} is {shape[ax]}"
                )
        return UniformQuantizedType(storage, scales[0], zps[0])

    def operand_qtype(self, node: onnx.NodeProto, idx: int, shape: Sequence[int] | None = None) -> UniformQuantizedType:
        """The quantized type that `node` gives its integer input `idx`."""
        saved = self.node
        self.node = node
        try:
            if shape is None:
                shape = self.shape_of_input(idx)
            storage = self.int_storage_of(idx)
            op = node.op_type
            spec = _QUANT_OPERANDS[op][idx]
            if spec == "bias":  # QLinearConv bias: int32, scale s_x * s_w, zero-point 0
                xs = self.const(1, "x_scale")
                ws = self.const(4, "w_scale")
                if storage != "i32":
                    raise self.error(f"{self.at()}: bias must be int32, got {storage}")
                w_shape = self.shape_of_input(3)
                wq = self.make_qtype(ws, None, "i8", w_shape, 0, "w")
                s = np.float32(np.asarray(xs).reshape(-1)[0]) * wq.scale_array().astype(np.float32)
                if wq.is_per_channel:
                    return self.make_qtype(s.astype(np.float32), None, "i32", shape, 0, "bias")
                return self.make_qtype(s.astype(np.float32).reshape(()), None, "i32", shape, None, "bias")
            scale_idx, zp_idx, axis_rule = spec
            zp = self.const(zp_idx, "zero-point", required=False)
            if zp is not None and _NP_STORAGE.get(zp.dtype) not in (None, storage):
                raise self.error(f"{self.at()}: zero-point type {_np_type_name(zp.dtype)} differs from the {storage} input")
            if scale_idx is None:  # ConvInteger / MatMulInteger: scale 1
                scale = np.ones(zp.shape if zp is not None else (), dtype=np.float32)
            else:
                scale = self.const(scale_idx, "scale")
            rank = len(shape)
            if axis_rule == "attr":
                axis = _attr(node, "axis", None)
                block = _attr(node, "block_size", 0)
                if block:
                    raise self.error(f"{self.at()}: blocked quantization (block_size={block}) is not supported")
            elif axis_rule == "weight":
                axis = 0
            elif axis_rule == "rows":  # per-row zero-points of a matmul lhs
                axis = rank - 2 if rank >= 2 else None
            elif axis_rule == "cols":  # per-column scales of a matmul rhs
                axis = rank - 1
            else:
                axis = None
                if np.asarray(scale).size > 1:
                    raise self.error(f"{self.at()}: input {idx} must be quantized per-tensor")
            return self.make_qtype(scale, zp, storage, shape, axis, f"input '{node.input[idx]}'")
        finally:
            self.node = saved

    def output_qtype(self, scale_idx: int, zp_idx: int, out: str, shape: Sequence[int],
                     axis: int | None = None, output_dtype: int = 0) -> UniformQuantizedType:
        """The quantized type of a node's output from its (constant) scale and zero-point."""
        scale = self.const(scale_idx, "scale")
        zp = self.const(zp_idx, "zero-point", required=False)
        if zp is not None:
            storage = _NP_STORAGE.get(zp.dtype)
            if storage is None:
                raise self.error(f"unsupported element type '{_np_type_name(zp.dtype)}' for '{out}' ({self.at()})")
        elif output_dtype:
            storage = _STORAGE.get(output_dtype)
            if storage is None:
                raise self.error(f"unsupported element type '{_type_name(output_dtype)}' for '{out}' ({self.at()})")
        else:
            et = self.elem_type(out)
            storage = _STORAGE.get(et, "u8") if et else "u8"
        return self.make_qtype(scale, zp, storage, shape, axis, f"output '{out}'")

    # -- emitting --------------------------------------------------------------------------
    def emit(self, op: Operation) -> Operation:
        """Add `op` to the function, verified now so that an error names the ONNX node."""
        assert self.block is not None
        op.verify()
        self.block.add_op(op)
        return op

    def define(self, out_idx: int, op: Operation) -> SSAValue:
        """Emit `op` and bind its result to the node's output `out_idx`."""
        assert self.node is not None
        self.emit(op)
        name = self.node.output[out_idx]
        result = op.results[0]
        result.name_hint = _sanitize(name)
        self.values[name] = result
        return result

    def out(self, idx: int = 0) -> str:
        assert self.node is not None
        return self.node.output[idx]

    def check_outputs(self, n: int) -> None:
        assert self.node is not None
        extra = [o for o in self.node.output[n:] if o]
        if extra:
            raise self.error(f"{self.at()}: optional output '{extra[0]}' is not supported")

    # -- nodes -----------------------------------------------------------------------------
    def import_node(self, node: onnx.NodeProto) -> None:
        domain = node.domain
        if domain in ("", "ai.onnx"):
            handler = _HANDLERS.get(node.op_type)
            label = node.op_type
        elif domain == "com.microsoft":
            handler = _MS_HANDLERS.get(node.op_type)
            label = f"com.microsoft.{node.op_type}"
        else:
            handler, label = None, f"{domain}.{node.op_type}"
        if handler is None:
            raise self.error(f"unsupported ONNX op '{label}' ({self.where()})")
        handler(self, node)

    def constant_node_value(self, node: onnx.NodeProto) -> np.ndarray:
        if len(node.attribute) != 1:
            raise self.error(f"{self.at()}: a Constant needs exactly one value attribute")
        a = node.attribute[0]
        expected = {"value": onnx.AttributeProto.TENSOR, "value_float": onnx.AttributeProto.FLOAT,
                    "value_floats": onnx.AttributeProto.FLOATS, "value_int": onnx.AttributeProto.INT,
                    "value_ints": onnx.AttributeProto.INTS}
        if a.name in expected and a.type != expected[a.name]:
            kind = onnx.AttributeProto.AttributeType.Name(a.type) if a.type in onnx.AttributeProto.AttributeType.values() \
                else str(a.type)
            raise self.error(f"{self.at()}: attribute '{a.name}' has type {kind}, expected "
                             f"{onnx.AttributeProto.AttributeType.Name(expected[a.name])}")
        if a.name == "value":
            return self.read_tensor(a.t, f"the value of {self.at()}")
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
        raise self.error(f"{self.at()}: Constant attribute '{a.name}' is not supported")

    # ---- float compute ops
    def conv_params(self, node: onnx.NodeProto, xs: Sequence[int], ws: Sequence[int]) -> dict[str, Any]:
        if len(xs) != 4 or len(ws) != 4:
            raise self.error(f"{self.at()}: only 2-D convolution is supported (input {list(xs)}, weight {list(ws)})")
        kernel = _attr(node, "kernel_shape", None)
        if kernel is not None and list(kernel) != list(ws[2:]):
            raise self.error(f"{self.at()}: kernel_shape {list(kernel)} differs from the weight's {list(ws[2:])}")
        strides = list(_attr(node, "strides", [1, 1]))
        dilations = list(_attr(node, "dilations", [1, 1]))
        group = int(_attr(node, "group", 1))
        pads = self.explicit_pads(node, xs[2:], ws[2:], strides, dilations)
        return {"strides": strides, "pads": pads, "dilations": dilations, "groups": group}

    def explicit_pads(self, node: onnx.NodeProto, spatial: Sequence[int], kernel: Sequence[int],
                      strides: Sequence[int], dilations: Sequence[int]) -> list[int]:
        """[top, left, bottom, right] from `pads` / `auto_pad`."""
        auto_pad = _attr(node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if len(strides) != 2 or len(dilations) != 2:
            raise self.error(f"{self.at()}: strides and dilations must have 2 values")
        if auto_pad == "NOTSET":
            pads = list(_attr(node, "pads", [0, 0, 0, 0]))
            if len(pads) != 4:
                raise self.error(f"{self.at()}: pads must have 4 values, got {pads}")
            if any(p < 0 for p in pads):
                raise self.error(f"{self.at()}: negative pads {pads} are not supported")
            return pads
        if auto_pad == "VALID":
            return [0, 0, 0, 0]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for size, k, s, d in zip(spatial, kernel, strides, dilations):
                out = -(-size // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
                small = total // 2
                b = small if auto_pad == "SAME_UPPER" else total - small
                begin.append(b)
                end.append(total - b)
            return begin + end
        raise self.error(f"{self.at()}: auto_pad '{auto_pad}' is not supported")

    def conv(self, x: SSAValue, w: SSAValue, b: SSAValue | None, node: onnx.NodeProto, out: str) -> SSAValue:
        xs, ws = nn.shape_of(x), nn.shape_of(w)
        p = self.conv_params(node, xs, ws)
        if xs[1] != ws[1] * p["groups"] or ws[0] % p["groups"]:
            raise self.error(f"{self.at()}: input {list(xs)}, weight {list(ws)} and group={p['groups']} do not match")
        oh = pooled_size(xs[2], ws[2], p["strides"][0], p["pads"][0], p["pads"][2], p["dilations"][0])
        ow = pooled_size(xs[3], ws[3], p["strides"][1], p["pads"][1], p["pads"][3], p["dilations"][1])
        shape = self.result_shape(out, (xs[0], ws[0], oh, ow))
        op = nn.Conv2dOp(x, w, b, TensorType(f32, shape), **p)
        self.emit(op)
        return op.result

    def op_conv(self, node: onnx.NodeProto) -> None:
        x, w = self.float_value(0, "input X"), self.float_value(1, "weight W")
        b = self.float_value(2, "bias B") if self.has_input(2) else None
        y = self.conv(x, w, b, node, self.out())
        self.bind(y)

    def bind(self, v: SSAValue, idx: int = 0) -> None:
        name = self.out(idx)
        v.name_hint = _sanitize(name)
        self.values[name] = v

    def op_gemm(self, node: onnx.NodeProto) -> None:
        a, b = self.float_value(0, "input A"), self.float_value(1, "input B")
        c = self.float_value(2, "input C") if self.has_input(2) else None
        ta, tb = bool(_attr(node, "transA", 0)), bool(_attr(node, "transB", 0))
        sa, sb = nn.shape_of(a), nn.shape_of(b)
        if len(sa) != 2 or len(sb) != 2:
            raise self.error(f"{self.at()}: Gemm operands must be 2-D, got {list(sa)} and {list(sb)}")
        m = sa[1] if ta else sa[0]
        n = sb[0] if tb else sb[1]
        shape = self.result_shape(self.out(), (m, n))
        self.define(0, nn.GemmOp(a, b, c, TensorType(f32, shape), alpha=float(_attr(node, "alpha", 1.0)),
                                 beta=float(_attr(node, "beta", 1.0)), trans_a=ta, trans_b=tb))

    def op_matmul(self, node: onnx.NodeProto) -> None:
        a, b = self.float_value(0, "input A"), self.float_value(1, "input B")
        self.define(0, nn.MatMulOp(a, b, TensorType(f32, self.result_shape(self.out(), self.matmul_shape(a, b)))))

    def matmul_shape(self, a: SSAValue, b: SSAValue) -> tuple[int, ...]:
        sa, sb = nn.shape_of(a), nn.shape_of(b)
        if not sa or not sb:
            raise self.error(f"{self.at()}: MatMul operands must have rank >= 1")
        a2 = (1,) + sa if len(sa) == 1 else sa
        b2 = sb + (1,) if len(sb) == 1 else sb
        if a2[-1] != b2[-2]:
            raise self.error(f"{self.at()}: inner dimensions of {list(sa)} and {list(sb)} differ")
        batch = broadcast_shape(a2[:-2], b2[:-2])
        if batch is None:
            raise self.error(f"{self.at()}: batch dimensions of {list(sa)} and {list(sb)} do not broadcast")
        shape = batch + (a2[-2], b2[-1])
        if len(sa) == 1:
            shape = shape[:-2] + shape[-1:]
        if len(sb) == 1:
            shape = shape[:-1]
        return shape

    def binary(self, node: onnx.NodeProto, cls: type) -> None:
        a, b = self.float_value(0, "input A"), self.float_value(1, "input B")
        shape = broadcast_shape(nn.shape_of(a), nn.shape_of(b))
        if shape is None:
            raise self.error(f"{self.at()}: shapes {list(nn.shape_of(a))} and {list(nn.shape_of(b))} do not broadcast")
        self.define(0, cls(a, b, TensorType(f32, self.result_shape(self.out(), shape))))

    def op_relu(self, node: onnx.NodeProto) -> None:
        x = self.float_value(0)
        self.result_shape(self.out(), nn.shape_of(x))
        self.define(0, nn.ReluOp(x))

    def op_clip(self, node: onnx.NodeProto) -> None:
        x = self.float_value(0)
        lo_arr = self.const(1, "min", required=False)
        hi_arr = self.const(2, "max", required=False)
        lo = -F32_MAX if lo_arr is None else _scalar(self, lo_arr, "min")
        hi = F32_MAX if hi_arr is None else _scalar(self, hi_arr, "max")
        if np.isnan(lo) or np.isnan(hi):
            raise self.error(f"{self.at()}: a NaN {'min' if np.isnan(lo) else 'max'} is not supported")
        if lo > hi:  # ONNX: every output is `max` then, which clip(max, max) computes
            lo = hi
        self.result_shape(self.out(), nn.shape_of(x))
        self.define(0, nn.ClipOp(x, lo, hi))

    def op_softmax(self, node: onnx.NodeProto) -> None:
        x = self.float_value(0)
        axis = _norm_axis(int(_attr(node, "axis", -1)), len(nn.shape_of(x)), self.at())
        self.result_shape(self.out(), nn.shape_of(x))
        self.define(0, nn.SoftmaxOp(x, axis))

    def op_batch_norm(self, node: onnx.NodeProto) -> None:
        if _attr(node, "training_mode", 0):
            raise self.error(f"{self.at()}: training-mode BatchNormalization is not supported")
        self.check_outputs(1)
        x = self.float_value(0)
        ops = [self.float_value(i, w) for i, w in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))]
        xs = nn.shape_of(x)
        if len(xs) < 2:
            raise self.error(f"{self.at()}: input must have rank >= 2, got {list(xs)}")
        for v, w in zip(ops, ("scale", "B", "mean", "var")):
            if nn.shape_of(v) != (xs[1],):
                raise self.error(f"{self.at()}: {w} must have shape [{xs[1]}], got {list(nn.shape_of(v))}")
        self.result_shape(self.out(), xs)
        self.define(0, nn.BatchNormOp(x, *ops, epsilon=float(_attr(node, "epsilon", 1e-5))))

    def op_global_avg_pool(self, node: onnx.NodeProto) -> None:
        x = self.float_value(0)
        xs = nn.shape_of(x)
        if len(xs) < 3:
            raise self.error(f"{self.at()}: input must have rank >= 3, got {list(xs)}")
        shape = self.result_shape(self.out(), xs[:2] + (1,) * (len(xs) - 2))
        self.define(0, nn.GlobalAvgPoolOp(x, TensorType(f32, shape)))

    def pool_params(self, node: onnx.NodeProto, xs: Sequence[int]) -> tuple[list[int], list[int], list[int], tuple[int, ...]]:
        if len(xs) != 4:
            raise self.error(f"{self.at()}: only 2-D pooling is supported (input {list(xs)})")
        if _attr(node, "ceil_mode", 0):
            raise self.error(f"{self.at()}: ceil_mode=1 is not supported")
        kernel = list(_attr(node, "kernel_shape", []))
        if len(kernel) != 2:
            raise self.error(f"{self.at()}: kernel_shape must have 2 values, got {kernel}")
        strides = list(_attr(node, "strides", [1, 1]))
        dilations = list(_attr(node, "dilations", [1, 1]))
        if any(d != 1 for d in dilations):
            raise self.error(f"{self.at()}: dilations {dilations} are not supported (only 1)")
        pads = self.explicit_pads(node, xs[2:], kernel, strides, dilations)
        oh = pooled_size(xs[2], kernel[0], strides[0], pads[0], pads[2])
        ow = pooled_size(xs[3], kernel[1], strides[1], pads[1], pads[3])
        return kernel, strides, pads, (xs[0], xs[1], oh, ow)

    def op_avg_pool(self, node: onnx.NodeProto) -> None:
        x = self.float_value(0)
        kernel, strides, pads, shape = self.pool_params(node, nn.shape_of(x))
        shape = self.result_shape(self.out(), shape)
        self.define(0, nn.AvgPoolOp(x, TensorType(f32, shape), kernel, strides, pads,
                                    count_include_pad=bool(_attr(node, "count_include_pad", 0))))

    def op_max_pool(self, node: onnx.NodeProto) -> None:
        self.check_outputs(1)
        x = self.value(0)
        kernel, strides, pads, shape = self.pool_params(node, nn.shape_of(x))
        shape = self.result_shape(self.out(), shape)
        self.define(0, nn.MaxPoolOp(x, TensorType(_elem(x), shape), kernel, strides, pads))

    # ---- data movement
    def op_flatten(self, node: onnx.NodeProto) -> None:
        x = self.value(0)
        xs = nn.shape_of(x)
        axis = int(_attr(node, "axis", 1))
        if not -len(xs) <= axis <= len(xs):
            raise self.error(f"{self.at()}: axis {axis} is out of range for rank {len(xs)}")
        if axis < 0:
            axis += len(xs)
        shape = self.result_shape(self.out(), (int(np.prod(xs[:axis])), int(np.prod(xs[axis:]))))
        self.define(0, nn.FlattenOp(x, TensorType(_elem(x), shape), axis))

    def reshape_to(self, x: SSAValue, computed: Sequence[int] | None) -> None:
        shape = self.result_shape(self.out(), computed)
        n_in, n_out = int(np.prod(nn.shape_of(x))), int(np.prod(shape))
        if n_in != n_out:
            raise self.error(f"{self.at()}: cannot reshape {list(nn.shape_of(x))} into {list(shape)}")
        self.define(0, nn.ReshapeOp(x, TensorType(_elem(x), shape)))

    def op_reshape(self, node: onnx.NodeProto) -> None:
        x = self.value(0)
        target = [int(d) for d in np.asarray(self.const(1, "shape")).reshape(-1)]
        xs = nn.shape_of(x)
        allowzero = bool(_attr(node, "allowzero", 0))
        dims = [xs[i] if d == 0 and not allowzero and i < len(xs) else d for i, d in enumerate(target)]
        if dims.count(-1) > 1 or any(d < -1 for d in dims):
            raise self.error(f"{self.at()}: invalid shape {target}")
        if -1 in dims:
            known = int(np.prod([d for d in dims if d != -1]))
            total = int(np.prod(xs))
            if known == 0 or total % known:
                raise self.error(f"{self.at()}: cannot reshape {list(xs)} into {target}")
            dims[dims.index(-1)] = total // known
        self.reshape_to(x, dims)

    def op_squeeze(self, node: onnx.NodeProto) -> None:
        x = self.value(0)
        xs = nn.shape_of(x)
        axes_arr = self.const(1, "axes", required=False)
        if axes_arr is None:
            keep = [d for d in xs if d != 1]
        else:
            axes = {_norm_axis(int(a), len(xs), self.at()) for a in np.asarray(axes_arr).reshape(-1)}
            bad = [a for a in axes if xs[a] != 1]
            if bad:
                raise self.error(f"{self.at()}: cannot squeeze dimension {bad[0]} of size {xs[bad[0]]}")
            keep = [d for i, d in enumerate(xs) if i not in axes]
        self.reshape_to(x, keep)

    def op_unsqueeze(self, node: onnx.NodeProto) -> None:
        x = self.value(0)
        xs = list(nn.shape_of(x))
        axes_arr = np.asarray(self.const(1, "axes")).reshape(-1)
        rank = len(xs) + len(axes_arr)
        axes = sorted(_norm_axis(int(a), rank, self.at()) for a in axes_arr)
        if len(set(axes)) != len(axes):
            raise self.error(f"{self.at()}: repeated axes {axes_arr.tolist()}")
        for a in axes:
            xs.insert(a, 1)
        self.reshape_to(x, xs)

    def op_transpose(self, node: onnx.NodeProto) -> None:
        x = self.value(0)
        xs = nn.shape_of(x)
        perm = [int(p) for p in _attr(node, "perm", list(range(len(xs)))[::-1])]
        if sorted(perm) != list(range(len(xs))):
            raise self.error(f"{self.at()}: perm {perm} is not a permutation of rank {len(xs)}")
        shape = self.result_shape(self.out(), tuple(xs[p] for p in perm))
        self.define(0, nn.TransposeOp(x, TensorType(_elem(x), shape), perm))

    def op_concat(self, node: onnx.NodeProto) -> None:
        xs = [self.value(i) for i in range(len(node.input)) if self.has_input(i)]
        et = _elem(xs[0])
        for v, name in zip(xs, node.input):
            if _elem(v) != et:
                raise self.error(
                    f"{self.at()}: inputs have different element types ({_estr(et)} and {_estr(_elem(v))} for "
                    f"'{name}'); tinymlir needs one (quantized) type for all"
                )
        s0 = nn.shape_of(xs[0])
        axis = _norm_axis(int(_attr(node, "axis", 0)), len(s0), self.at())
        total = 0
        for v in xs:
            s = nn.shape_of(v)
            if len(s) != len(s0) or any(s[i] != s0[i] for i in range(len(s0)) if i != axis):
                raise self.error(f"{self.at()}: input shapes {list(s0)} and {list(s)} do not concatenate on axis {axis}")
            total += s[axis]
        shape = self.result_shape(self.out(), s0[:axis] + (total,) + s0[axis + 1:])
        self.define(0, nn.ConcatOp(xs, TensorType(et, shape), axis))

    def op_pad(self, node: onnx.NodeProto) -> None:
        mode = _attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            raise self.error(f"{self.at()}: Pad mode '{mode}' is not supported (only 'constant')")
        x = self.value(0)
        xs = nn.shape_of(x)
        rank = len(xs)
        pads_in = [int(p) for p in np.asarray(self.const(1, "pads")).reshape(-1)]
        axes_arr = self.const(3, "axes", required=False)
        axes = list(range(rank)) if axes_arr is None else [_norm_axis(int(a), rank, self.at()) for a in np.asarray(axes_arr).reshape(-1)]
        if len(pads_in) != 2 * len(axes):
            raise self.error(f"{self.at()}: {len(pads_in)} pads for {len(axes)} axes")
        pads = [0] * (2 * rank)
        for i, a in enumerate(axes):
            pads[a], pads[a + rank] = pads_in[i], pads_in[i + len(axes)]
        if any(p < 0 for p in pads):
            raise self.error(f"{self.at()}: negative pads {pads_in} (cropping) are not supported")
        cv = self.const(2, "constant_value", required=False)
        value = 0.0 if cv is None or np.asarray(cv).size == 0 else _scalar(self, cv, "constant_value")
        shape = self.result_shape(self.out(), tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(xs)))
        self.define(0, nn.PadOp(x, TensorType(_elem(x), shape), pads, value))

    def op_identity(self, node: onnx.NodeProto) -> None:
        self.forward(node)

    def forward(self, node: onnx.NodeProto) -> None:
        name = self.input_name(0)
        if name in self.consts:
            self.consts[self.out()] = self.consts[name]
        else:
            self.values[self.out()] = self.value(0)

    def op_dropout(self, node: onnx.NodeProto) -> None:
        training = self.const(2, "training_mode", required=False)
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            raise self.error(f"{self.at()}: training-mode Dropout is not supported")
        self.check_outputs(1)
        self.forward(node)

    # ---- QDQ
    def op_quantize(self, node: onnx.NodeProto) -> None:
        block = _attr(node, "block_size", 0)
        if block:
            raise self.error(f"{self.at()}: blocked quantization (block_size={block}) is not supported")
        x = self.float_value(0)
        shape = self.result_shape(self.out(), nn.shape_of(x))
        qt = self.output_qtype(1, 2, self.out(), shape, _attr(node, "axis", None), int(_attr(node, "output_dtype", 0)))
        self.define(0, quant.QuantizeOp(x, TensorType(qt, shape)))

    def op_dequantize(self, node: onnx.NodeProto) -> None:
        qt = self.operand_qtype(node, 0)
        x = self.quantized(0, qt, "input x")
        shape = self.result_shape(self.out(), nn.shape_of(x))
        self.define(0, quant.DequantizeOp(x, TensorType(f32, shape)))

    def dequantized(self, node: onnx.NodeProto, idx: int, what: str) -> SSAValue:
        x = self.quantized(idx, self.operand_qtype(node, idx), what)
        op = quant.DequantizeOp(x)
        self.emit(op)
        return op.result

    def requantize_output(self, y: SSAValue, scale_idx: int, zp_idx: int) -> None:
        shape = self.result_shape(self.out(), nn.shape_of(y))
        qt = self.output_qtype(scale_idx, zp_idx, self.out(), shape)
        if qt.is_per_channel:
            raise self.error(f"{self.at()}: the output must be quantized per-tensor")
        self.define(0, quant.QuantizeOp(y, TensorType(qt, shape)))

    # ---- QOperator: DQ -> float op -> Q
    def op_qlinear_conv(self, node: onnx.NodeProto) -> None:
        x = self.dequantized(node, 0, "input x")
        w = self.dequantized(node, 3, "weight w")
        b = self.dequantized(node, 8, "bias B") if self.has_input(8) else None
        y = self.conv(x, w, b, node, "")
        self.requantize_output(y, 6, 7)

    def op_qlinear_matmul(self, node: onnx.NodeProto) -> None:
        a = self.dequantized(node, 0, "input a")
        b = self.dequantized(node, 3, "input b")
        op = nn.MatMulOp(a, b, TensorType(f32, self.matmul_shape(a, b)))
        self.emit(op)
        self.requantize_output(op.result, 6, 7)

    def int32_output(self, y: SSAValue) -> None:
        shape = self.result_shape(self.out(), nn.shape_of(y))
        self.define(0, quant.QuantizeOp(y, TensorType(UniformQuantizedType("i32", 1.0, 0), shape)))

    def op_conv_integer(self, node: onnx.NodeProto) -> None:
        x = self.dequantized(node, 0, "input x")
        w = self.dequantized(node, 1, "weight w")
        self.int32_output(self.conv(x, w, None, node, ""))

    def op_matmul_integer(self, node: onnx.NodeProto) -> None:
        a = self.dequantized(node, 0, "input A")
        b = self.dequantized(node, 1, "input B")
        op = nn.MatMulOp(a, b, TensorType(f32, self.matmul_shape(a, b)))
        self.emit(op)
        self.int32_output(op.result)

    def op_qlinear_add(self, node: onnx.NodeProto) -> None:
        a = self.dequantized(node, 0, "input A")
        b = self.dequantized(node, 3, "input B")
        shape = broadcast_shape(nn.shape_of(a), nn.shape_of(b))
        if shape is None:
            raise self.error(f"{self.at()}: shapes {list(nn.shape_of(a))} and {list(nn.shape_of(b))} do not broadcast")
        op = nn.AddOp(a, b, TensorType(f32, shape))
        self.emit(op)
        self.requantize_output(op.result, 6, 7)

    def op_qlinear_global_avg_pool(self, node: onnx.NodeProto) -> None:
        if _attr(node, "channels_last", 0):
            raise self.error(f"{self.at()}: channels_last=1 is not supported")
        x = self.dequantized(node, 0, "input X")
        xs = nn.shape_of(x)
        if len(xs) < 3:
            raise self.error(f"{self.at()}: input must have rank >= 3, got {list(xs)}")
        op = nn.GlobalAvgPoolOp(x, TensorType(f32, xs[:2] + (1,) * (len(xs) - 2)))
        self.emit(op)
        self.requantize_output(op.result, 3, 4)


# -- small helpers -----------------------------------------------------------------------
def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _scalar(imp: _Importer, arr: np.ndarray, what: str) -> float:
    arr = np.asarray(arr)
    if arr.size != 1:
        raise imp.error(f"{imp.at()}: {what} must be a scalar, got shape {list(arr.shape)}")
    return float(arr.reshape(-1)[0])


def _elem(v: SSAValue) -> Attribute:
    assert isinstance(v.type, TensorType)
    return v.type.element_type


def _estr(et: Attribute) -> str:
    return _qstr(et) if isinstance(et, UniformQuantizedType) else str(et)


def _qstr(qt: UniformQuantizedType) -> str:
    pairs = [f"{s.data!r}:{z.data}" for s, z in zip(qt.scales, qt.zero_points)]
    if qt.is_per_channel:
        shown = ", ".join(pairs[:3]) + (", ..." if len(pairs) > 3 else "")
        return f"!quant.uniform<{qt.storage_name}:f32:{qt.axis.data}, {{{shown}}}>"
    return f"!quant.uniform<{qt.storage_name}:f32, {pairs[0]}>"


def _np_type_name(dt: np.dtype) -> str:
    try:
        return _type_name(onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dt)))
    except Exception:
        return str(dt)


# Integer operands a node dequantizes: input index -> (scale index | None, zero-point index,
# axis rule) or "bias". Scale None = 1 (ConvInteger / MatMulInteger).
_QUANT_OPERANDS: dict[str, dict[int, Any]] = {
    "DequantizeLinear": {0: (1, 2, "attr")},
    "QLinearConv": {0: (1, 2, None), 3: (4, 5, "weight"), 8: "bias"},
    "QLinearMatMul": {0: (1, 2, None), 3: (4, 5, "cols")},
    "ConvInteger": {0: (None, 2, None), 1: (None, 3, "weight")},
    "MatMulInteger": {0: (None, 2, "rows"), 1: (None, 3, "cols")},
    "QLinearAdd": {0: (1, 2, None), 3: (4, 5, None)},
    "QLinearGlobalAveragePool": {0: (1, 2, None)},
}

# Inputs a node reads as constant parameters: input index -> what it is.
_QDQ_PARAMS = {1: "scale", 2: "zero-point"}
_QLINEAR_PARAMS = {1: "scale", 2: "zero-point", 4: "scale", 5: "zero-point", 6: "scale", 7: "zero-point"}
_PARAM_INPUTS: dict[str, dict[int, str]] = {
    "Clip": {1: "min", 2: "max"},
    "Reshape": {1: "shape"},
    "Squeeze": {1: "axes"},
    "Unsqueeze": {1: "axes"},
    "Pad": {1: "pads", 2: "constant_value", 3: "axes"},
    "Dropout": {1: "ratio", 2: "training_mode"},
    "QuantizeLinear": _QDQ_PARAMS,
    "DequantizeLinear": _QDQ_PARAMS,
    "QLinearConv": _QLINEAR_PARAMS,
    "QLinearMatMul": _QLINEAR_PARAMS,
    "QLinearAdd": _QLINEAR_PARAMS,
    "QLinearGlobalAveragePool": {1: "scale", 2: "zero-point", 3: "scale", 4: "zero-point"},
    "ConvInteger": {2: "zero-point", 3: "zero-point"},
    "MatMulInteger": {2: "zero-point", 3: "zero-point"},
}

_HANDLERS = {
    "Conv": _Importer.op_conv,
    "Gemm": _Importer.op_gemm,
    "MatMul": _Importer.op_matmul,
    "Add": lambda s, n: s.binary(n, nn.AddOp),
    "Sub": lambda s, n: s.binary(n, nn.SubOp),
    "Mul": lambda s, n: s.binary(n, nn.MulOp),
    "Div": lambda s, n: s.binary(n, nn.DivOp),
    "Relu": _Importer.op_relu,
    "Clip": _Importer.op_clip,
    "Softmax": _Importer.op_softmax,
    "BatchNormalization": _Importer.op_batch_norm,
    "GlobalAveragePool": _Importer.op_global_avg_pool,
    "AveragePool": _Importer.op_avg_pool,
    "MaxPool": _Importer.op_max_pool,
    "Flatten": _Importer.op_flatten,
    "Reshape": _Importer.op_reshape,
    "Squeeze": _Importer.op_squeeze,
    "Unsqueeze": _Importer.op_unsqueeze,
    "Transpose": _Importer.op_transpose,
    "Concat": _Importer.op_concat,
    "Pad": _Importer.op_pad,
    "Identity": _Importer.op_identity,
    "Dropout": _Importer.op_dropout,
    "QuantizeLinear": _Importer.op_quantize,
    "DequantizeLinear": _Importer.op_dequantize,
    "QLinearConv": _Importer.op_qlinear_conv,
    "QLinearMatMul": _Importer.op_qlinear_matmul,
    "ConvInteger": _Importer.op_conv_integer,
    "MatMulInteger": _Importer.op_matmul_integer,
}

_MS_HANDLERS = {
    "QLinearAdd": _Importer.op_qlinear_add,
    "QLinearGlobalAveragePool": _Importer.op_qlinear_global_avg_pool,
}

SUPPORTED_OPS = sorted(_HANDLERS) + ["Constant"] + [f"com.microsoft.{k}" for k in sorted(_MS_HANDLERS)]
