"""The int8 training path: autodiff on quant ops, quantized `train.sgd`, `qas` — against an
independent reference written here.

`Int8Reference` reads a QDQ ONNX graph itself (not tinymlir's frontend or fuse-qdq) and
evaluates it with the exact int8 semantics of shared/models/README.md: integer accumulation
(float64 torch convolutions of integers, exact), `real = acc * (s_x s_w)`, round half to
even, clamp to [-128, 127]; it records each clamp's mask (pre-saturation value inside the
range). The backward is torch autograd on real values where each quantized op's output is
`mask * linear(real inputs, real params) + constant`: the int8 forward values are constants
and the gradient is the straight-through gradient of round-and-clamp. The updates are the
documented ones: G_q = s G_W (the gradient w.r.t. the stored integers), QAS multiplies by
s^-2, q' = clamp(R(q - lr G), -(2^(b-1) - 1), 2^(b-1) - 1) with R round-half-even or
stochastic floor(v + u), u from fmix32(state + i) (tests/rounding_reference.py, Python ints).

Tests: each quant gradient rule on small random QDQ nets (gradients <= 1e-4 of torch's);
clamp masks at the exact boundaries; the classifier init; the qas rewrite; the update
arithmetic; and one train_step of the int8 MCUNet-5fps with a new 10-class classifier,
`trainable=last:5` and qas: loss within 1e-6, every updated int8/int32 param exactly (an
element may differ by one only where the reference lands within 1e-5 of its step of a
rounding boundary: float32 gradients against float64 ones; their number is asserted tiny);
and the same step under the paper's 99kb scheme (sparse-update, prune-backward,
reorder-update), the reference trained on the scheme's params and channels only.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.parser import Parser
from xdsl.passes import PassPipeline
from xdsl.utils.exceptions import PassFailedException

from tinymlir.context import make_context
from tinymlir.dialects import train
from tinymlir.interpreter import run_function
from tinymlir.interpreter.train_impls import TrainState
from tinymlir.passes import get_tinymlir_passes

torch = pytest.importorskip("torch")
F = torch.nn.functional
frontend = pytest.importorskip("tinymlir.frontend")

from tinymlir.passes.autodiff import AutodiffPass  # noqa: E402
from tinymlir.passes.fuse_qdq import FuseQDQPass  # noqa: E402
from tinymlir.passes.qas import QASPass  # noqa: E402

from shared_models import MODELS  # noqa: E402
from rounding_reference import uniforms  # noqa: E402

TOL = 1e-4
HEADROOM = 8.0  # autodiff's documented int8 classifier headroom
I32_MAX = 2**31 - 1


def rel_err(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.abs(want).max()
    return float(np.abs(got - want).max() / (scale if scale > 0 else 1.0))


def to_train_module(model: onnx.ModelProto, qas: bool = True, **autodiff):
    module = frontend.import_onnx(model)
    ctx = make_context()
    FuseQDQPass().apply(ctx, module)
    AutodiffPass(**autodiff).apply(ctx, module)
    if qas:
        QASPass().apply(ctx, module)
    module.verify()
    return module


def param_ops(module) -> dict[str, train.ParamOp]:
    return {op.sym_name.data: op for op in module.walk() if isinstance(op, train.ParamOp)}


def sgd_order(module) -> list[str]:
    """The params in the order @train_step updates them (stochastic rounding draws in it)."""
    return [op.param.root_reference.data for op in module.walk() if isinstance(op, train.SGDOp)]


# -- the independent reference ------------------------------------------------------------
def rng_start(p0: dict, name: str, rounding: str) -> int:
    """The initial state of param `name`'s stochastic-rounding generator (0 if nearest)."""
    return int(np.asarray(p0[f"{name}.rng"]).view(np.uint32)) if rounding == "stochastic" else 0


def t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64))


