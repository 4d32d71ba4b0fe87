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
type (the int8 path) is dequantized to its real value first. Quantized params are their
integer storage; `train.sgd` / `train.adam` update them in float64 (their float32 state
rounded to float32) and round (half to even, or stochastically from the `rng` param's
counter) and saturate back into storage;
`train.clamp_mask` recomputes its producer's pre-saturation value from the producer's
operands (and checks that clamping it gives the producer's result).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls
from xdsl.ir import SSAValue

from tinymlir.dialects import quant, train
from tinymlir.dialects.nn import ints
from tinymlir.dialects.quant import UniformQuantizedType, qtype
from tinymlir.interpreter import InterpreterError, check_inputs, find_function, kernels, make_interpreter
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


def _rows(op: Any) -> Any:
    return slice(None) if op.channels is None else list(ints(op.channels))


# -- the int8 path -------------------------------------------------------------------------
def pre_saturation(op: Any, args: Sequence[Any]) -> np.ndarray:
    """The value a clamping quant op computes before its clamp, `round(real / s_y) + z_y`
    (float64 holding integers), from the op's operand values; the exact arithmetic of
    `quant_impls` (docs/semantics.md) without the final clamp."""
    qy = qtype(op.result)
    if isinstance(op, quant.QuantizeOp):  # float32, as ONNX QuantizeLinear
        scale = np.float32(qy.scale)
        return np.rint(np.asarray(args[0], dtype=np.float32) / scale).astype(np.float64) + qy.zero_point
    if isinstance(op, quant.RequantizeOp):
        qi = qtype(op.input)
        real = centered(args[0], qi) * qi.scale
    elif isinstance(op, quant.AddOp):
        qa, qb = qtype(op.lhs), qtype(op.rhs)
        real = centered(args[0], qa) * qa.scale + centered(args[1], qb) * qb.scale
    elif isinstance(op, quant.GlobalAvgPoolOp):
        qx = qtype(op.input)
        x = centered(args[0], qx)
        real = x.sum(axis=(2, 3), keepdims=True) * qx.scale / (x.shape[2] * x.shape[3])
    elif isinstance(op, (quant.Conv2dOp, quant.FullyConnectedOp)):
        qx, qw = qtype(op.input), qtype(op.weight)
        x, w = centered(args[0], qx), centered(args[1], qw)
        if isinstance(op, quant.Conv2dOp):
            acc = kernels.conv2d(x, w, ints(op.strides), ints(op.pads), ints(op.dilations), op.groups.value.data)
        else:
            acc = x @ w.T
        if op.bias is not None:
            acc += np.asarray(args[2], dtype=np.float64).reshape((1, -1) + (1,) * (acc.ndim - 2))
        kernels.check_exact(acc, op.name)
        scale = qx.scale * np.broadcast_to(qw.scale_array(), (acc.shape[1],))
        real = acc * scale.reshape((1, -1) + (1,) * (acc.ndim - 2))
    else:
        raise InterpreterError(f"train.clamp_mask: '{op.name}' has no clamp")
    return np.rint(real / qy.scale) + qy.zero_point


def clamp_range(op: Any) -> tuple[int, int]:
    if hasattr(op, "activation_range"):
        return op.activation_range()
    qy = qtype(op.result)
    return qy.storage_min, qy.storage_max


def update_range(qt: UniformQuantizedType) -> tuple[int, int]:
    """Where a quantized update saturates: the symmetric signed range (int8 [-127, 127],
    int32 [-(2^31 - 1), 2^31 - 1]), or the whole unsigned one."""
    if qt.signed:
        return -qt.storage_max, qt.storage_max
    return qt.storage_min, qt.storage_max


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (a bijection of uint32), wrapping arithmetic."""
    h = np.asarray(h, dtype=np.uint32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def stochastic_uniforms(state: int, count: int) -> np.ndarray:
    """`count` uniforms in [0, 1) of `train.sgd`'s stochastic rounding from a uint32 state:
    u_i = (fmix32(state + i) >> 8) * 2^-24 (exact in float64)."""
    counters = (np.uint64(state) + np.arange(count, dtype=np.uint64)) & np.uint64(0xFFFFFFFF)
    return (fmix32(counters.astype(np.uint32)) >> np.uint32(8)).astype(np.float64) * 2.0**-24


def _state_rows(param: np.ndarray, state: np.ndarray, rows: Any) -> Any:
    """The rows of an optimizer state array that go with the param rows `rows`: the same
    ones when the state has the param's shape, all of it when it holds the trained rows."""
    return rows if np.shape(state) == np.shape(param) else slice(None)


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

    def _quantized_step(self, interpreter: Interpreter, op: Any, qt: UniformQuantizedType, name: str, rows: Any,
                        step: np.ndarray) -> np.ndarray:
        """q' = clamp(R(q - step)) on the rows `rows` of quantized param `name` (R: the op's
        rounding; stochastic draws one number per element, skipped ones included); an
        element whose q - step is not finite keeps q. Returns the finite mask."""
        params = _params(interpreter)
        with np.errstate(all="ignore"):
            v = params[name][rows].astype(np.float64) - step
        fin = np.isfinite(v)
        v = np.where(fin, v, 0.0)
        if op.rounding_mode == "stochastic":
            assert op.rng is not None
            rname = op.rng.root_reference.data
            state = params[rname]
            s0 = int(np.asarray(state).reshape(-1)[0].astype(np.int64)) & 0xFFFFFFFF
            r = np.floor(v + stochastic_uniforms(s0, v.size).reshape(v.shape))
            params[rname] = np.full(state.shape, (s0 + v.size) & 0xFFFFFFFF, dtype=np.uint32).view(state.dtype)
        else:
            r = np.rint(v)
        lo, hi = update_range(qt)
        out = np.array(params[name])
        out[rows] = np.where(fin, np.clip(r, lo, hi), out[rows]).astype(qt.storage_dtype)
        params[name] = out
        return fin

    @impl(train.SGDOp)
    def run_sgd(self, interpreter: Interpreter, op: train.SGDOp, args: tuple[Any, ...]):
        params = _params(interpreter)
        g, lr = np.asarray(args[0], dtype=np.float64), float(args[1])
        name, rows = op.param.root_reference.data, _rows(op)
        _grads(interpreter)[name] = _f32(g)
        param = train.lookup_param(op, op.param)
        qt = None if param is None else param.quantized_type
        step = g
        vname = srows = v = None
        if op.velocity is not None and op.momentum is not None:
            vname = op.velocity.root_reference.data
            srows = _state_rows(params[name], params[vname], rows)
            v = _f32(op.momentum.value.data * params[vname][srows].astype(np.float64) + g)
            step = v.astype(np.float64)
        if qt is not None:
            fin = self._quantized_step(interpreter, op, qt, name, rows, lr * step)
            if vname is not None:
                params[vname] = _updated(params[vname], srows, np.where(fin, v, params[vname][srows]))
            return ()
        if vname is not None:
            params[vname] = _updated(params[vname], srows, v)
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
            raise InterpreterError(f"{op.name}: step counter {op.step} is {t}; train.increment must run first")
        rows = _rows(op)
        mrows = _state_rows(params[name], params[mname], rows)
        vrows = _state_rows(params[name], params[vname], rows)
        m = _f32(b1 * params[mname][mrows].astype(np.float64) + (1 - b1) * g)
        v = _f32(b2 * params[vname][vrows].astype(np.float64) + (1 - b2) * g * g)
        param = train.lookup_param(op, op.param)
        qt = None if param is None else param.quantized_type
        if qt is not None:
            m64, v64 = m.astype(np.float64), v.astype(np.float64)
            with np.errstate(all="ignore"):
                step = lr * (m64 / (1 - b1**t)) / (np.sqrt(v64 / (1 - b2**t)) + eps)
            fin = self._quantized_step(interpreter, op, qt, name, rows, step)
            params[mname] = _updated(params[mname], mrows, np.where(fin, m, params[mname][mrows]))
            params[vname] = _updated(params[vname], vrows, np.where(fin, v, params[vname][vrows]))
            return ()
        params[mname] = _updated(params[mname], mrows, m)
        params[vname] = _updated(params[vname], vrows, v)
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

    # -- the int8 path --------------------------------------------------------------
    @impl(train.ClampMaskOp)
    def run_clamp_mask(self, interpreter: Interpreter, op: train.ClampMaskOp, args: tuple[Any, ...]):
        producer = op.output.owner
        pre = pre_saturation(producer, args[1:])
        lo, hi = clamp_range(producer)
        if not np.array_equal(np.clip(pre, lo, hi), np.asarray(args[0], dtype=np.float64)):
            raise InterpreterError(f"train.clamp_mask: recomputing '{producer.name}' disagrees with its result")
        return ((pre >= lo) & (pre <= hi),)

    @impl(train.MaskGradOp)
    def run_mask_grad(self, interpreter: Interpreter, op: train.MaskGradOp, args: tuple[Any, ...]):
        return (_f32(np.where(np.asarray(args[1], dtype=bool), args[0], 0)),)

    @impl(train.FullyConnectedInputGradOp)
    def run_fc_input_grad(self, interpreter: Interpreter, op: train.FullyConnectedInputGradOp,
                          args: tuple[Any, ...]):
        return (_f32(np.asarray(args[0], dtype=np.float64) @ real_value(op.weight, args[1])),)

    @impl(train.FullyConnectedWeightGradOp)
    def run_fc_weight_grad(self, interpreter: Interpreter, op: train.FullyConnectedWeightGradOp,
                           args: tuple[Any, ...]):
        dy = np.asarray(args[0], dtype=np.float64)
        if op.channels is not None:
            dy = dy[:, list(ints(op.channels))]
        return (_f32(dy.T @ real_value(op.input, args[1])),)

    @impl(train.ScaleGradOp)
    def run_scale_grad(self, interpreter: Interpreter, op: train.ScaleGradOp, args: tuple[Any, ...]):
        param = train.lookup_param(op, op.param)
        qt = None if param is None else param.quantized_type
        if qt is None:
            raise InterpreterError(f"train.scale_grad: {op.param} is not a quantized param")
        g = np.asarray(args[0], dtype=np.float64)
        factor = qt.scale_array() ** op.exponent.value.data
        if qt.is_per_channel:
            if op.channels is not None:
                factor = factor[list(ints(op.channels))]
            factor = channel_view(factor, qt, g.ndim)
        else:
            factor = factor.reshape(())
        return (_f32(g * factor),)

    # -- fused gradient + update (reorder-update) ---------------------------------------
    def _grad_sgd(self, interpreter: Interpreter, op: Any, g: np.ndarray, lr: Any) -> tuple[()]:
        """Scale `g` by `op.scales` as train.scale_grad does, then run train.sgd's update:
        run_sgd reads the same properties (param, channels, momentum, velocity, rounding,
        rng) from the fused op, so a fused op and its unfused ops agree bit for bit."""
        if op.scales is not None:
            param = train.lookup_param(op, op.param)
            qt = None if param is None else param.quantized_type
            if qt is None:
                raise InterpreterError(f"{op.name}: scales need a quantized param, {op.param} is not one")
            for e in ints(op.scales):
                factor = qt.scale_array() ** e
                if qt.is_per_channel:
                    if op.channels is not None:
                        factor = factor[list(ints(op.channels))]
                    factor = channel_view(factor, qt, g.ndim)
                else:
                    factor = factor.reshape(())
                g = _f32(np.asarray(g, dtype=np.float64) * factor)
        if op.is_adam:
            self.run_adam(interpreter, op, (g, lr))
        else:
            self.run_sgd(interpreter, op, (g, lr))
        return ()

    @impl(train.Conv2dWeightGradSGDOp)
    def run_conv2d_weight_grad_sgd(self, interpreter: Interpreter, op: train.Conv2dWeightGradSGDOp,
                                   args: tuple[Any, ...]):
        dy, x = np.asarray(args[0], dtype=np.float64), real_value(op.input, args[1])
        name = op.param.root_reference.data
        params = _params(interpreter)
        if name not in params:
            raise InterpreterError(f"{op.name}: no param @{name}")
        channels = None if op.channels is None else ints(op.channels)
        g = _f32(conv2d_weight_grad(dy, x, np.shape(params[name])[2:], *op.conv_params(), channels=channels))
        return self._grad_sgd(interpreter, op, g, args[2])

    @impl(train.FullyConnectedWeightGradSGDOp)
    def run_fc_weight_grad_sgd(self, interpreter: Interpreter, op: train.FullyConnectedWeightGradSGDOp,
                               args: tuple[Any, ...]):
        dy = np.asarray(args[0], dtype=np.float64)
        if op.channels is not None:
            dy = dy[:, list(ints(op.channels))]
        return self._grad_sgd(interpreter, op, _f32(dy.T @ real_value(op.input, args[1])), args[2])

    @impl(train.BiasGradSGDOp)
    def run_bias_grad_sgd(self, interpreter: Interpreter, op: train.BiasGradSGDOp, args: tuple[Any, ...]):
        dy = np.asarray(args[0], dtype=np.float64)
        g = _f32(dy.sum(axis=tuple(a for a in range(dy.ndim) if a != 1)))
        if op.channels is not None:
            g = g[list(ints(op.channels))]
        return self._grad_sgd(interpreter, op, g, args[1])
