"""Exact numpy semantics of the `quant` dialect.

A quantized tensor is carried as its integer storage (int8 / uint8 / int32 arrays); its
scale and zero-point come from the SSA value's type. Compute ops accumulate integers
exactly and then requantize with the real-valued meaning of DQ -> op -> Q:

    real = acc * (s_x * s_w[c])        (float64)
    y    = clamp(round_half_even(real / s_y) + z_y, act_min, act_max)

QuantizeLinear / DequantizeLinear themselves follow ONNX, in float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls

from tinymlir.dialects import quant
from tinymlir.dialects.nn import ints
from tinymlir.dialects.quant import UniformQuantizedType, qtype
from tinymlir.interpreter import kernels


def channel_view(values: np.ndarray, qt: UniformQuantizedType, ndim: int) -> np.ndarray:
    """Per-channel values shaped to broadcast along the type's axis (scalar if per-tensor)."""
    if not qt.is_per_channel:
        return values.reshape(())
    shape = [1] * ndim
    shape[qt.axis.data] = -1
    return values.reshape(shape)


def centered(x: np.ndarray, qt: UniformQuantizedType) -> np.ndarray:
    """`q - zero_point` as float64 (exact)."""
    return x.astype(np.float64) - channel_view(qt.zp_array(), qt, x.ndim)


def dequantize_f32(x: np.ndarray, qt: UniformQuantizedType) -> np.ndarray:
    zp = channel_view(qt.zp_array().astype(np.int32), qt, x.ndim)
    scale = channel_view(qt.scale_array().astype(np.float32), qt, x.ndim)
    return (x.astype(np.int32) - zp).astype(np.float32) * scale


def quantize_f32(x: np.ndarray, qt: UniformQuantizedType) -> np.ndarray:
    scale = channel_view(qt.scale_array().astype(np.float32), qt, x.ndim)
    zp = channel_view(qt.zp_array(), qt, x.ndim)
    return kernels.round_saturate(x.astype(np.float32) / scale, zp, qt.storage_min, qt.storage_max, qt.storage_dtype)


def requantize_real(real: np.ndarray, op: Any) -> np.ndarray:
    """Store a real-valued float64 result in the op's (per-tensor) result type."""
    qt = qtype(op.result)
    lo, hi = op.activation_range() if hasattr(op, "activation_range") else (qt.storage_min, qt.storage_max)
    return kernels.round_saturate(real / qt.scale, qt.zero_point, lo, hi, qt.storage_dtype)


def _bias(args: tuple[Any, ...], op: Any) -> np.ndarray | None:
    return args[2].astype(np.float64) if op.bias is not None else None


@register_impls
class QuantFunctions(InterpreterFunctions):
    @impl(quant.ConstantOp)
    def run_constant(self, interpreter: Interpreter, op: quant.ConstantOp, args: tuple[Any, ...]):
        return (op.numpy(),)

    @impl(quant.QuantizeOp)
    def run_quantize(self, interpreter: Interpreter, op: quant.QuantizeOp, args: tuple[Any, ...]):
        return (quantize_f32(args[0], qtype(op.result)),)

    @impl(quant.DequantizeOp)
    def run_dequantize(self, interpreter: Interpreter, op: quant.DequantizeOp, args: tuple[Any, ...]):
        return (dequantize_f32(args[0], qtype(op.input)),)

    @impl(quant.RequantizeOp)
    def run_requantize(self, interpreter: Interpreter, op: quant.RequantizeOp, args: tuple[Any, ...]):
        qi = qtype(op.input)
        return (requantize_real(centered(args[0], qi) * qi.scale, op),)

    @impl(quant.Conv2dOp)
    def run_conv2d(self, interpreter: Interpreter, op: quant.Conv2dOp, args: tuple[Any, ...]):
        qx, qw = qtype(op.input), qtype(op.weight)
        x, w = centered(args[0], qx), centered(args[1], qw)
        # Padding holds the real value 0, i.e. the stored zero-point: after centering, 0.
        acc = kernels.conv2d(x, w, ints(op.strides), ints(op.pads), ints(op.dilations), op.groups.value.data)
        b = _bias(args, op)
        if b is not None:
            acc += b[None, :, None, None]
        kernels.check_exact(acc, op.name)
        scale = qx.scale * np.broadcast_to(qw.scale_array(), (acc.shape[1],))
        return (requantize_real(acc * scale[None, :, None, None], op),)

    @impl(quant.FullyConnectedOp)
    def run_fully_connected(self, interpreter: Interpreter, op: quant.FullyConnectedOp, args: tuple[Any, ...]):
        qx, qw = qtype(op.input), qtype(op.weight)
        acc = centered(args[0], qx) @ centered(args[1], qw).T
        b = _bias(args, op)
        if b is not None:
            acc += b[None, :]
        kernels.check_exact(acc, op.name)
        scale = qx.scale * np.broadcast_to(qw.scale_array(), (acc.shape[1],))
        return (requantize_real(acc * scale[None, :], op),)

    @impl(quant.AddOp)
    def run_add(self, interpreter: Interpreter, op: quant.AddOp, args: tuple[Any, ...]):
        qa, qb = qtype(op.lhs), qtype(op.rhs)
        real = centered(args[0], qa) * qa.scale + centered(args[1], qb) * qb.scale
        return (requantize_real(real, op),)

    @impl(quant.GlobalAvgPoolOp)
    def run_global_avg_pool(self, interpreter: Interpreter, op: quant.GlobalAvgPoolOp, args: tuple[Any, ...]):
        qx = qtype(op.input)
        x = centered(args[0], qx)
        hw = x.shape[2] * x.shape[3]
        real = x.sum(axis=(2, 3), keepdims=True) * qx.scale / hw
        return (requantize_real(real, op),)