class Int8Reference:
    """Evaluate and differentiate a QDQ ONNX graph (the README's int8 semantics).

    `params` overrides layers' integers and scales: {layer: {"weight": (q, s), "bias": (q, s)}};
    `outputs` overrides the output quantization (s, z) of layers. Layers count Conv and Gemm
    nodes in graph order, as autodiff's @layer<i> names.
    """

    def __init__(self, model: onnx.ModelProto, trainable: set, params=None, outputs=None):
        """`trainable`: layers (weight and bias both), or (layer, role) pairs for a per-param set."""
        self.model = model
        self.init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.trainable = trainable
        self.params = params or {}
        self.outputs = outputs or {}

    def trains(self, layer: int, role: str) -> bool:
        return layer in self.trainable or (layer, role) in self.trainable

    def layer_params(self, layer: int, node) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if layer in self.params:
            return self.params[layer]
        out = {}
        for role, name in (("weight", node.input[1]), ("bias", node.input[2] if len(node.input) > 2 else "")):
            if not name:
                continue
            dq = self.producers[name]
            q = self.init[dq.input[0]].astype(np.int64)
            s = np.asarray(self.init[dq.input[1]], dtype=np.float64).reshape(-1)
            assert not np.any(self.init[dq.input[2]]), "weights and biases have zero-point 0"
            out[role] = (q, s)
        return out

    def run(self, x: np.ndarray, label: int):
        """Forward (exact int8) and backward (torch); returns the loss. Then `self.grads`
        holds {(layer, role): real gradient} and `self.values` {(layer, role): (q, s)}."""
        g = self.model.graph
        self.producers = {n.output[0]: n for n in g.node}
        ints: dict[str, tuple[np.ndarray, float, int]] = {}  # activation -> (q, s, z)
        real_t: dict[str, torch.Tensor] = {}  # activation -> real value (STE) in torch
        # a float op's output -> (real value, its linear torch function or None, layer)
        pending: dict[str, tuple[np.ndarray, torch.Tensor | None, int | None]] = {}
        self.leaves: dict[tuple[int, str], torch.Tensor] = {}
        self.values: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        self.masks: list[np.ndarray] = []
        layer, logits, logits_t = -1, None, None

        def act(dq_name):  # a DequantizeLinear of an activation: (centered q, s, torch real)
            q, s, z = ints[self.producers[dq_name].input[0]]
            return q - z, s, real_t[self.producers[dq_name].input[0]]

        for node in g.node:
            op, ins, out = node.op_type, list(node.input), node.output[0]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if op == "QuantizeLinear":
                s, z = float(self.init[ins[1]]), int(self.init[ins[2]])
                if ins[0] == g.input[0].name:
                    q = np.clip(np.rint(x.astype(np.float32) / np.float32(s)).astype(np.float64) + z, -128, 127)
                    ints[out], real_t[out] = (q, s, z), t(s * (q - z))
                    continue
                real, lin, lay = pending.pop(ins[0])
                s, z = self.outputs.get(lay, (s, z))
                pre = np.rint(real / s) + z
                mask = (pre >= -128) & (pre <= 127)
                self.masks.append(mask)
                q = np.clip(pre, -128, 127)
                ints[out] = (q, s, z)
                if lin is None:  # nothing trainable upstream: a constant
                    real_t[out] = t(s * (q - z))
                else:
                    m = t(mask)
                    real_t[out] = lin * m + (t(s * (q - z)) - lin * m).detach()
            elif op == "DequantizeLinear":
                if ins[0] in ints and out == g.output[0].name:
                    q, s, z = ints[ins[0]]
                    logits = (q - z).astype(np.float32) * np.float32(s)
                    logits_t = real_t[ins[0]]
            elif op in ("Conv", "Gemm"):
                layer += 1
                xc, sx, xt = act(ins[0])
                p = self.layer_params(layer, node)
                wq, ws = p["weight"]
                bq, bs = p.get("bias", (np.zeros(wq.shape[0], np.int64), sx * ws))
                self.values[(layer, "weight")] = (wq, ws)
                if "bias" in p:
                    self.values[(layer, "bias")] = (bq, bs)
                view = (-1,) + (1,) * (wq.ndim - 1)
                w_real, b_real = t(ws.reshape(view) * wq), t(bs * bq)
                if self.trains(layer, "weight"):
                    w_real.requires_grad_(True)
                    self.leaves[(layer, "weight")] = w_real
                if "bias" in p and self.trains(layer, "bias"):
                    b_real.requires_grad_(True)
                    self.leaves[(layer, "bias")] = b_real
                trains_layer = w_real.requires_grad or b_real.requires_grad
                if op == "Conv":
                    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
                    kw = dict(stride=attrs.get("strides", [1, 1]), dilation=attrs.get("dilations", [1, 1]),
                              groups=attrs.get("group", 1))
                    acc = F.conv2d(F.pad(t(xc), (left, right, top, bottom)), t(wq), **kw).numpy()
                    acc = acc + bq.reshape(1, -1, 1, 1)
                    real = acc * (sx * ws).reshape(1, -1, 1, 1)
                    lin = F.conv2d(F.pad(xt, (left, right, top, bottom)), w_real, b_real, **kw) \
                        if xt.requires_grad or trains_layer else None
                else:
                    assert attrs.get("transB") == 1 and attrs.get("transA", 0) == 0
                    acc = xc @ wq.T + bq
                    real = acc * (sx * ws).reshape(1, -1)
                    lin = xt @ w_real.T + b_real if xt.requires_grad or trains_layer else None
                assert np.abs(acc).max() < 2**53
                pending[out] = (real, lin, layer)
            elif op == "Add":
                (ac, sa, at), (bc, sb, bt) = act(ins[0]), act(ins[1])
                pending[out] = (ac * sa + bc * sb, at + bt if at.requires_grad or bt.requires_grad else None, None)
            elif op == "GlobalAveragePool":
                xc, sx, xt = act(ins[0])
                real = xc.sum(axis=(2, 3), keepdims=True) * sx / (xc.shape[2] * xc.shape[3])
                pending[out] = (real, xt.mean(dim=(2, 3), keepdim=True) if xt.requires_grad else None, None)
            elif op == "Flatten":
                q, s, z = ints[ins[0]]
                ints[out] = (q.reshape(q.shape[0], -1), s, z)
                real_t[out] = real_t[ins[0]].reshape(q.shape[0], -1)
            else:
                raise NotImplementedError(op)
        assert logits is not None and logits_t is not None
        self.logits = logits
        z = logits.astype(np.float64)
        z = z - z.max()
        loss = float(np.log(np.exp(z).sum()) - z[0, label])
        F.cross_entropy(logits_t, torch.tensor([label])).backward()
        self.grads = {k: v.grad.numpy() for k, v in self.leaves.items()}
        return loss

    def update(self, key, lr: float, qas: bool, rounding: str, state: int, channels=None):
        """The documented update of param `key` (of its output `channels` only, if given:
        the other rows are not returned); returns (new q, applied gradient,
        ambiguous-element mask, new rng state)."""
        q, s = self.values[key]
        grad = self.grads[key]
        if channels is not None:
            rows = list(channels)
            q, grad = q[rows], grad[rows]
            s = s[rows] if s.size > 1 else s
        s = s.reshape((-1,) + (1,) * (q.ndim - 1))
        g = s * grad  # the gradient w.r.t. the stored integers
        if qas:
            g = g * s**-2.0
        step = float(np.float32(lr)) * g
        v = q - step
        tol = 1e-5 * np.abs(step).max() + 1e-9
        if rounding == "nearest":
            r = np.rint(v)
            ambiguous = np.abs(np.abs(v - np.floor(v)) - 0.5) < tol
        else:
            u = uniforms(state, v.size).reshape(v.shape)
            r = np.floor(v + u)
            frac = (v + u) - np.floor(v + u)
            ambiguous = (frac < tol) | (frac > 1 - tol)
            state = (state + v.size) & 0xFFFFFFFF
        hi = 127 if key[1] == "weight" else I32_MAX
        return np.clip(r, -hi, hi), g, ambiguous, state


