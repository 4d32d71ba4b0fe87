"""Numpy semantics of the `cmsisnn` dialect: CMSIS-NN's fixed-point integer arithmetic.

Every op calls the numpy model of its C kernel in `cmsisnn_math.py`, so the interpreter
is bit-exact with the generated C code. Tensors are int8 (activations, weights) and
int32 (biases) arrays, activations NHWC. The output height and width are the result
type's, passed to the kernels as CMSIS-NN's explicit output dimensions (so asymmetric
padding works as in C: window elements outside the input are skipped).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls

from tinymlir.dialects import cmsisnn
from tinymlir.dialects.cmsisnn import ints
from tinymlir.interpreter import kernels


class _Math:
    """`cmsisnn_math`, imported when a cmsisnn op first runs (the other dialects'
    interpreters do not need it)."""

    def __getattr__(self, name: str) -> Any:
        from tinymlir.interpreter import cmsisnn_math

        return getattr(cmsisnn_math, name)


cm = _Math()


def _v(attr: Any) -> int:
    return int(attr.value.data)


def _act(op: Any) -> tuple[int, int]:
    return _v(op.act_min), _v(op.act_max)


def _out_hw(op: Any) -> tuple[int, int]:
    shape = op.result.type.get_shape()
    return int(shape[1]), int(shape[2])


def _requant(op: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ints(op.multipliers), dtype=np.int64), np.array(ints(op.shifts), dtype=np.int64)


def _bias(args: tuple[Any, ...], op: Any) -> np.ndarray | None:
    return np.asarray(args[2], dtype=np.int32) if op.bias is not None else None


@register_impls
class CmsisNNFunctions(InterpreterFunctions):
    @impl(cmsisnn.ConvolveWrapperS8Op)
    def run_convolve(self, interpreter: Interpreter, op: cmsisnn.ConvolveWrapperS8Op, args: tuple[Any, ...]):
        y = cm.convolve_s8(
            args[0], args[1], _bias(args, op), _v(op.input_offset), _v(op.output_offset), ints(op.stride),
            ints(op.padding), ints(op.dilation), *_act(op), *_requant(op), out_hw=_out_hw(op),
        )
        return (y,)

    @impl(cmsisnn.DepthwiseConvWrapperS8Op)
    def run_depthwise(self, interpreter: Interpreter, op: cmsisnn.DepthwiseConvWrapperS8Op, args: tuple[Any, ...]):
        y = cm.depthwise_conv_s8(
            args[0], args[1], _bias(args, op), _v(op.input_offset), _v(op.output_offset), _v(op.ch_mult),
            ints(op.stride), ints(op.padding), ints(op.dilation), *_act(op), *_requant(op), out_hw=_out_hw(op),
        )
        return (y,)

    @impl(cmsisnn.FullyConnectedS8Op)
    def run_fully_connected(self, interpreter: Interpreter, op: cmsisnn.FullyConnectedS8Op, args: tuple[Any, ...]):
        mults, shifts = ints(op.multipliers), ints(op.shifts)
        if len(mults) == 1:
            multiplier: Any = mults[0]
            shift: Any = shifts[0]
        else:
            multiplier, shift = np.array(mults), np.array(shifts)
        y = cm.fully_connected_s8(
            args[0], args[1], _bias(args, op), _v(op.input_offset), _v(op.filter_offset), _v(op.output_offset),
            *_act(op), multiplier, shift,
        )
        return (np.asarray(y, dtype=np.int8),)

    @impl(cmsisnn.ElementwiseAddS8Op)
    def run_add(self, interpreter: Interpreter, op: cmsisnn.ElementwiseAddS8Op, args: tuple[Any, ...]):
        y = cm.elementwise_add_s8(
            args[0], args[1],
            _v(op.input1_offset), _v(op.input1_multiplier), _v(op.input1_shift),
            _v(op.input2_offset), _v(op.input2_multiplier), _v(op.input2_shift),
            _v(op.left_shift),
            _v(op.output_offset), _v(op.output_multiplier), _v(op.output_shift),
            *_act(op),
        )
        return (np.asarray(y, dtype=np.int8).reshape(args[0].shape),)

    @impl(cmsisnn.AvgpoolS8Op)
    def run_avgpool(self, interpreter: Interpreter, op: cmsisnn.AvgpoolS8Op, args: tuple[Any, ...]):
        return (cm.avgpool_s8(args[0], ints(op.kernel), ints(op.stride), ints(op.padding), *_act(op),
                              out_hw=_out_hw(op)),)

    @impl(cmsisnn.MaxPoolS8Op)
    def run_max_pool(self, interpreter: Interpreter, op: cmsisnn.MaxPoolS8Op, args: tuple[Any, ...]):
        return (cm.max_pool_s8(args[0], ints(op.kernel), ints(op.stride), ints(op.padding), *_act(op),
                               out_hw=_out_hw(op)),)

    @impl(cmsisnn.RequantizeS8Op)
    def run_requantize(self, interpreter: Interpreter, op: cmsisnn.RequantizeS8Op, args: tuple[Any, ...]):
        acc = (args[0].astype(np.int64) + _v(op.input_offset)) << _v(op.left_shift)
        y = cm.requantize(acc, _v(op.multiplier), _v(op.shift)).astype(np.int64) + _v(op.output_offset)
        lo, hi = _act(op)
        return (np.clip(y, lo, hi).astype(np.int8),)

    @impl(cmsisnn.QuantizeS8Op)
    def run_quantize(self, interpreter: Interpreter, op: cmsisnn.QuantizeS8Op, args: tuple[Any, ...]):
        scale = np.float32(op.scale.value.data)
        return (kernels.round_saturate(args[0].astype(np.float32) / scale, _v(op.zero_point), -128, 127, np.int8),)

    @impl(cmsisnn.DequantizeS8Op)
    def run_dequantize(self, interpreter: Interpreter, op: cmsisnn.DequantizeS8Op, args: tuple[Any, ...]):
        scale = np.float32(op.scale.value.data)
        return ((args[0].astype(np.int32) - np.int32(_v(op.zero_point))).astype(np.float32) * scale,)
