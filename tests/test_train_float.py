"""The `train` dialect and the `autodiff` pass on the float path, against torch autograd.

Every gradient op is checked on random inputs against torch (float64), then whole
`@train_step`s built by `autodiff` on small random nets: loss and every parameter gradient
(the gradients the optimizer ops applied, recorded by the interpreter), SGD after one step
and SGD-momentum / Adam after three steps against torch.optim, and finally one step of
MCUNet-5fps fp32 with a new 10-class classifier. Errors are relative to max |reference|.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from xdsl.parser import Parser

from tinymlir.context import make_context
from tinymlir.dialects import train
from tinymlir.interpreter import run_function
from tinymlir.interpreter.train_impls import TrainState
from tinymlir.passes.autodiff import AutodiffPass

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = 1e-4


def parse(text: str):
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


def autodiff(module, **options):
    AutodiffPass(**options).apply(make_context(), module)
    module.verify()
    return module


def rel_err(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.abs(want).max()
    return float(np.abs(got - want).max() / (scale if scale > 0 else 1.0))


def t64(a, grad: bool = False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def ttype(shape, et: str = "f32") -> str:
    return "tensor<" + "".join(f"{d}x" for d in shape) + et + ">"


def dense(a: np.ndarray) -> str:
    """A dense literal that round-trips float32 values exactly."""
    def fmt(x):
        if isinstance(x, list):
            return "[" + ", ".join(fmt(v) for v in x) + "]"
        return repr(float(x))
    return f"dense<{fmt(np.asarray(a, dtype=np.float32).tolist())}>"


def arr(a) -> str:
    return "array<i64: " + ", ".join(str(int(v)) for v in a) + ">"


def conv_attrs(strides, pads, dilations, groups, channels=None) -> str:
    s = (f"strides = {arr(strides)}, pads = {arr(pads)}, dilations = {arr(dilations)}, "
         f"groups = {groups} : i64")
    return s + (f", channels = {arr(channels)}" if channels is not None else "")


def rng_f32(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# -- gradient ops vs torch --------------------------------------------------------------
CONV_CASES = {
    # name: (N, C, H, W, O, KH, KW, strides, pads [t, l, b, r], dilations, groups)
    "plain": (1, 3, 7, 7, 4, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    "strided_padded_cropped": (2, 4, 8, 9, 6, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),
    "asymmetric": (1, 3, 9, 8, 5, 3, 2, (2, 1), (0, 1, 2, 0), (1, 1), 1),
    "dilated": (1, 4, 9, 9, 4, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),
    "grouped": (1, 6, 7, 7, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2),
    "depthwise": (1, 8, 8, 8, 8, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 8),
    "depthwise_multiplier": (1, 4, 6, 6, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 4),
    "pointwise": (1, 16, 5, 5, 8, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
}


def torch_conv(x, w, b, strides, pads, dilations, groups):
    top, left, bottom, right = pads
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=strides, dilation=dilations, groups=groups)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_grads(case):
    n, c, h, w_, o, kh, kw, strides, pads, dil, groups = CONV_CASES[case]
    rng = np.random.default_rng(sorted(CONV_CASES).index(case))
    x, w, b = rng_f32(rng, (n, c, h, w_)), rng_f32(rng, (o, c // groups, kh, kw)), rng_f32(rng, (o,))
    tx, tw, tb = t64(x, True), t64(w, True), t64(b, True)
    y = torch_conv(tx, tw, tb, strides, pads, dil, groups)
    dy = rng_f32(rng, tuple(y.shape))
    y.backward(t64(dy))
    channels = [0, o // 2, o - 1]
    xt, wt, yt = ttype(x.shape), ttype(w.shape), ttype(dy.shape)
    wct = ttype((len(channels),) + w.shape[1:])
    attrs = conv_attrs(strides, pads, dil, groups)
    module = parse(f"""
    func.func @forward(%dy: {yt}, %x: {xt}, %w: {wt}) -> ({xt}, {wt}, {ttype((o,))}, {wct}) {{
      %dx = train.conv2d_input_grad %dy, %w {{{attrs}}} : ({yt}, {wt}) -> {xt}
      %dw = train.conv2d_weight_grad %dy, %x {{{attrs}}} : ({yt}, {xt}) -> {wt}
      %db = train.bias_grad %dy : ({yt}) -> {ttype((o,))}
      %dwc = train.conv2d_weight_grad %dy, %x {{{conv_attrs(strides, pads, dil, groups, channels)}}} : ({yt}, {xt}) -> {wct}
      func.return %dx, %dw, %db, %dwc : {xt}, {wt}, {ttype((o,))}, {wct}
    }}""")
    dx, dw, db, dwc = run_function(module, [dy, x, w])
    assert rel_err(dx, tx.grad) <= TOL
    assert rel_err(dw, tw.grad) <= TOL
    assert rel_err(db, tb.grad) <= TOL
    assert rel_err(dwc, tw.grad[channels]) <= TOL


POOL_CASES = {
    # name: (kind, kernel, strides, pads, count_include_pad)
    "avg_k3s2p1": ("avg", (3, 3), (2, 2), (1, 1, 1, 1), False),
    "avg_k3s2p1_include_pad": ("avg", (3, 3), (2, 2), (1, 1, 1, 1), True),
    "avg_k2x3": ("avg", (2, 3), (1, 2), (0, 1, 0, 1), False),
    "max_k3s2p1": ("max", (3, 3), (2, 2), (1, 1, 1, 1), False),
    "max_k2s2": ("max", (2, 2), (2, 2), (0, 0, 0, 0), False),
    "max_k3s1": ("max", (3, 3), (1, 1), (0, 0, 0, 0), False),
}


@pytest.mark.parametrize("case", POOL_CASES)
def test_pool_grads(case):
    kind, k, s, p, cip = POOL_CASES[case]
    rng = np.random.default_rng(len(case))
    x = rng_f32(rng, (2, 3, 9, 10))
    tx = t64(x, True)
    if kind == "avg":
        y = F.avg_pool2d(tx, k, s, padding=(p[0], p[1]), count_include_pad=cip)
    else:
        y = F.max_pool2d(tx, k, s, padding=(p[0], p[1]))
    dy = rng_f32(rng, tuple(y.shape))
    y.backward(t64(dy))
    xt, yt = ttype(x.shape), ttype(dy.shape)
    attrs = f"kernel = {arr(k)}, strides = {arr(s)}, pads = {arr(p)}"
    if kind == "avg":
        body = (f"%dx = train.avg_pool_grad %dy {{{attrs}, count_include_pad = {str(cip).lower()}}} "
                f": ({yt}) -> {xt}")
    else:
        body = f"%dx = train.max_pool_grad %dy, %x {{{attrs}}} : ({yt}, {xt}) -> {xt}"
    module = parse(f"""
    func.func @forward(%dy: {yt}, %x: {xt}) -> {xt} {{
      {body}
      func.return %dx : {xt}
    }}""")
    assert rel_err(run_function(module, [dy, x])[0], tx.grad) <= TOL


def test_global_avg_pool_grad():
    rng = np.random.default_rng(3)
    x = rng_f32(rng, (1, 5, 6, 7))
    tx = t64(x, True)
    y = tx.mean(dim=(2, 3), keepdim=True)
    dy = rng_f32(rng, tuple(y.shape))
    y.backward(t64(dy))
    module = parse(f"""
    func.func @forward(%dy: {ttype(dy.shape)}) -> {ttype(x.shape)} {{
      %dx = train.global_avg_pool_grad %dy : ({ttype(dy.shape)}) -> {ttype(x.shape)}
      func.return %dx : {ttype(x.shape)}
    }}""")
    assert rel_err(run_function(module, [dy])[0], tx.grad) <= TOL


def test_relu_and_clip_grads_boundaries():
    """Boundaries excluded, as torch's relu and relu6/hardtanh backward (torch.clamp's own
    backward would pass the gradient at exactly min and max)."""
    x = np.array([[-1.0, 0.0, 1e-3, 3.0, 6.0, 6.5, 5.999, -0.0]], dtype=np.float32)
    dy = np.arange(1, 9, dtype=np.float32).reshape(1, 8)
    tx1, tx2 = t64(x, True), t64(x, True)
    F.relu(tx1).backward(t64(dy))
    F.relu6(tx2).backward(t64(dy))
    t = ttype(x.shape)
    module = parse(f"""
    func.func @forward(%dy: {t}, %x: {t}) -> ({t}, {t}, {t}) {{
      %r = nn.relu %x : ({t}) -> {t}
      %c = nn.clip %x {{min = 0.0 : f32, max = 6.0 : f32}} : ({t}) -> {t}
      %dr = train.relu_grad %dy, %r : ({t}, {t}) -> {t}
      %dc = train.clip_grad %dy, %c {{min = 0.0 : f32, max = 6.0 : f32}} : ({t}, {t}) -> {t}
      %dc_in = train.clip_grad %dy, %x {{min = 0.0 : f32, max = 6.0 : f32}} : ({t}, {t}) -> {t}
      func.return %dr, %dc, %dc_in : {t}, {t}, {t}
    }}""")
    dr, dc, dc_in = run_function(module, [dy, x])
    np.testing.assert_array_equal(dr, tx1.grad.numpy())
    np.testing.assert_array_equal(dc, tx2.grad.numpy())
    np.testing.assert_array_equal(dc_in, dc)  # the clip's input or output: one mask


@pytest.mark.parametrize("shape", [(3, 1, 5), (5,), (1,), (), (2, 3, 4, 5)])
def test_reduce_to_shape(shape):
    rng = np.random.default_rng(len(shape))
    g = rng_f32(rng, (2, 3, 4, 5))
    a = t64(np.zeros(shape), True)
    (a + t64(np.zeros(g.shape))).backward(t64(g))
    module = parse(f"""
    func.func @forward(%g: {ttype(g.shape)}) -> {ttype(shape)} {{
      %r = train.reduce_to_shape %g : ({ttype(g.shape)}) -> {ttype(shape)}
      func.return %r : {ttype(shape)}
    }}""")
    assert rel_err(run_function(module, [g])[0], a.grad) <= TOL


@pytest.mark.parametrize("batch", [1, 3])
def test_losses(batch):
    rng = np.random.default_rng(batch)
    z, target = rng_f32(rng, (batch, 7), 3.0), rng_f32(rng, (batch, 7))
    label = rng.integers(0, 7, batch).astype(np.int32)
    tz1, tz2 = t64(z, True), t64(z, True)
    ce = F.cross_entropy(tz1, torch.tensor(label, dtype=torch.long))
    ce.backward()
    mse = F.mse_loss(tz2, t64(target))
    mse.backward()
    zt, lt = ttype(z.shape), ("i32" if batch == 1 else ttype((batch,), "i32"))
    module = parse(f"""
    func.func @forward(%z: {zt}, %label: {lt}, %t: {zt}) -> (f32, {zt}, f32, {zt}) {{
      %ce, %dce = train.softmax_cross_entropy %z, %label : ({zt}, {lt}) -> (f32, {zt})
      %mse, %dmse = train.mse %z, %t : ({zt}, {zt}) -> (f32, {zt})
      func.return %ce, %dce, %mse, %dmse : f32, {zt}, f32, {zt}
    }}""")
    lab = label[0] if batch == 1 else label
    got_ce, got_dce, got_mse, got_dmse = run_function(module, [z, lab, target])
    assert abs(float(got_ce) - ce.item()) <= TOL * abs(ce.item())
    assert abs(float(got_mse) - mse.item()) <= TOL * abs(mse.item())
    assert rel_err(got_dce, tz1.grad) <= TOL
    assert rel_err(got_dmse, tz2.grad) <= TOL


def test_grad_ops_dequantize_quantized_saved_operands():
    """Saved forward values may be quantized (the int8 path): the op uses their real value."""
    rng = np.random.default_rng(11)
    qx = rng.integers(-128, 128, (1, 2, 5, 5), dtype=np.int8)
    dy = rng_f32(rng, (1, 3, 3, 3))
    qt = "!quant.uniform<i8:f32, 0.05:-3>"
    xq, xf, yt = ttype(qx.shape, qt), ttype(qx.shape), ttype(dy.shape)
    wt = ttype((3, 2, 3, 3))
    attrs = conv_attrs((1, 1), (0, 0, 0, 0), (1, 1), 1)
    module = parse(f"""
    func.func @forward(%dy: {yt}, %qx: {xq}) -> ({wt}, {wt}) {{
      %x = quant.dequantize %qx : {xq} -> {xf}
      %a = train.conv2d_weight_grad %dy, %qx {{{attrs}}} : ({yt}, {xq}) -> {wt}
      %b = train.conv2d_weight_grad %dy, %x {{{attrs}}} : ({yt}, {xf}) -> {wt}
      func.return %a, %b : {wt}, {wt}
    }}""")
    a, b = run_function(module, [dy, qx])
    assert rel_err(a, b) <= 1e-6


# -- autodiff rules through train_step, with trainable train.params --------------------
def params_text(params: dict[str, np.ndarray]) -> str:
    return "\n".join(f"train.param @{k} trainable : {ttype(v.shape)} = {dense(v)} : {ttype(v.shape)}"
                     for k, v in params.items())


def loads_text(params: dict[str, np.ndarray]) -> str:
    return "\n".join(f"%{k} = train.load @{k} : {ttype(v.shape)}" for k, v in params.items())


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("c_shape", [(4,), (1, 4), (3, 4)])
def test_gemm_grads(trans_a, trans_b, c_shape):
    rng = np.random.default_rng(int(trans_a) * 2 + int(trans_b))
    m, k, n = 3, 5, 4
    params = {"A": rng_f32(rng, (k, m) if trans_a else (m, k)), "B": rng_f32(rng, (n, k) if trans_b else (k, n)),
              "C": rng_f32(rng, c_shape)}
    alpha, beta = 0.5, 2.0
    text = f"""
    {params_text(params)}
    func.func @forward(%dummy: tensor<1xf32>) -> {ttype((m, n))} {{
      {loads_text(params)}
      %y = nn.gemm %A, %B, %C {{alpha = {alpha} : f32, beta = {beta} : f32, trans_a = {str(trans_a).lower()},
           trans_b = {str(trans_b).lower()}}} : ({ttype(params['A'].shape)}, {ttype(params['B'].shape)},
           {ttype(c_shape)}) -> {ttype((m, n))}
      func.return %y : {ttype((m, n))}
    }}"""

    def fn(p):
        a = p["A"].T if trans_a else p["A"]
        b = p["B"].T if trans_b else p["B"]
        return alpha * a @ b + beta * p["C"]

    module = autodiff(parse(text), loss="mse")
    target = rng_f32(rng, (m, n))
    tp = {k_: t64(v, True) for k_, v in params.items()}
    F.mse_loss(fn(tp), t64(target)).backward()
    state = TrainState(module)
    state.train_step(np.zeros(1, np.float32), target, np.float32(1.0))
    for name in params:
        assert rel_err(state.grads[name], tp[name].grad) <= TOL, name


def test_elementwise_and_matmul_grads():
    """Broadcasting sub/mul/div/add, matmul and transpose: reduce_to_shape and the nn rules."""
    rng = np.random.default_rng(7)
    params = {"A": rng_f32(rng, (2, 3)), "B": rng_f32(rng, (1, 3)), "C": rng_f32(rng, (2, 1)),
              "D": (rng.uniform(1.0, 2.0, (3,)) * rng.choice([-1, 1], 3)).astype(np.float32),
              "M": rng_f32(rng, (3, 4))}
    t23, t34, t24, t42 = ttype((2, 3)), ttype((3, 4)), ttype((2, 4)), ttype((4, 2))
    text = f"""
    {params_text(params)}
    func.func @forward(%x: {t23}) -> {t24} {{
      {loads_text(params)}
      %s = nn.sub %A, %B : ({t23}, {ttype((1, 3))}) -> {t23}
      %p = nn.mul %s, %C : ({t23}, {ttype((2, 1))}) -> {t23}
      %q = nn.div %p, %D : ({t23}, {ttype((3,))}) -> {t23}
      %r = nn.add %q, %x : ({t23}, {t23}) -> {t23}
      %u = nn.mul %r, %r : ({t23}, {t23}) -> {t23}
      %m = nn.matmul %u, %M : ({t23}, {t34}) -> {t24}
      %t = nn.transpose %m {{perm = array<i64: 1, 0>}} : ({t24}) -> {t42}
      %y = nn.transpose %t {{perm = array<i64: 1, 0>}} : ({t42}) -> {t24}
      func.return %y : {t24}
    }}"""
    x, target = rng_f32(rng, (2, 3)), rng_f32(rng, (2, 4))
    module = autodiff(parse(text), loss="mse")
    tp = {k: t64(v, True) for k, v in params.items()}
    r = (tp["A"] - tp["B"]) * tp["C"] / tp["D"] + t64(x)
    F.mse_loss((r * r) @ tp["M"], t64(target)).backward()
    state = TrainState(module)
    state.train_step(x, target, np.float32(1.0))
    for name in params:
        assert rel_err(state.grads[name], tp[name].grad) <= TOL, name


# -- whole train_step on small random nets ---------------------------------------------
class NetBuilder:
    """Writes a @forward of nn ops with random float32 constant weights, and keeps the
    torch mirror of each op so the same net runs under autograd."""

    def __init__(self, seed: int, input_shape):
        self.rng = np.random.default_rng(seed)
        self.lines: list[str] = []
        self.shapes = {"x": tuple(input_shape)}
        self.torch_ops: list = []
        self.layer = 0
        self.n = 0
        self.weights: dict[str, np.ndarray] = {}

    def _new(self, shape) -> str:
        self.n += 1
        name = f"v{self.n}"
        self.shapes[name] = tuple(shape)
        return name

    def const(self, role: str, a: np.ndarray) -> str:
        name = f"c{self.layer}_{role}"
        self.lines.append(f"%{name} = arith.constant {dense(a)} : {ttype(a.shape)}")
        self.weights[f"layer{self.layer}.{role}"] = a
        return name

    def conv(self, x, o, k, stride=1, pad=0, groups=1, dilation=1, bias=True):
        n, c, h, w = self.shapes[x]
        wt = rng_f32(self.rng, (o, c // groups, k, k), np.sqrt(2.0 / (c // groups * k * k)))
        wn = self.const("weight", wt)
        bn = self.const("bias", rng_f32(self.rng, (o,), 0.1)) if bias else None
        oh = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        ow = (w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        y = self._new((n, o, oh, ow))
        ops = f"%{x}, %{wn}" + (f", %{bn}" if bn else "")
        types = f"{ttype(self.shapes[x])}, {ttype(wt.shape)}" + (f", {ttype((o,))}" if bn else "")
        attrs = conv_attrs((stride, stride), (pad,) * 4, (dilation, dilation), groups)
        self.lines.append(f"%{y} = nn.conv2d {ops} {{{attrs}}} : ({types}) -> {ttype(self.shapes[y])}")
        layer = self.layer
        self.torch_ops.append((y, lambda env, p: F.conv2d(
            env[x], p[f"layer{layer}.weight"], p.get(f"layer{layer}.bias"), stride=stride, padding=pad,
            dilation=dilation, groups=groups)))
        self.layer += 1
        return y

    def unary(self, op: str, x, attrs: str, fn):
        y = self._new(self.shapes[x])
        t = ttype(self.shapes[x])
        self.lines.append(f"%{y} = {op} %{x} {attrs} : ({t}) -> {t}")
        self.torch_ops.append((y, lambda env, p: fn(env[x])))
        return y

    def relu6(self, x):
        return self.unary("nn.clip", x, "{min = 0.0 : f32, max = 6.0 : f32}", lambda v: F.hardtanh(v, 0.0, 6.0))

    def relu(self, x):
        return self.unary("nn.relu", x, "", F.relu)

    def add(self, a, b):
        y = self._new(self.shapes[a])
        t = ttype(self.shapes[a])
        self.lines.append(f"%{y} = nn.add %{a}, %{b} : ({t}, {t}) -> {t}")
        self.torch_ops.append((y, lambda env, p: env[a] + env[b]))
        return y

    def pool(self, x, kind, k, s, p):
        n, c, h, w = self.shapes[x]
        y = self._new((n, c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1))
        attrs = f"kernel = {arr((k, k))}, strides = {arr((s, s))}, pads = {arr((p,) * 4)}"
        if kind == "avg":
            attrs += ", count_include_pad = false"
        self.lines.append(f"%{y} = nn.{kind}_pool %{x} {{{attrs}}} : ({ttype(self.shapes[x])}) -> {ttype(self.shapes[y])}")
        fn = (lambda v: F.avg_pool2d(v, k, s, p, count_include_pad=False)) if kind == "avg" else \
            (lambda v: F.max_pool2d(v, k, s, p))
        self.torch_ops.append((y, lambda env, p_: fn(env[x])))
        return y

    def gap_flatten(self, x):
        n, c = self.shapes[x][:2]
        g, f = self._new((n, c, 1, 1)), self._new((n, c))
        self.lines.append(f"%{g} = nn.global_avg_pool %{x} : ({ttype(self.shapes[x])}) -> {ttype(self.shapes[g])}")
        self.lines.append(f"%{f} = nn.flatten %{g} {{axis = 1 : i64}} : ({ttype(self.shapes[g])}) -> {ttype((n, c))}")
        self.torch_ops.append((f, lambda env, p: env[x].mean(dim=(2, 3))))
        return f

    def gemm(self, x, k):
        n, c = self.shapes[x]
        wn = self.const("weight", rng_f32(self.rng, (k, c), 1 / np.sqrt(c)))
        bn = self.const("bias", rng_f32(self.rng, (k,), 0.1))
        y = self._new((n, k))
        self.lines.append(f"%{y} = nn.gemm %{x}, %{wn}, %{bn} {{alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, "
                          f"trans_b = true}} : ({ttype((n, c))}, {ttype((k, c))}, {ttype((k,))}) -> {ttype((n, k))}")
        layer = self.layer
        self.torch_ops.append((y, lambda env, p: F.linear(env[x], p[f"layer{layer}.weight"], p[f"layer{layer}.bias"])))
        self.layer += 1
        return y

    def text(self, out) -> str:
        body = "\n  ".join(self.lines)
        return (f"func.func @forward(%x: {ttype(self.shapes['x'])}) -> {ttype(self.shapes[out])} {{\n  {body}\n"
                f"  func.return %{out} : {ttype(self.shapes[out])}\n}}")

    def torch_forward(self, x, p):
        env = {"x": x}
        for name, fn in self.torch_ops:
            env[name] = fn(env, p)
        return env[name]


def mobile_net(seed: int, classes: int = 5):
    """conv+relu6, depthwise+relu6, pointwise, residual add, GAP, flatten, gemm."""
    b = NetBuilder(seed, (1, 3, 10, 10))
    h = b.relu6(b.conv("x", 8, 3, stride=2, pad=1))
    d = b.relu6(b.conv(h, 8, 3, pad=1, groups=8))
    p = b.conv(d, 8, 1)
    r = b.add(p, h)
    e = b.relu6(b.conv(r, 16, 1))
    d2 = b.relu6(b.conv(e, 16, 3, stride=2, pad=1, groups=16))
    p2 = b.conv(d2, 12, 1, bias=False)
    return b, b.gemm(b.gap_flatten(p2), classes)


def pool_net(seed: int, classes: int = 4):
    """relu, max pool, dilated conv, avg pool, bias-less conv."""
    b = NetBuilder(seed, (1, 2, 12, 12))
    h = b.relu(b.conv("x", 6, 3, pad=1))
    m = b.pool(h, "max", 3, 2, 1)
    d = b.relu(b.conv(m, 6, 3, pad=2, dilation=2))
    a = b.pool(d, "avg", 2, 2, 0)
    c = b.conv(a, 8, 1, bias=False)
    return b, b.gemm(b.gap_flatten(c), classes)


def torch_params(weights):
    return {k: t64(v, True) for k, v in weights.items()}


@pytest.mark.parametrize("net", [mobile_net, pool_net])
@pytest.mark.parametrize("seed", [0, 1])
def test_train_step_sgd_matches_torch(net, seed):
    b, out = net(seed)
    module = autodiff(parse(b.text(out)))
    rng = np.random.default_rng(seed + 10)
    x, label = rng_f32(rng, b.shapes["x"]), int(rng.integers(0, b.shapes[out][1]))
    state = TrainState(module)
    assert set(state.params) == set(b.weights)
    loss = state.train_step(x, np.int32(label), np.float32(1.0))

    tp = torch_params(b.weights)
    tl = F.cross_entropy(b.torch_forward(t64(x), tp), torch.tensor([label]))
    tl.backward()
    assert abs(loss - tl.item()) <= TOL * abs(tl.item())
    for name, w in b.weights.items():
        assert rel_err(state.grads[name], tp[name].grad) <= TOL, name
        # SGD with lr = 1: the new value is the old one minus the gradient.
        assert rel_err(w.astype(np.float64) - state.params[name], tp[name].grad) <= TOL, name

    # @forward now reads the trained parameters.
    with torch.no_grad():
        want = b.torch_forward(t64(x), {k: t64(v) for k, v in state.params.items()})
    assert rel_err(state.run("forward", [x])[0], want) <= TOL


@pytest.mark.parametrize("optimizer", ["sgdm", "adam"])
def test_three_steps_match_torch_optim(optimizer):
    b, out = mobile_net(3)
    options = {"optimizer": optimizer} | ({"momentum": 0.8} if optimizer == "sgdm" else {})
    module = autodiff(parse(b.text(out)), **options)
    rng = np.random.default_rng(4)
    lr = 0.01
    state = TrainState(module)
    tp = torch_params(b.weights)
    opt = (torch.optim.SGD(tp.values(), lr=lr, momentum=0.8) if optimizer == "sgdm"
           else torch.optim.Adam(tp.values(), lr=lr))
    for _ in range(3):
        x, label = rng_f32(rng, b.shapes["x"]), int(rng.integers(0, b.shapes[out][1]))
        loss = state.train_step(x, np.int32(label), np.float32(lr))
        opt.zero_grad()
        tl = F.cross_entropy(b.torch_forward(t64(x), tp), torch.tensor([label]))
        tl.backward()
        opt.step()
        assert abs(loss - tl.item()) <= TOL * abs(tl.item())
    for name, w in b.weights.items():
        moved = tp[name].detach().numpy() - w
        assert rel_err(state.params[name] - w, moved) <= TOL, name
    if optimizer == "adam":
        assert int(state.params["adam.step"]) == 3


def test_trainable_none_trains_only_new_classifier():
    b, out = mobile_net(5)
    module = autodiff(parse(b.text(out)), trainable="none", num_classes=3)
    text = str(module)
    step = text[text.index("@train_step"):]
    # Backward stops at the classifier: no convolution gradients at all.
    assert "train.conv2d" not in step and "train.global_avg_pool_grad" not in step
    assert step.count("train.sgd") == 2
    trainable = [op.sym_name.data for op in module.walk() if isinstance(op, train.ParamOp) and op.is_trainable]
    assert trainable == ["layer6.weight", "layer6.bias"]
    state = TrainState(module)
    w = state.params["layer6.weight"]
    # The documented initialisation: uniform in [-1/sqrt(K), 1/sqrt(K)] from default_rng(0), zero bias.
    want = np.random.default_rng(0).uniform(-1 / np.sqrt(12), 1 / np.sqrt(12), (3, 12)).astype(np.float32)
    np.testing.assert_array_equal(w, want)
    np.testing.assert_array_equal(state.params["layer6.bias"], np.zeros(3, np.float32))
    before = {k: v.copy() for k, v in state.params.items()}
    x = rng_f32(np.random.default_rng(0), b.shapes["x"])
    state.train_step(x, np.int32(2), np.float32(0.5))
    for k, v in state.params.items():
        assert np.array_equal(v, before[k]) == (k not in ("layer6.weight", "layer6.bias")), k
    assert state.run("forward", [x])[0].shape == (1, 3)


def test_write_back_and_sparse_channel_update():
    """A hand-written train_step with a channel-restricted weight gradient and update, and
    TrainState.write_back putting trained values into the IR."""
    rng = np.random.default_rng(9)
    w = rng_f32(rng, (4, 2, 3, 3))
    x, dy = rng_f32(rng, (1, 2, 5, 5)), rng_f32(rng, (1, 4, 3, 3))
    attrs = conv_attrs((1, 1), (0, 0, 0, 0), (1, 1), 1, channels=[1, 3])
    module = parse(f"""
    train.param @w trainable : {ttype(w.shape)} = {dense(w)} : {ttype(w.shape)}
    train.param @w.momentum : {ttype(w.shape)} = dense<0.0> : {ttype(w.shape)}
    func.func @train_step(%x: {ttype(x.shape)}, %dy: {ttype(dy.shape)}, %lr: f32) {{
      %g = train.conv2d_weight_grad %dy, %x {{{attrs}}} : ({ttype(dy.shape)}, {ttype(x.shape)}) -> {ttype((2, 2, 3, 3))}
      train.sgd @w, %g, %lr {{momentum = 0.5 : f32, velocity = @w.momentum, channels = array<i64: 1, 3>}} : {ttype((2, 2, 3, 3))}
      func.return
    }}""")
    tw = t64(w, True)
    F.conv2d(t64(x), tw).backward(t64(dy))
    state = TrainState(module)
    state.run("train_step", [x, dy, np.float32(0.1)])
    state.run("train_step", [x, dy, np.float32(0.1)])
    g = tw.grad.numpy()
    want = w.astype(np.float64).copy()
    want[[1, 3]] -= 0.1 * (g[[1, 3]] + (0.5 * g[[1, 3]] + g[[1, 3]]))  # v1 = g, v2 = 0.5 g + g
    assert rel_err(state.params["w"] - w, want - w) <= TOL
    np.testing.assert_array_equal(state.params["w"][[0, 2]], w[[0, 2]])
    state.write_back()
    fresh = TrainState(module)
    np.testing.assert_array_equal(fresh.params["w"], state.params["w"])
    np.testing.assert_array_equal(fresh.params["w.momentum"], state.params["w.momentum"])


def test_autodiff_errors():
    from xdsl.utils.exceptions import PassFailedException

    text = """
    func.func @forward(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
      %w = arith.constant dense<0.5> : tensor<4x4xf32>
      %y = nn.gemm %x, %w {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = false} : (tensor<1x4xf32>, tensor<4x4xf32>) -> tensor<1x4xf32>
      %s = nn.softmax %y {axis = 1 : i64} : (tensor<1x4xf32>) -> tensor<1x4xf32>
      func.return %s : tensor<1x4xf32>
    }"""
    with pytest.raises(PassFailedException, match="no gradient rule for 'nn.softmax'"):
        autodiff(parse(text))
    with pytest.raises(PassFailedException, match="optimizer=rmsprop is not one of"):
        autodiff(parse(text), optimizer="rmsprop")
    with pytest.raises(PassFailedException, match="num-classes needs the classifier"):
        autodiff(parse(text), num_classes=3)
    with pytest.raises(PassFailedException, match="nothing to train"):
        autodiff(parse(text.replace("nn.softmax %y {axis = 1 : i64}", "nn.relu %y")), trainable="none")


# -- MCUNet-5fps fp32 ---------------------------------------------------------------------
from shared_models import MODELS  # noqa: E402


def onnx_torch_forward(model, x, params):
    """A functional torch evaluator of the shared fp32 ONNX graphs (Conv, Clip, Add,
    GlobalAveragePool, Flatten, Gemm), written independently of tinymlir's frontend."""
    from onnx import helper, numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env = {model.graph.input[0].name: x}

    def val(name):
        if name in params:
            return params[name]
        if name in env:
            return env[name]
        return t64(init[name])

    for node in model.graph.node:
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        ins = [val(i) if i else None for i in node.input]
        if node.op_type == "Conv":
            p = a.get("pads", [0, 0, 0, 0])
            xin = F.pad(ins[0], (p[1], p[3], p[0], p[2]))
            y = F.conv2d(xin, ins[1], ins[2] if len(ins) > 2 else None, stride=a.get("strides", [1, 1]),
                         dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))
        elif node.op_type == "Clip":
            y = F.hardtanh(ins[0], float(ins[1]), float(ins[2]))
        elif node.op_type == "Add":
            y = ins[0] + ins[1]
        elif node.op_type == "GlobalAveragePool":
            y = ins[0].mean(dim=(2, 3), keepdim=True)
        elif node.op_type == "Flatten":
            y = ins[0].reshape(ins[0].shape[0], -1)
        elif node.op_type == "Gemm":
            b = ins[1].T if a.get("transB", 0) else ins[1]
            y = a.get("alpha", 1.0) * ins[0] @ b + a.get("beta", 1.0) * ins[2]
        else:
            raise NotImplementedError(node.op_type)
        env[node.output[0]] = y
    return env[model.graph.output[0].name]