# -- small QDQ nets -----------------------------------------------------------------------
class QDQBuilder:
    """Writes a random QDQ ONNX graph with the int8 models' patterns. A float shadow of the
    input's real values picks each output scale so that the clamps cut some elements."""

    def __init__(self, rng: np.random.Generator, x: np.ndarray):
        self.rng, self.nodes, self.inits, self.n = rng, [], [], 0
        s = 1 / 127
        self.x_shape = x.shape
        q = self.quantize("input", s, 0)
        self.shadow = {q: (np.clip(np.rint(x / s), -128, 127) * s, s, 0)}
        self.head = q

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base: str, value) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def quantize(self, x: str, s: float, z: int) -> str:
        out = self.name("q")
        self.nodes.append(helper.make_node("QuantizeLinear", [x, self.const("s", np.float32(s)),
                                                                self.const("z", np.int8(z))], [out]))
        return out

    def dequantize(self, q: str, out: str | None = None) -> str:
        _, s, z = self.shadow[q]
        out = out or self.name("dq")
        self.nodes.append(helper.make_node("DequantizeLinear", [q, self.const("s", np.float32(s)),
                                                                  self.const("z", np.int8(z))], [out]))
        return out

    def requantize(self, real: np.ndarray, out: str, relu: bool) -> str:
        if relu:  # zero-point -128: the lower clamp is a ReLU; ~3% saturate on top
            s, z = np.percentile(real, 97) / 255, -128
        else:  # symmetric, ~3% saturate on either side
            s, z = np.percentile(np.abs(real), 94) / 127, 0
        s = float(np.float32(max(s, 1e-4)))
        q = self.quantize(out, s, z)
        self.shadow[q] = (s * (np.clip(np.rint(real / s) + z, -128, 127) - z), s, z)
        return q

    def params(self, w_shape, s_x: float) -> tuple[str, str, np.ndarray, np.ndarray]:
        o = w_shape[0]
        wq = self.rng.integers(-127, 128, w_shape).astype(np.int8)
        ws = (self.rng.uniform(0.5, 2.0, o) / np.sqrt(np.prod(w_shape[1:])) / 40).astype(np.float32)
        bs = (np.float64(s_x) * ws.astype(np.float64)).astype(np.float32)
        bq = np.rint(self.rng.normal(0, 0.3, o) / bs).astype(np.int32)
        w = self.name("wdq")
        self.nodes.append(helper.make_node("DequantizeLinear", [self.const("w", wq), self.const("ws", ws),
                                                                  self.const("wz", np.zeros(o, np.int8))], [w], axis=0))
        b = self.name("bdq")
        self.nodes.append(helper.make_node("DequantizeLinear", [self.const("b", bq), self.const("bs", bs),
                                                                  self.const("bz", np.zeros(o, np.int32))], [b], axis=0))
        w_real = ws.astype(np.float64).reshape((-1,) + (1,) * (len(w_shape) - 1)) * wq
        return w, b, w_real, bs.astype(np.float64) * bq

    def conv(self, x: str, o: int, k: int, stride=1, pads=(0, 0, 0, 0), groups=1, dilation=1, relu=True) -> str:
        xr, sx, _ = self.shadow[x]
        w, b, w_real, b_real = self.params((o, xr.shape[1] // groups, k, k), sx)
        out = self.name("conv")
        self.nodes.append(helper.make_node("Conv", [self.dequantize(x), w, b], [out], kernel_shape=[k, k],
                                           strides=[stride] * 2, pads=list(pads), group=groups,
                                           dilations=[dilation] * 2))
        top, left, bottom, right = pads
        real = F.conv2d(F.pad(t(xr), (left, right, top, bottom)), t(w_real), t(b_real), stride=stride,
                        dilation=dilation, groups=groups).numpy()
        return self.requantize(real, out, relu)

    def add(self, a: str, b: str) -> str:
        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [self.dequantize(a), self.dequantize(b)], [out]))
        return self.requantize(self.shadow[a][0] + self.shadow[b][0], out, relu=False)

    def gap_flatten(self, x: str) -> str:
        out = self.name("gap")
        self.nodes.append(helper.make_node("GlobalAveragePool", [self.dequantize(x)], [out]))
        xr, s, z = self.shadow[x]
        q = self.quantize(out, s, z)
        self.shadow[q] = (xr.mean(axis=(2, 3), keepdims=True), s, z)
        flat = self.name("flat")
        self.nodes.append(helper.make_node("Flatten", [q], [flat], axis=1))
        self.shadow[flat] = (self.shadow[q][0].reshape(xr.shape[0], -1), s, z)
        return flat

    def gemm(self, x: str, m: int) -> str:
        xr, sx, _ = self.shadow[x]
        w, b, w_real, b_real = self.params((m, xr.shape[1]), sx)
        out = self.name("fc")
        self.nodes.append(helper.make_node("Gemm", [self.dequantize(x), w, b], [out], transB=1))
        return self.requantize(xr @ w_real.T + b_real, out, relu=False)

    def model(self, out: str) -> onnx.ModelProto:
        self.dequantize(out, "logits")
        n, m = self.shadow[out][0].shape
        graph = helper.make_graph(self.nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                   list(self.x_shape))],
                                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, m])], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


