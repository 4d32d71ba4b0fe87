"""Numpy semantics of the `train` dialect, and `TrainState` to run training steps.

Parameters live in the interpreter, not in the IR: the first `train.load` of a run fills
a `{name: array}` table from the module's `train.param` initial values; optimizer ops
replace entries with updated arrays (never writing into an array a load returned, so a
load is a snapshot). `TrainState` keeps one interpreter, hence one table, across calls:

    state = TrainState(module)
    loss = state.train_step(x, label, lr)     # @train_step, updating the params
    w = state.params["layer0.weight"]
    g = state.grads["layer0.weight"]          # the gradient the last update applied
    logits = state.run("forward", [x])[0]     # sees the trained weights
    state.write_back()                        # trained values into the train.param ops

Gradients compute in float64 and store float32. A saved forward operand of quantized
type (the int8 path) is dequantized to its real value first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls
from xdsl.ir import SSAValue

from tinymlir.dialects import train
from tinymlir.dialects.nn import ints
from tinymlir.dialects.quant import UniformQuantizedType
from tinymlir.interpreter import InterpreterError, check_inputs, find_function, make_interpreter
from tinymlir.interpreter.nn_impls import dense_to_numpy
from tinymlir.interpreter.quant_impls import centered, channel_view


# -- parameter state ------------------------------------------------------------------
def param_ops(module: ModuleOp) -> list[train.ParamOp]:
    return [op for op in module.body.block.ops if isinstance(op, train.ParamOp)]


def initial_value(param: train.ParamOp) -> np.ndarray:
    """A param's initial value as the interpreter carries it (integer storage if quantized)."""
    data = dense_to_numpy(param.value)
    qt = param.quantized_type
    if qt is not None:
        data = data.view(qt.storage_dtype)
    return np.array(data)


def initial_params(module: ModuleOp) -> dict[str, np.ndarray]:
    return {op.sym_name.data: initial_value(op) for op in param_ops(module)}


def _params(interpreter: Interpreter) -> dict[str, np.ndarray]:
    return interpreter.get_data(TrainFunctions, "params", lambda: initial_params(interpreter.module))


def _grads(interpreter: Interpreter) -> dict[str, np.ndarray]:
    """The gradient each optimizer op last applied, by param name (for tests and debugging)."""
    return interpreter.get_data(TrainFunctions, "grads", dict)


class TrainState:
    """One interpreter over a training module whose parameter table persists across calls."""

    def __init__(self, module: ModuleOp):
        self.module = module
        self.interpreter = make_interpreter(module)
        self.params: dict[str, np.ndarray] = _params(self.interpreter)
        self.grads: dict[str, np.ndarray] = _grads(self.interpreter)

    def run(self, name: str, inputs: Sequence[Any]) -> list[np.ndarray]:
        func = find_function(self.module, name)
        args = check_inputs(func, inputs)
        try:
            results = self.interpreter.call_op(name, tuple(args))
        except InterpreterError:
            raise
        except Exception as e:
            raise InterpreterError(f"cannot run @{name}: {e}") from e
        return [np.asarray(r) for r in results]

    def train_step(self, *inputs: Any, name: str = "train_step") -> float:
        """Run one training step (inputs..., label, lr); returns the loss."""
        return float(self.run(name, list(inputs))[0])

    def write_back(self) -> None:
        """Store the current values as the `train.param` initial values."""
        for op in param_ops(self.module):
            op.value = train.param_value_attr(self.params[op.sym_name.data], op.type)


# -- gradient kernels (float64 in, float64 out) --------------------------------------
def real_value(value: SSAValue, data: np.ndarray) -> np.ndarray:
    """A saved operand as float64 real values (quantized storage is dequantized)."""
    t = value.type
    assert isinstance(t, TensorType)
    qt = t.element_type
    if isinstance(qt, UniformQuantizedType):
        return centered(data, qt) * channel_view(qt.scale_array(), qt, data.ndim)
    return np.asarray(data, dtype=np.float64)


def _window(i: int, j: int, strides, dilations, oh: int, ow: int) -> tuple[slice, slice]:
    r0, c0 = i * dilations[0], j * dilations[1]
    return slice(r0, r0 + strides[0] * (oh - 1) + 1, strides[0]), slice(c0, c0 + strides[1] * (ow - 1) + 1, strides[1])