def onnx_layer_params(model):
    """{layer<i>.weight/bias: (initializer name)} in the autodiff numbering: Conv/Gemm in order."""
    names = {}
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    for i, node in enumerate(layers):
        names[f"layer{i}.weight"] = node.input[1]
        if len(node.input) > 2 and node.input[2]:
            names[f"layer{i}.bias"] = node.input[2]
    return names


def test_mcunet_train_step_matches_torch():
    path = MODELS / "mcunet-5fps-fp32.onnx"
    if not path.exists():
        pytest.skip(f"{path} not found (set TINYMLIR_MODELS)")
    frontend = pytest.importorskip("tinymlir.frontend", reason="the ONNX frontend is not available")
    if not hasattr(frontend, "import_onnx"):
        pytest.skip("tinymlir.frontend.import_onnx is not available yet")
    import onnx

    t0 = time.perf_counter()
    module = frontend.import_onnx(str(path))
    autodiff(module, num_classes=10)
    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    state = TrainState(module)
    p0 = {k: v.copy() for k, v in state.params.items()}
    loss = state.train_step(x, np.int32(3), np.float32(1.0))
    t2 = time.perf_counter()

    model = onnx.load(str(path))
    names = onnx_layer_params(model)
    classifier = max(int(re.match(r"layer(\d+)", k).group(1)) for k in names)
    assert set(p0) == set(names)  # 43 layers' weights and biases, all trainable
    # The evaluator reads these in place of the initializers: the new classifier included.
    tp = {names[k]: t64(p0[k], True) for k in names}
    tl = F.cross_entropy(onnx_torch_forward(model, t64(x), tp), torch.tensor([3]))
    tl.backward()
    t3 = time.perf_counter()
    print(f"\nMCUNet-5fps: import+autodiff {t1 - t0:.1f}s, train_step {t2 - t1:.1f}s, torch {t3 - t2:.1f}s")
    assert abs(loss - tl.item()) <= TOL * abs(tl.item())
    worst = max(rel_err(state.grads[k], tp[names[k]].grad) for k in names)
    print(f"MCUNet-5fps: {len(names)} parameters, loss {loss:.6f}, worst gradient error {worst:.2e}")
    assert worst <= TOL
    for k in names:  # SGD with lr = 1 applied exactly these gradients
        np.testing.assert_array_equal(state.params[k], (p0[k] - state.grads[k].astype(np.float64)).astype(np.float32))
    assert state.params[f"layer{classifier}.weight"].shape == (10, p0[f"layer{classifier}.weight"].shape[1])