CONV_CASES = {
    # name: (k, stride, pads [t, l, b, r], groups, dilation, out channels)
    "plain": (3, 1, (1, 1, 1, 1), 1, 1, 8),
    "strided_asymmetric": (3, 2, (0, 1, 2, 1), 1, 1, 6),
    "depthwise": (3, 2, (1, 1, 1, 1), 8, 1, 8),
    "grouped": (3, 1, (1, 1, 1, 1), 2, 1, 4),
    "dilated": (3, 1, (2, 2, 2, 2), 1, 2, 8),
    "pointwise": (1, 1, (0, 0, 0, 0), 1, 1, 8),
}


def small_net(case: str, seed: int):
    """conv 3x3 (ReLU) -> conv `case` -> pointwise C -> pointwise D (ReLU) -> add(C, D)
    -> global average pool -> flatten -> fully connected -> logits."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (1, 3, 10, 10)).astype(np.float32)
    k, stride, pads, groups, dil, o = CONV_CASES[case]
    b = QDQBuilder(rng, x)
    a = b.conv(b.head, 8, 3, pads=(1, 1, 1, 1))
    mid = b.conv(a, o, k, stride, pads, groups, dil, relu=case != "pointwise")
    c = b.conv(mid, 6, 1, relu=False)
    d = b.conv(c, 6, 1)
    y = b.gemm(b.gap_flatten(b.add(c, d)), 5)
    return b.model(y), x


@pytest.mark.parametrize("case", CONV_CASES)
def test_quant_gradient_rules_match_torch(case):
    """Every rule (conv weight / bias / input, add with a shared input, global average
    pool, flatten, fully connected, dequantize) through one step with lr = 0: the gradients
    the updates apply are s * G_W, G_W torch's on the real values with masks."""
    model, x = small_net(case, sorted(CONV_CASES).index(case))
    module = to_train_module(model, qas=False)
    label = 2
    state = TrainState(module)
    p0 = {k: v.copy() for k, v in state.params.items()}
    loss = state.train_step(x, np.int32(label), np.float32(0.0))
    ref = Int8Reference(model, trainable=set(range(5)))
    want = ref.run(x, label)
    assert abs(loss - want) <= 1e-6 * max(1.0, abs(want))
    np.testing.assert_array_equal(run_function(module, [x])[0], ref.logits)  # @forward: bit-exact
    masks = np.concatenate([m.reshape(-1) for m in ref.masks])
    assert 0.02 < 1 - masks.mean() < 0.9  # the clamps do cut: the masks matter
    for (layer, role), (q, s) in ref.values.items():
        name = f"layer{layer}.{role}"
        np.testing.assert_array_equal(p0[name], q)  # the params hold the ONNX integers
        np.testing.assert_array_equal(state.params[name], q)  # lr = 0: unchanged
        g = s.reshape((-1,) + (1,) * (q.ndim - 1)) * ref.grads[(layer, role)]
        assert rel_err(state.grads[name], g) <= TOL, name


