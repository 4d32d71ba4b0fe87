"""Numpy semantics of the `tk` dialect: the C training kernels' float32 arithmetic.

Every op calls the numpy twin of its C kernel in `tk_math.py` (same rounding order), so
the interpreter and the generated C agree bit for bit. Masks are bool arrays here (one
bit per element in C); the `*_sgd` ops update the interpreter's param table in place of
`train.param` values (and their optimizer state params), as the train dialect's
optimizer ops do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls
from xdsl.ir import SSAValue

from tinymlir.dialects import tk
from tinymlir.dialects.nn import ints
from tinymlir.interpreter import InterpreterError
from tinymlir.interpreter.train_impls import _params


class _Math:
    """`tk_math`, imported when a tk op first runs."""

    def __getattr__(self, name: str) -> Any:
        from tinymlir.interpreter import tk_math

        return getattr(tk_math, name)


tm = _Math()


def _shape(value: SSAValue) -> tuple[int, ...]:
    assert isinstance(value.type, TensorType)
    return tuple(value.type.get_shape())


def geometry(op: Any, x_shape: tuple[int, ...], y_shape: tuple[int, ...], k: tuple[int, int]) -> Any:
    """The `tk_conv_geometry` of a tk convolution op (x: input / dx, y: output / dy)."""
    (sh, sw), (ph, pw), (dh, dw) = op.geometry()
    n, ih, iw, ic = tk.as_nhwc(x_shape)
    _, oh, ow, oc = tk.as_nhwc(y_shape)
    return tm.ConvGeometry(n=n, in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=k[0], k_w=k[1],
                           stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, dil_h=dh, dil_w=dw)


def _nhwc(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(tk.as_nhwc(a.shape))


def skipped_updates(interpreter: Interpreter) -> list[int]:
    """[number of update elements skipped because they were not finite] (status)."""
    return interpreter.get_data(TkFunctions, "skipped", lambda: [0])


def gather_channels(x: np.ndarray, channels: list[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x)[..., channels])


def merge_channels(a: np.ndarray, b: np.ndarray, channels: list[int]) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    out = np.empty(a.shape[:-1] + (a.shape[-1] + b.shape[-1],), dtype=a.dtype)
    rest = np.setdiff1d(np.arange(out.shape[-1]), channels)
    out[..., channels] = a
    out[..., rest] = b
    return out


@register_impls
class TkFunctions(InterpreterFunctions):
    @impl(tk.OutputMaskOp)
    def run_output_mask(self, interpreter: Interpreter, op: tk.OutputMaskOp, args: tuple[Any, ...]):
        return (tm.output_mask(np.asarray(args[0], dtype=np.int8), op.act_min.value.data, op.act_max.value.data),)

    @impl(tk.MaskGradOp)
    def run_mask_grad(self, interpreter: Interpreter, op: tk.MaskGradOp, args: tuple[Any, ...]):
        return (tm.mask_grad(np.asarray(args[0], dtype=np.float32), np.asarray(args[1], dtype=bool)),)

    @impl(tk.AddOp)
    def run_add(self, interpreter: Interpreter, op: tk.AddOp, args: tuple[Any, ...]):
        return (tm.add(np.asarray(args[0], dtype=np.float32), np.asarray(args[1], dtype=np.float32)),)

    @impl(tk.SoftmaxXentOp)
    def run_softmax_xent(self, interpreter: Interpreter, op: tk.SoftmaxXentOp, args: tuple[Any, ...]):
        logits = np.asarray(args[0], dtype=np.float32)
        label = int(np.asarray(args[1]).reshape(-1)[0])
        if not 0 <= label < logits.shape[1]:
            raise InterpreterError(f"tk.softmax_xent: label {label} is outside [0, {logits.shape[1]})")
        loss, grad = tm.softmax_xent(logits[0], label)
        return (np.float32(loss), np.asarray(grad, dtype=np.float32).reshape(logits.shape))

    @impl(tk.GlobalAvgPoolGradOp)
    def run_global_avgpool_grad(self, interpreter: Interpreter, op: tk.GlobalAvgPoolGradOp, args: tuple[Any, ...]):
        n, h, w, c = _shape(op.result)
        dy = np.asarray(args[0], dtype=np.float32).reshape(n, c)
        return (tm.global_avgpool_grad(dy, h, w).reshape(n, h, w, c),)

    @impl(tk.ConvInputGradOp)
    def run_conv_input_grad(self, interpreter: Interpreter, op: tk.ConvInputGradOp, args: tuple[Any, ...]):
        ws = tk.as_ohwi(_shape(op.weight))
        g = geometry(op, _shape(op.result), _shape(op.dy), (ws[1], ws[2]))
        w = np.asarray(args[1], dtype=np.int8).reshape(ws)
        dx = tm.conv_input_grad(g, _nhwc(np.asarray(args[0], dtype=np.float32)), w, tk.floats(op.w_scale))
        return (np.asarray(dx, dtype=np.float32).reshape(_shape(op.result)),)

    @impl(tk.DepthwiseConvInputGradOp)
    def run_depthwise_conv_input_grad(self, interpreter: Interpreter, op: tk.DepthwiseConvInputGradOp,
                                      args: tuple[Any, ...]):
        ws = _shape(op.weight)
        g = geometry(op, _shape(op.result), _shape(op.dy), (ws[1], ws[2]))
        dx = tm.depthwise_conv_input_grad(g, np.asarray(args[0], dtype=np.float32), np.asarray(args[1], dtype=np.int8),
                                          tk.floats(op.w_scale))
        return (np.asarray(dx, dtype=np.float32),)

    # -- fused gradient + SGD ---------------------------------------------------------
    def _update(self, interpreter: Interpreter, op: Any, run: Any) -> tuple[()]:
        params = _params(interpreter)
        name = op.param.root_reference.data
        if name not in params:
            raise InterpreterError(f"{op.name}: no param @{name}")
        rng = None
        if op.rng is not None:
            state = params[op.rng.root_reference.data]
            rng = int(np.asarray(state).reshape(-1)[0].astype(np.int64)) & 0xFFFFFFFF
        channels = None if op.channels is None else list(ints(op.channels))
        opt = None
        refs = op.state_refs()
        if op.optimizer != "sgd":
            for r in refs.values():
                if r.root_reference.data not in params:
                    raise InterpreterError(f"{op.name}: no param {r}")
            flat = {k: np.asarray(params[r.root_reference.data], dtype=np.float32).reshape(-1) for k, r in refs.items()}
            hyper = {k: float(getattr(op, k).value.data) for k in ("momentum", "beta1", "beta2", "eps")
                     if getattr(op, k) is not None}
            step = 0
            if op.step is not None:
                step = int(np.asarray(params[op.step.root_reference.data]).reshape(-1)[0])
            opt = tm.Optimizer(kind=op.optimizer, step=step, **hyper, **flat)
        new, new_rng, skipped, new_opt = run(params[name], channels, tk.floats(op.factor), rng, opt)
        params[name] = np.asarray(new, dtype=params[name].dtype).reshape(params[name].shape)
        if op.rng is not None:
            state = params[op.rng.root_reference.data]
            params[op.rng.root_reference.data] = np.full(state.shape, new_rng, dtype=np.uint32).view(state.dtype)
        for k, r in refs.items():
            sname = r.root_reference.data
            params[sname] = np.asarray(getattr(new_opt, k), dtype=np.float32).reshape(params[sname].shape)
        skipped_updates(interpreter)[0] += int(skipped)
        return ()

    def _conv_update(self, interpreter: Interpreter, op: Any, args: tuple[Any, ...], depthwise: bool) -> tuple[()]:
        lr = np.float32(args[2])
        dy = _nhwc(np.asarray(args[0], dtype=np.float32))
        x = _nhwc(np.asarray(args[1], dtype=np.int8))
        x_offset, x_scale = op.x_offset.value.data, np.float32(tk.floats(op.x_scale)[0])

        def run(w: np.ndarray, channels: Any, factor: np.ndarray, rng: Any, opt: Any) -> Any:
            shape = w.shape
            if depthwise:
                g = geometry(op, x.shape, dy.shape, (shape[1], shape[2]))
                return tm.depthwise_conv_weight_grad_opt(g, dy, x, x_offset, x_scale, w, channels, factor, lr, rng,
                                                         opt)
            ws = tk.as_ohwi(shape)
            g = geometry(op, x.shape, dy.shape, (ws[1], ws[2]))
            new, new_rng, skipped, new_opt = tm.conv_weight_grad_opt(g, dy, x, x_offset, x_scale, w.reshape(ws),
                                                                      channels, factor, lr, rng, opt)
            return np.asarray(new).reshape(shape), new_rng, skipped, new_opt

        return self._update(interpreter, op, run)

    @impl(tk.ConvWeightGradSGDOp)
    def run_conv_weight_grad_sgd(self, interpreter: Interpreter, op: tk.ConvWeightGradSGDOp, args: tuple[Any, ...]):
        return self._conv_update(interpreter, op, args, depthwise=False)

    @impl(tk.DepthwiseConvWeightGradSGDOp)
    def run_depthwise_conv_weight_grad_sgd(self, interpreter: Interpreter, op: tk.DepthwiseConvWeightGradSGDOp,
                                           args: tuple[Any, ...]):
        return self._conv_update(interpreter, op, args, depthwise=True)

    @impl(tk.BiasGradSGDOp)
    def run_bias_grad_sgd(self, interpreter: Interpreter, op: tk.BiasGradSGDOp, args: tuple[Any, ...]):
        dy = np.asarray(args[0], dtype=np.float32)
        dy2 = dy.reshape(-1, dy.shape[-1])
        lr = np.float32(args[1])

        def run(b: np.ndarray, channels: Any, factor: np.ndarray, rng: Any, opt: Any) -> Any:
            return tm.bias_grad_opt(dy2, b, channels, factor, lr, rng, opt)

        return self._update(interpreter, op, run)

    # -- channel data movement -------------------------------------------------------
    @impl(tk.GatherChannelsOp)
    def run_gather_channels(self, interpreter: Interpreter, op: tk.GatherChannelsOp, args: tuple[Any, ...]):
        return (gather_channels(args[0], list(ints(op.channels))),)

    @impl(tk.MergeChannelsOp)
    def run_merge_channels(self, interpreter: Interpreter, op: tk.MergeChannelsOp, args: tuple[Any, ...]):
        return (merge_channels(args[0], args[1], list(ints(op.channels))),)