def _pad(x: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    top, left, bottom, right = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _crop(xp: np.ndarray, pads, shape) -> np.ndarray:
    top, left = pads[0], pads[1]
    return xp[:, :, top : top + shape[2], left : left + shape[3]]


def conv2d_input_grad(dy: np.ndarray, w: np.ndarray, x_shape, strides, pads, dilations, groups: int) -> np.ndarray:
    """Transposed convolution: scatter `w^T dy` back over every kernel position, then crop."""
    n, o, oh, ow = dy.shape
    _, cg, kh, kw = w.shape
    og = o // groups
    hp, wp = x_shape[2] + pads[0] + pads[2], x_shape[3] + pads[1] + pads[3]
    dxp = np.zeros((n, groups, cg, hp, wp))
    wg = w.reshape(groups, og, cg, kh, kw)
    dyg = dy.reshape(n, groups, og, oh * ow)
    for i in range(kh):
        for j in range(kw):
            if og == 1 and cg == 1:  # depthwise
                contrib = (wg[None, :, 0, 0, i, j, None] * dyg[:, :, 0, :])[:, :, None, :]
            else:
                contrib = np.matmul(wg[None, :, :, :, i, j].transpose(0, 1, 3, 2), dyg)
            rows, cols = _window(i, j, strides, dilations, oh, ow)
            dxp[:, :, :, rows, cols] += contrib.reshape(n, groups, cg, oh, ow)
    return _crop(dxp.reshape(n, groups * cg, hp, wp), pads, x_shape)


def conv2d_weight_grad(dy: np.ndarray, x: np.ndarray, kernel, strides, pads, dilations, groups: int,
                       channels: Sequence[int] | None = None) -> np.ndarray:
    n, o, oh, ow = dy.shape
    c = x.shape[1]
    cg, og = c // groups, o // groups
    kh, kw = kernel
    xp = _pad(x, pads)
    dyg = dy.reshape(n, groups, og, oh * ow)
    dw = np.zeros((groups, og, cg, kh, kw))
    for i in range(kh):
        for j in range(kw):
            rows, cols = _window(i, j, strides, dilations, oh, ow)
            patch = xp[:, :, rows, cols].reshape(n, groups, cg, oh * ow)
            if og == 1 and cg == 1:  # depthwise
                dw[:, 0, 0, i, j] = np.einsum("ngp,ngp->g", dyg[:, :, 0, :], patch[:, :, 0, :])
            else:
                dw[:, :, :, i, j] = np.matmul(dyg, patch.transpose(0, 1, 3, 2)).sum(axis=0)
    dw = dw.reshape(o, cg, kh, kw)
    return dw if channels is None else dw[list(channels)]


def avg_pool_grad(dy: np.ndarray, x_shape, kernel, strides, pads, count_include_pad: bool) -> np.ndarray:
    kh, kw = kernel
    n, c, oh, ow = dy.shape
    hp, wp = x_shape[2] + pads[0] + pads[2], x_shape[3] + pads[1] + pads[3]
    if count_include_pad:
        count: np.ndarray | int = kh * kw
    else:
        ones = _pad(np.ones((1, 1) + tuple(x_shape[2:])), pads)
        count = sum(ones[:, :, r, s] for r, s in (_window(i, j, strides, (1, 1), oh, ow)
                                                   for i in range(kh) for j in range(kw)))
    share = dy / count
    dxp = np.zeros((n, c, hp, wp))
    for i in range(kh):
        for j in range(kw):
            rows, cols = _window(i, j, strides, (1, 1), oh, ow)
            dxp[:, :, rows, cols] += share
    return _crop(dxp, pads, x_shape)


def max_pool_grad(dy: np.ndarray, x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    kh, kw = kernel
    n, c, oh, ow = dy.shape
    xp = _pad(x, pads, -np.inf)
    windows = [_window(i, j, strides, (1, 1), oh, ow) for i in range(kh) for j in range(kw)]
    best = xp[:, :, windows[0][0], windows[0][1]]
    arg = np.zeros(best.shape, dtype=np.int64)
    for k, (rows, cols) in enumerate(windows[1:], start=1):
        patch = xp[:, :, rows, cols]
        better = patch > best  # strict: the first maximum keeps the gradient
        best = np.where(better, patch, best)
        arg = np.where(better, k, arg)
    dxp = np.zeros(xp.shape)
    for k, (rows, cols) in enumerate(windows):
        dxp[:, :, rows, cols] += np.where(arg == k, dy, 0.0)
    return _crop(dxp, pads, x.shape)


def reduce_to_shape(g: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    shape = tuple(shape)
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _shape(value: SSAValue) -> tuple[int, ...]:
    assert isinstance(value.type, TensorType)
    return tuple(value.type.get_shape())


def _rows(op: train.SGDOp | train.AdamOp) -> Any:
    return slice(None) if op.channels is None else list(ints(op.channels))


def _updated(old: np.ndarray, rows: Any, new_rows: np.ndarray) -> np.ndarray:
    """A new float32 array: `old` with `rows` replaced (never written in place)."""
    out = np.array(old, dtype=np.float32)
    out[rows] = new_rows
    return out


@register_impls
class TrainFunctions(InterpreterFunctions):
    # -- state ----------------------------------------------------------------------
    @impl(train.LoadOp)
    def run_load(self, interpreter: Interpreter, op: train.LoadOp, args: tuple[Any, ...]):
        params = _params(interpreter)
        name = op.param.root_reference.data
        if name not in params:
            raise InterpreterError(f"train.load: no param @{name}")
        return (params[name],)

    @impl(train.IncrementOp)
    def run_increment(self, interpreter: Interpreter, op: train.IncrementOp, args: tuple[Any, ...]):
        params = _params(interpreter)
        name = op.param.root_reference.data
        params[name] = params[name] + 1
        return ()

    @impl(train.SGDOp)
    def run_sgd(self, interpreter: Interpreter, op: train.SGDOp, args: tuple[Any, ...]):
        params = _params(interpreter)
        g, lr = np.asarray(args[0], dtype=np.float64), float(args[1])
        name, rows = op.param.root_reference.data, _rows(op)
        _grads(interpreter)[name] = _f32(g)
        step = g
        if op.velocity is not None and op.momentum is not None:
            vname = op.velocity.root_reference.data
            v = _f32(op.momentum.value.data * params[vname][rows].astype(np.float64) + g)
            params[vname] = _updated(params[vname], rows, v)
            step = v.astype(np.float64)
        params[name] = _updated(params[name], rows, params[name][rows].astype(np.float64) - lr * step)
        return ()

    @impl(train.AdamOp)
    def run_adam(self, interpreter: Interpreter, op: train.AdamOp, args: tuple[Any, ...]):
        params = _params(interpreter)
        g, lr = np.asarray(args[0], dtype=np.float64), float(args[1])
        b1, b2, eps = op.beta1.value.data, op.beta2.value.data, op.eps.value.data
        name, mname, vname = (r.root_reference.data for r in (op.param, op.m, op.v))
        _grads(interpreter)[name] = _f32(g)
        t = int(np.asarray(params[op.step.root_reference.data]).reshape(-1)[0])
        if t < 1:
            raise InterpreterError(f"train.adam: step counter {op.step} is {t}; train.increment must run first")
        rows = _rows(op)
        m = _f32(b1 * params[mname][rows].astype(np.float64) + (1 - b1) * g)
        v = _f32(b2 * params[vname][rows].astype(np.float64) + (1 - b2) * g * g)
        params[mname] = _updated(params[mname], rows, m)
        params[vname] = _updated(params[vname], rows, v)
        denom = np.sqrt(v.astype(np.float64)) / np.sqrt(1 - b2**t) + eps
        new = params[name][rows].astype(np.float64) - lr / (1 - b1**t) * m.astype(np.float64) / denom
        params[name] = _updated(params[name], rows, new)
        return ()

    # -- losses ---------------------------------------------------------------------
    @impl(train.SoftmaxCrossEntropyOp)
    def run_softmax_cross_entropy(self, interpreter: Interpreter, op: train.SoftmaxCrossEntropyOp,
                                  args: tuple[Any, ...]):
        z = np.asarray(args[0], dtype=np.float64)
        n, k = z.shape
        label = np.asarray(args[1], dtype=np.int64).reshape(n)
        if np.any((label < 0) | (label >= k)):
            raise InterpreterError(f"train.softmax_cross_entropy: label {label.tolist()} is outside [0, {k})")
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -logp[np.arange(n), label].mean()
        grad = np.exp(logp)
        grad[np.arange(n), label] -= 1.0
        return (np.float32(loss), _f32(grad / n))

    @impl(train.MSEOp)
    def run_mse(self, interpreter: Interpreter, op: train.MSEOp, args: tuple[Any, ...]):
        d = np.asarray(args[0], dtype=np.float64) - np.asarray(args[1], dtype=np.float64)
        return (np.float32(np.mean(d * d)), _f32(2.0 * d / d.size))

    # -- gradients ------------------------------------------------------------------
    @impl(train.Conv2dInputGradOp)
    def run_conv2d_input_grad(self, interpreter: Interpreter, op: train.Conv2dInputGradOp, args: tuple[Any, ...]):
        dy, w = np.asarray(args[0], dtype=np.float64), real_value(op.weight, args[1])
        return (_f32(conv2d_input_grad(dy, w, _shape(op.result), *op.conv_params())),)

    @impl(train.Conv2dWeightGradOp)
    def run_conv2d_weight_grad(self, interpreter: Interpreter, op: train.Conv2dWeightGradOp, args: tuple[Any, ...]):
        dy, x = np.asarray(args[0], dtype=np.float64), real_value(op.input, args[1])
        channels = None if op.channels is None else ints(op.channels)
        return (_f32(conv2d_weight_grad(dy, x, _shape(op.result)[2:], *op.conv_params(), channels=channels)),)

    @impl(train.BiasGradOp)
    def run_bias_grad(self, interpreter: Interpreter, op: train.BiasGradOp, args: tuple[Any, ...]):
        dy = np.asarray(args[0], dtype=np.float64)
        return (_f32(dy.sum(axis=tuple(a for a in range(dy.ndim) if a != 1))),)

    @impl(train.ReluGradOp)
    def run_relu_grad(self, interpreter: Interpreter, op: train.ReluGradOp, args: tuple[Any, ...]):
        y = real_value(op.saved, args[1])
        return (_f32(np.where(y > 0, args[0], 0)),)

    @impl(train.ClipGradOp)
    def run_clip_grad(self, interpreter: Interpreter, op: train.ClipGradOp, args: tuple[Any, ...]):
        v = real_value(op.saved, args[1])
        lo, hi = float(np.float32(op.min.value.data)), float(np.float32(op.max.value.data))
        return (_f32(np.where((v > lo) & (v < hi), args[0], 0)),)

    @impl(train.GlobalAvgPoolGradOp)
    def run_global_avg_pool_grad(self, interpreter: Interpreter, op: train.GlobalAvgPoolGradOp,
                                 args: tuple[Any, ...]):
        shape = _shape(op.result)
        count = int(np.prod(shape[2:]))
        return (_f32(np.broadcast_to(np.asarray(args[0], dtype=np.float64) / count, shape)),)

    @impl(train.AvgPoolGradOp)
    def run_avg_pool_grad(self, interpreter: Interpreter, op: train.AvgPoolGradOp, args: tuple[Any, ...]):
        dy = np.asarray(args[0], dtype=np.float64)
        return (_f32(avg_pool_grad(dy, _shape(op.result), *op.pool_params(), op.count_include_pad.value.data)),)

    @impl(train.MaxPoolGradOp)
    def run_max_pool_grad(self, interpreter: Interpreter, op: train.MaxPoolGradOp, args: tuple[Any, ...]):
        dy, x = np.asarray(args[0], dtype=np.float64), real_value(op.input, args[1])
        return (_f32(max_pool_grad(dy, x, *op.pool_params())),)

    @impl(train.ReduceToShapeOp)
    def run_reduce_to_shape(self, interpreter: Interpreter, op: train.ReduceToShapeOp, args: tuple[Any, ...]):
        return (_f32(reduce_to_shape(np.asarray(args[0], dtype=np.float64), _shape(op.result))),)