def test_clamp_mask_boundaries_and_act_range():
    """The mask is 1 where the pre-saturation value lies in [act_min, act_max], bounds
    included (a value rounding exactly to a bound was not clamped), 0 beyond it."""
    xs = np.array([[-5, -4, -3, -2, 0, 4, 5, 6, 7]], dtype=np.int8)
    n = xs.shape[1]
    # y = round(x @ I * 1 * 1 / 1) + 0 with act range [-3, 5]: the pre-saturation value is x.
    qt = f"tensor<1x{n}x!quant.uniform<i8:f32, 1.0:0>>"
    wt = f"tensor<{n}x{n}x!quant.uniform<i8:f32:0, {{{', '.join(['1.0:0'] * n)}}}>>"
    eye = "dense<" + str(np.eye(n, dtype=int).tolist()) + ">"
    module = Parser(make_context(), f"""
    func.func @forward(%x: {qt}) -> ({qt}, tensor<1x{n}xi1>, tensor<1x{n}xf32>) {{
      %w = quant.constant {eye} : tensor<{n}x{n}xi8> -> {wt}
      %y = quant.fully_connected %x, %w {{act_min = -3 : i32, act_max = 5 : i32}} : ({qt}, {wt}) -> {qt}
      %m = train.clamp_mask %y from %x, %w : ({qt}, {qt}, {wt}) -> tensor<1x{n}xi1>
      %dy = arith.constant dense<1.5> : tensor<1x{n}xf32>
      %dx = train.mask_grad %dy, %m : (tensor<1x{n}xf32>, tensor<1x{n}xi1>) -> tensor<1x{n}xf32>
      func.return %y, %m, %dx : {qt}, tensor<1x{n}xi1>, tensor<1x{n}xf32>
    }}""").parse_module()
    module.verify()
    y, m, dx = run_function(module, [xs])
    inside = (xs >= -3) & (xs <= 5)
    np.testing.assert_array_equal(y, np.clip(xs, -3, 5))
    np.testing.assert_array_equal(m, inside)
    np.testing.assert_array_equal(dx, np.where(inside, 1.5, 0).astype(np.float32))


def test_clamp_mask_verifier():
    text = """
    func.func @forward(%x: tensor<1x4x!quant.uniform<i8:f32, 1.0:0>>, %z: tensor<1x4x!quant.uniform<i8:f32, 1.0:0>>) -> tensor<1x4xi1> {
      %y = quant.add %x, %x : (tensor<1x4x!quant.uniform<i8:f32, 1.0:0>>, tensor<1x4x!quant.uniform<i8:f32, 1.0:0>>) -> tensor<1x4x!quant.uniform<i8:f32, 1.0:0>>
      %m = train.clamp_mask %y from %x, %z : (tensor<1x4x!quant.uniform<i8:f32, 1.0:0>>, tensor<1x4x!quant.uniform<i8:f32, 1.0:0>>, tensor<1x4x!quant.uniform<i8:f32, 1.0:0>>) -> tensor<1x4xi1>
      func.return %m : tensor<1x4xi1>
    }"""
    module = Parser(make_context(), text).parse_module()
    with pytest.raises(Exception, match="must be the operands of its 'quant.add'"):
        module.verify()


def test_quantized_sgd_arithmetic_saturation_and_stochastic_rounding():
    """train.sgd on int8 / int32 params: q' = clamp(R(q - lr g)), symmetric ranges, and the
    stochastic stream of the documented generator, advanced by the element count."""
    w = np.array([[-127, -126, 0, 5], [126, 127, 3, -3]], dtype=np.int8)
    b = np.array([I32_MAX - 1, -I32_MAX + 1], dtype=np.int32)
    wt = "tensor<2x4x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0}>>"
    bt = "tensor<2x!quant.uniform<i32:f32:0, {0.01:0, 0.02:0}>>"
    gw = np.array([[3.0, 1.6, 0.5, -0.5], [-3.0, -0.4, 1.5, 2.5]], dtype=np.float32)
    gb = np.array([-5.0, 5.0], dtype=np.float32)

    def dense(a):
        return "dense<" + str(np.asarray(a).tolist()) + ">"

    for rounding in ("nearest", "stochastic"):
        rng = ", rng = @rng" if rounding == "stochastic" else ""
        module = Parser(make_context(), f"""
        train.param @w trainable : {wt} = {dense(w)} : tensor<2x4xi8>
        train.param @b trainable : {bt} = {dense(b)} : tensor<2xi32>
        train.param @rng : tensor<i32> = dense<7> : tensor<i32>
        func.func @train_step(%gw: tensor<2x4xf32>, %gb: tensor<2xf32>, %lr: f32) {{
          train.sgd @w, %gw, %lr {{rounding = "{rounding}"{rng}}} : tensor<2x4xf32>
          train.sgd @b, %gb, %lr {{rounding = "{rounding}"{rng}}} : tensor<2xf32>
          func.return
        }}""").parse_module()
        module.verify()
        state = TrainState(module)
        state.run("train_step", [gw, gb, np.float32(1.0)])
        vw, vb = w - gw.astype(np.float64), b.astype(np.float64) - gb
        if rounding == "nearest":
            want_w, want_b = np.rint(vw), np.rint(vb)
            assert int(state.params["rng"]) == 7
        else:
            u = uniforms(7, 10)
            want_w, want_b = np.floor(vw + u[:8].reshape(2, 4)), np.floor(vb + u[8:])
            assert int(state.params["rng"]) == 17
        np.testing.assert_array_equal(state.params["w"], np.clip(want_w, -127, 127).astype(np.int8))
        np.testing.assert_array_equal(state.params["b"], np.clip(want_b, -I32_MAX, I32_MAX).astype(np.int32))
        assert state.params["w"].min() == -127 and state.params["w"].max() == 127  # saturated, not wrapped
    assert uniforms(7, 10).min() >= 0 and uniforms(7, 10).max() < 1


def test_int8_classifier_init_and_options():
    model, x = small_net("plain", 0)
    module = to_train_module(model, num_classes=3, trainable="none", seed=5, rounding="stochastic")
    params = param_ops(module)
    assert [k for k, p in params.items() if p.is_trainable] == ["layer4.weight", "layer4.bias"]
    w_op, b_op = params["layer4.weight"], params["layer4.bias"]
    k = 6
    w = np.random.default_rng(5).uniform(-1 / np.sqrt(k), 1 / np.sqrt(k), (3, k)).astype(np.float32)
    s = (np.abs(w.astype(np.float64)).max(axis=1) * HEADROOM / 127).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(w_op.quantized_type.scale_array(), s)
    state = TrainState(module)
    np.testing.assert_array_equal(state.params["layer4.weight"], np.rint(w / s[:, None]).astype(np.int8))
    np.testing.assert_array_equal(state.params["layer4.bias"], np.zeros(3, np.int32))
    assert b_op.quantized_type.zp_array().tolist() == [0, 0, 0]
    ratio = b_op.quantized_type.scale_array() / s
    assert np.allclose(ratio, ratio[0], rtol=1e-6)  # s_x * s_w[c]
    # one generator per param, the k-th (in update order) starting at seed + k * 0x9E3779B9
    starts = sorted(int(np.asarray(state.params[f"layer4.{r}.rng"]).view(np.uint32)) for r in ("weight", "bias"))
    assert starts == sorted([5, (5 + 0x9E3779B9) & 0xFFFFFFFF])
    text = str(module)
    assert 'rounding = "stochastic", rng = @layer4.weight.rng' in text
    assert 'rounding = "stochastic", rng = @layer4.bias.rng' in text
    assert text.count("train.scale_grad") == 4 and "exponent = -2" in text
    state.train_step(x, np.int32(1), np.float32(0.5))
    assert state.run("forward", [x])[0].shape == (1, 3)


def test_autodiff_int8_errors():
    model, _ = small_net("plain", 1)
    with pytest.raises(PassFailedException, match="optimizer=lamb is not one of sgd, sgdm, adam"):
        to_train_module(model, optimizer="lamb")
    with pytest.raises(PassFailedException, match="trainable=last:0 is not one of"):
        to_train_module(model, trainable="last:0")


def test_qas_scales_and_is_idempotent():
    model, x = small_net("pointwise", 2)
    module = to_train_module(model, qas=False, trainable="last:2")
    plain = TrainState(module.clone())
    plain.train_step(x, np.int32(0), np.float32(0.0))
    QASPass().apply(make_context(), module)
    once = str(module)
    QASPass().apply(make_context(), module)
    assert str(module) == once
    scaled = TrainState(module)
    scaled.train_step(x, np.int32(0), np.float32(0.0))
    params = param_ops(module)
    assert sgd_order(module) == ["layer4.bias", "layer4.weight", "layer3.bias", "layer3.weight"]
    for name in sgd_order(module):
        s = params[name].quantized_type.scale_array().reshape((-1,) + (1,) * (plain.grads[name].ndim - 1))
        assert rel_err(scaled.grads[name], plain.grads[name] / s**2) <= 1e-6, name


# -- MCUNet-5fps int8: one whole step -----------------------------------------------------
@pytest.fixture(scope="module")
def mcunet():
    path = MODELS / "mcunet-5fps-int8.onnx"
    if not path.exists():
        pytest.skip(f"{path} not found (set TINYMLIR_MODELS)")
    return onnx.load(str(path))


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_mcunet_int8_train_step_matches_reference(mcunet, rounding):
    last, lr, label = 5, 0.05, 3
    t0 = time.perf_counter()
    module = to_train_module(mcunet, num_classes=10, trainable=f"last:{last}", rounding=rounding)
    t1 = time.perf_counter()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    state = TrainState(module)
    p0 = {k: v.copy() for k, v in state.params.items()}
    loss = state.train_step(x, np.int32(label), np.float32(lr))
    t2 = time.perf_counter()

    nodes = [n for n in mcunet.graph.node if n.op_type in ("Conv", "Gemm")]
    layers, fc = len(nodes), len(nodes) - 1
    trainable = set(range(layers - last, layers))
    assert {k for k, op in param_ops(module).items() if op.is_trainable} == \
        {f"layer{i}.{r}" for i in trainable for r in ("weight", "bias")}
    # The new classifier, from autodiff's documented rules.
    init = {i.name: numpy_helper.to_array(i) for i in mcunet.graph.initializer}
    producers = {n.output[0]: n for n in mcunet.graph.node}
    gemm = nodes[fc]
    s_x = float(init[producers[gemm.input[0]].input[1]])
    k = init[producers[gemm.input[1]].input[0]].shape[1]
    w = np.random.default_rng(0).uniform(-1 / np.sqrt(k), 1 / np.sqrt(k), (10, k)).astype(np.float32)
    s_w = (np.abs(w.astype(np.float64)).max(axis=1) * HEADROOM / 127).astype(np.float32).astype(np.float64)
    w_q = np.rint(w / s_w[:, None])
    s_b = (s_x * s_w).astype(np.float32).astype(np.float64)
    q_out = next(n for n in mcunet.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == gemm.output[0])
    s_old, z_old = float(init[q_out.input[1]]), int(init[q_out.input[2]])
    s_y = float(np.float32(max(abs(s_old * (-128 - z_old)), abs(s_old * (127 - z_old))) / 127))
    np.testing.assert_array_equal(p0[f"layer{fc}.weight"], w_q)
    np.testing.assert_array_equal(p0[f"layer{fc}.bias"], np.zeros(10))

    ref = Int8Reference(mcunet, trainable, params={fc: {"weight": (w_q.astype(np.int64), s_w),
                                                          "bias": (np.zeros(10, np.int64), s_b)}},
                        outputs={fc: (s_y, 0)})
    want = ref.run(x, label)
    t3 = time.perf_counter()
    print(f"\nMCUNet-5fps int8: import+fuse+autodiff+qas {t1 - t0:.1f}s, train_step {t2 - t1:.1f}s, "
          f"reference {t3 - t2:.1f}s; loss {loss:.6f} (reference {want:.6f})")
    assert abs(loss - want) <= 1e-6 * max(1.0, abs(want))
    for (layer, role), (q, _) in ref.values.items():  # the frozen int8 model, as loaded from ONNX
        if layer not in trainable:
            np.testing.assert_array_equal(state.params[f"layer{layer}.{role}"], q)

    ambiguous_total, changed, total = 0, 0, 0
    order = sgd_order(module)
    assert set(order) == {f"layer{i}.{r}" for i in trainable for r in ("weight", "bias")}
    for name in order:
        layer, role = int(name[5:name.index(".")]), name.split(".")[1]
        new, g, ambiguous, rng_state = ref.update((layer, role), lr, qas=True, rounding=rounding,
                                                  state=rng_start(p0, name, rounding))
        assert rel_err(state.grads[name], g) <= TOL, name
        got = state.params[name].astype(np.int64)
        diff = got - new
        assert np.all(diff[~ambiguous] == 0), (name, int(np.count_nonzero(diff[~ambiguous])))
        assert np.all(np.abs(diff) <= 1), name
        ambiguous_total += int(np.count_nonzero(diff))
        changed += int(np.count_nonzero(got != p0[name]))
        total += got.size
        if rounding == "stochastic":  # the param's own generator advanced by its element count
            assert int(np.asarray(state.params[f"{name}.rng"]).view(np.uint32)) == rng_state, name
    print(f"{total} trainable int8/int32 elements, {changed} changed by the step, "
          f"{ambiguous_total} off by one at a rounding tie")
    assert ambiguous_total <= max(2, total // 10000)
    assert changed > total // 100  # the step does move the int8 weights


# -- MCUNet-5fps int8 under the paper's 99kb sparse-update scheme ---------------------------
SCHEME_99KB = Path(__file__).resolve().parents[1] / "schemes" / "mcunet-5fps-99kb.scheme"


def read_scheme(path: Path) -> tuple[int, dict[int, Fraction]]:
    """(bias last N, {layer: ratio}) of a scheme file, read here (docs/schemes.md)."""
    bias_last, weights = 0, {}
    for line in path.read_text().splitlines():
        words = line.split("#")[0].replace(",", " ").split()
        if words[:2] == ["bias", "last"]:
            bias_last = int(words[2])
        elif words[:1] == ["weights"]:
            for entry in words[1:]:
                layer, ratio = entry.split(":")
                weights[int(layer)] = Fraction(ratio)
        else:
            assert not words, line
    return bias_last, weights


def top_channels(q: np.ndarray, s: np.ndarray, ratio: Fraction) -> list[int]:
    """The max(1, floor(ratio * O)) output channels of largest ||s[c] * q[c]||, ties to the
    lower index."""
    o = q.shape[0]
    real = np.asarray(s, dtype=np.float64).reshape(-1, 1) * q.reshape(o, -1).astype(np.float64)
    norms = np.sqrt((real * real).sum(axis=1))
    k = max(1, math.floor(ratio * o))
    chosen = sorted(sorted(range(o), key=lambda c: (-norms[c], c))[:k])
    rest = [c for c in range(o) if c not in chosen]
    assert not rest or norms[chosen].min() >= norms[rest].max()
    return chosen


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_mcunet_int8_train_step_matches_reference_99kb_scheme(mcunet, rounding):
    """One train_step of the int8 MCUNet-5fps after autodiff{num-classes=10}, qas,
    sparse-update (the 99kb scheme file), prune-backward and reorder-update, against the
    reference restricted to the scheme's params and channels (selected here, from the ONNX
    initializers): loss within 1e-6, every trained int8/int32 element exactly (ties as in
    the full test), everything else — frozen params, unselected channels — unchanged."""
    lr, label = 0.05, 3
    t0 = time.perf_counter()
    module = to_train_module(mcunet, num_classes=10, rounding=rounding)
    PassPipeline.parse_spec(get_tinymlir_passes(), f'sparse-update{{scheme="{SCHEME_99KB}"}},'
                            "prune-backward,reorder-update").apply(make_context(), module)
    module.verify()
    t1 = time.perf_counter()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    state = TrainState(module)
    p0 = {k: v.copy() for k, v in state.params.items()}
    loss = state.train_step(x, np.int32(label), np.float32(lr))
    t2 = time.perf_counter()

    # The scheme's selection, computed here from the ONNX graph.
    init = {i.name: numpy_helper.to_array(i) for i in mcunet.graph.initializer}
    producers = {n.output[0]: n for n in mcunet.graph.node}
    nodes = [n for n in mcunet.graph.node if n.op_type in ("Conv", "Gemm")]
    fc = len(nodes) - 1
    bias_last, weights = read_scheme(SCHEME_99KB)
    assert (bias_last, sorted(weights)) == (22, [21, 24, 27, 30, 36, 39])
    selected = {(fc, "weight"), (fc, "bias")}
    selected |= {(i, "bias") for i in range(fc - bias_last, fc) if len(nodes[i].input) > 2 and nodes[i].input[2]}
    selected |= {(i, "weight") for i in weights}
    channels: dict[int, list[int]] = {}
    for layer, ratio in weights.items():
        if ratio < 1:
            dq = producers[nodes[layer].input[1]]
            channels[layer] = top_channels(init[dq.input[0]], init[dq.input[1]], ratio)
    assert {k: len(v) for k, v in channels.items()} == {36: max(1, init[producers[nodes[36].input[1]].input[0]].shape[0] // 8),
                                                        39: max(1, init[producers[nodes[39].input[1]].input[0]].shape[0] // 4)}
    names = {f"layer{i}.{r}" for i, r in selected}
    assert len(names) == 23 + 7
    assert {k for k, op in param_ops(module).items() if op.is_trainable} == names

    updates = [op for op in module.walk() if hasattr(op, "param") and
               (isinstance(op, train.SGDOp) or op.name.endswith("_sgd"))]
    order = [op.param.root_reference.data for op in updates]
    assert sorted(order) == sorted(names)  # one update each
    ir_channels = {op.param.root_reference.data: (None if op.channels is None else list(op.channels.get_values()))
                   for op in updates}
    assert ir_channels == {n: channels.get(int(n[5:n.index(".")])) if n.endswith("weight") else None
                           for n in names}

    # The classifier, from autodiff's documented rules (as in the full test above).
    gemm = nodes[fc]
    s_x = float(init[producers[gemm.input[0]].input[1]])
    k = init[producers[gemm.input[1]].input[0]].shape[1]
    w = np.random.default_rng(0).uniform(-1 / np.sqrt(k), 1 / np.sqrt(k), (10, k)).astype(np.float32)
    s_w = (np.abs(w.astype(np.float64)).max(axis=1) * HEADROOM / 127).astype(np.float32).astype(np.float64)
    w_q = np.rint(w / s_w[:, None])
    s_b = (s_x * s_w).astype(np.float32).astype(np.float64)
    q_out = next(n for n in mcunet.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == gemm.output[0])
    s_old, z_old = float(init[q_out.input[1]]), int(init[q_out.input[2]])
    s_y = float(np.float32(max(abs(s_old * (-128 - z_old)), abs(s_old * (127 - z_old))) / 127))
    np.testing.assert_array_equal(p0[f"layer{fc}.weight"], w_q)

    ref = Int8Reference(mcunet, selected, params={fc: {"weight": (w_q.astype(np.int64), s_w),
                                                         "bias": (np.zeros(10, np.int64), s_b)}},
                        outputs={fc: (s_y, 0)})
    want = ref.run(x, label)
    t3 = time.perf_counter()
    print(f"\nMCUNet-5fps int8, 99kb scheme: passes {t1 - t0:.1f}s, train_step {t2 - t1:.1f}s, "
          f"reference {t3 - t2:.1f}s; loss {loss:.6f} (reference {want:.6f})")
    assert abs(loss - want) <= 1e-6 * max(1.0, abs(want))
    assert set(ref.grads) == selected

    # Outside the scheme: unchanged, and still the ONNX integers.
    for (layer, role), (q, _) in ref.values.items():
        name = f"layer{layer}.{role}"
        if (layer, role) not in selected:
            np.testing.assert_array_equal(state.params[name], p0[name])
            np.testing.assert_array_equal(state.params[name], q)
    for name in p0:
        if name not in names and not name.endswith(".rng"):
            np.testing.assert_array_equal(state.params[name], p0[name], err_msg=name)

    ambiguous_total, changed, total = 0, 0, 0
    for name in order:
        layer, role = int(name[5:name.index(".")]), name.split(".")[1]
        rows = channels.get(layer) if role == "weight" else None
        new, g, ambiguous, rng_state = ref.update((layer, role), lr, qas=True, rounding=rounding,
                                                  state=rng_start(p0, name, rounding), channels=rows)
        assert rel_err(state.grads[name], g) <= TOL, name
        got_all = state.params[name].astype(np.int64)
        if rows is not None:  # the unselected channels keep their integers
            others = [c for c in range(got_all.shape[0]) if c not in rows]
            np.testing.assert_array_equal(got_all[others], p0[name][others], err_msg=name)
        got = got_all if rows is None else got_all[rows]
        diff = got - new
        assert np.all(diff[~ambiguous] == 0), (name, int(np.count_nonzero(diff[~ambiguous])))
        assert np.all(np.abs(diff) <= 1), name
        ambiguous_total += int(np.count_nonzero(diff))
        before = p0[name] if rows is None else p0[name][rows]
        changed += int(np.count_nonzero(got != before))
        total += got.size
        if rounding == "stochastic":
            assert int(np.asarray(state.params[f"{name}.rng"]).view(np.uint32)) == rng_state, name
    print(f"{total} trained int8/int32 elements, {changed} changed by the step, "
          f"{ambiguous_total} off by one at a rounding tie")
    assert ambiguous_total <= max(2, total // 10000)
    assert changed > total // 100
