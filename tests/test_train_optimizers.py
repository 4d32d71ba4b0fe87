"""Momentum SGD ("sgdm") and Adam on quantized (int8 / int32) parameters, from the train
level down to C, bit for bit.

- train level: `train.sgd {momentum, velocity}` and `train.adam` on quantized params in
  the interpreter against an independent numpy reference of the documented semantics
  (float64 arithmetic on the float32 state, round half to even or stochastic floor with
  fmix32 in tests/rounding_reference.py (Python ints), symmetric saturation, non-finite elements left
  alone), 3 steps, partial channels, both state shapes (the param's, the trained rows');
- the C kernels `tk_*_opt_*` (ctypes) against their numpy twins `tk_math.*_opt`, with
  random state, channel subsets, non-finite gradients and a range of Adam step counts;
- the bundled digits example through `train_pipeline(optimizer=...)` and `LOWER_TRAIN`
  (with a scheme training half the channels of a depthwise and of a pointwise weight, so
  `split-sparse-params` splits one): the lowered interpreter and the generated host C
  agree on the loss bits and every param's bytes, optimizer state included, after 3
  steps; the C compiles with -Wall -Wextra -Werror -std=c99 and runs clean under
  ASan + UBSan (gcc and clang), and on the Cortex-M4 (QEMU) too; the state costs 4
  (sgdm) or 8 (adam) bytes per trained element;
- verifier errors of the new code paths.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from tinymlir.codegen import build as B
from tinymlir.codegen.emit_c import emit_c
from tinymlir.context import make_context
from tinymlir.frontend.onnx_importer import import_onnx
from tinymlir.interpreter import tk_math as tm
from tinymlir.interpreter.tk_math import ConvGeometry
from tinymlir.interpreter.train_impls import TrainState
from tinymlir.pipelines import (
    LOWER_TRAIN,
    quantize_nhwc,
    run_pipeline,
    run_pipeline_reading_input_type,
    train_pipeline,
)
from rounding_reference import uniforms  # noqa: E402
from train_step_checks import assert_same, interpreter_run  # noqa: E402

F32 = np.float32
I32_MAX = 2**31 - 1
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]


# --------------------------------------------------------------------------- the reference


def f32(x: float) -> float:
    return float(np.float32(x))


def reference_round(q, val, rounding: str, state: int, lo: int, hi: int):
    """q' = clamp(R(val)) where val is finite, q elsewhere; returns (q', finite, new state)."""
    fin = np.isfinite(val)
    v = np.where(fin, val, 0.0)
    if rounding == "nearest":
        r = np.rint(v)
    else:
        r = np.floor(v + uniforms(state, v.size).reshape(v.shape))
        state = (state + v.size) & 0xFFFFFFFF
    return np.where(fin, np.clip(r, lo, hi), q), fin, state


@np.errstate(all="ignore")
def reference_sgdm(q, vel, g, lr, mom, rounding, state, lo, hi):
    vn = (mom * vel.astype(np.float64) + g.astype(np.float64)).astype(F32)
    new_q, fin, state = reference_round(q, q - float(F32(lr)) * vn.astype(np.float64), rounding, state, lo, hi)
    return new_q, np.where(fin, vn, vel).astype(F32), state


@np.errstate(all="ignore")
def reference_adam(q, m, v, g, lr, b1, b2, eps, t, rounding, state, lo, hi):
    g = g.astype(np.float64)
    mn = (b1 * m.astype(np.float64) + (1 - b1) * g).astype(F32)
    vn = (b2 * v.astype(np.float64) + (1 - b2) * g * g).astype(F32)
    step = float(F32(lr)) * (mn / (1 - b1**t)) / (np.sqrt(vn.astype(np.float64) / (1 - b2**t)) + eps)
    new_q, fin, state = reference_round(q, q - step, rounding, state, lo, hi)
    return new_q, np.where(fin, mn, m).astype(F32), np.where(fin, vn, v).astype(F32), state


def dense(a) -> str:
    return "dense<" + str(np.asarray(a).tolist()) + ">"


W0 = np.array([[-127, 126, 0, 5], [126, 127, 3, -3], [60, -60, 1, -1]], dtype=np.int8)
B0 = np.array([17, I32_MAX - 1, -5], dtype=np.int32)
WT = "tensor<3x4x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0, 0.125:0}>>"
BT = "tensor<3x!quant.uniform<i32:f32:0, {0.01:0, 0.02:0, 0.03:0}>>"
W_ROWS, B_ROWS = [0, 2], [1, 2]


def optimizer_module(optimizer: str, rounding: str):
    """@w updated on rows [0, 2] with state of the trained rows' shape, @b on [1, 2] with
    state of its whole shape (both forms the verifier accepts)."""
    rng = {"w": ', rng = @w.rng' if rounding == "stochastic" else "",
           "b": ', rng = @b.rng' if rounding == "stochastic" else ""}
    common = {k: f'channels = array<i64: {", ".join(map(str, rows))}>, rounding = "{rounding}"{rng[k]}'
              for k, rows in (("w", W_ROWS), ("b", B_ROWS))}
    if optimizer == "sgdm":
        body = (f"train.sgd @w, %gw, %lr {{momentum = 0.75 : f32, velocity = @w.s1, {common['w']}}} : tensor<2x4xf32>\n"
                f"train.sgd @b, %gb, %lr {{momentum = 0.75 : f32, velocity = @b.s1, {common['b']}}} : tensor<2xf32>")
    else:
        hyper = "beta1 = 0.8 : f32, beta2 = 0.99 : f32, eps = 1.0e-03 : f32, step = @step"
        body = ("train.increment @step\n"
                f"train.adam @w, %gw, %lr {{{hyper}, m = @w.s1, v = @w.s2, {common['w']}}} : tensor<2x4xf32>\n"
                f"train.adam @b, %gb, %lr {{{hyper}, m = @b.s1, v = @b.s2, {common['b']}}} : tensor<2xf32>")
    text = f"""
    train.param @w trainable : {WT} = {dense(W0)} : tensor<3x4xi8>
    train.param @w.s1 : tensor<2x4xf32> = dense<0.0> : tensor<2x4xf32>
    train.param @w.s2 : tensor<2x4xf32> = dense<0.0> : tensor<2x4xf32>
    train.param @w.rng : tensor<i32> = dense<7> : tensor<i32>
    train.param @b trainable : {BT} = {dense(B0)} : tensor<3xi32>
    train.param @b.s1 : tensor<3xf32> = dense<0.0> : tensor<3xf32>
    train.param @b.s2 : tensor<3xf32> = dense<0.0> : tensor<3xf32>
    train.param @b.rng : tensor<i32> = dense<-5> : tensor<i32>
    train.param @step : tensor<i32> = dense<0> : tensor<i32>
    func.func @train_step(%gw: tensor<2x4xf32>, %gb: tensor<2xf32>, %lr: f32) {{
      {body}
      func.return
    }}"""
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("optimizer", ["sgdm", "adam"])
def test_train_level_quantized_optimizers_match_reference(optimizer, rounding):
    rng = np.random.default_rng(3)
    module = optimizer_module(optimizer, rounding)
    state = TrainState(module)
    lr = 0.9
    w_scale = np.array([0.5, 0.25, 0.125])[W_ROWS]
    q_w, q_b = W0.astype(np.float64), B0.astype(np.float64)
    s = {"w1": np.zeros((2, 4), F32), "w2": np.zeros((2, 4), F32), "b1": np.zeros(3, F32), "b2": np.zeros(3, F32)}
    rw, rb = 7, (-5) & 0xFFFFFFFF
    for t in (1, 2, 3):
        gw = (rng.normal(0, 1.5, (2, 4)) / w_scale[:, None]).astype(F32)
        gb = rng.normal(0, 3, 2).astype(F32)
        gw[0, 1], gb[0] = -400.0, -1e4  # saturate: 126 + and I32_MAX - 1 + lr * ...
        if t == 2:
            gw[1, 3] = np.inf  # skipped: q and its state stay
            gb[1] = np.nan
        state.run("train_step", [gw, gb, F32(lr)])
        if optimizer == "sgdm":
            mom = f32(0.75)
            q_w[W_ROWS], s["w1"], rw = reference_sgdm(q_w[W_ROWS], s["w1"], gw, lr, mom, rounding, rw, -127, 127)
            q_b[B_ROWS], s["b1"][B_ROWS], rb = reference_sgdm(q_b[B_ROWS], s["b1"][B_ROWS], gb, lr, mom, rounding,
                                                              rb, -I32_MAX, I32_MAX)
        else:
            hyper = (f32(0.8), f32(0.99), f32(1e-3), t)
            q_w[W_ROWS], s["w1"], s["w2"], rw = reference_adam(q_w[W_ROWS], s["w1"], s["w2"], gw, lr, *hyper, rounding,
                                                               rw, -127, 127)
            q_b[B_ROWS], s["b1"][B_ROWS], s["b2"][B_ROWS], rb = reference_adam(
                q_b[B_ROWS], s["b1"][B_ROWS], s["b2"][B_ROWS], gb, lr, *hyper, rounding, rb, -I32_MAX, I32_MAX)
        p = state.params
        np.testing.assert_array_equal(p["w"], q_w.astype(np.int8), err_msg=f"step {t}")
        np.testing.assert_array_equal(p["b"], q_b.astype(np.int32), err_msg=f"step {t}")
        np.testing.assert_array_equal(p["w.s1"].view(np.uint32), s["w1"].view(np.uint32))
        np.testing.assert_array_equal(p["b.s1"].view(np.uint32), s["b1"].view(np.uint32))
        if optimizer == "adam":
            np.testing.assert_array_equal(p["w.s2"].view(np.uint32), s["w2"].view(np.uint32))
            np.testing.assert_array_equal(p["b.s2"].view(np.uint32), s["b2"].view(np.uint32))
            assert int(p["step"]) == t
        want_rng = (rw, rb) if rounding == "stochastic" else (7, (-5) & 0xFFFFFFFF)
        assert (int(np.asarray(p["w.rng"]).view(np.uint32)), int(np.asarray(p["b.rng"]).view(np.uint32))) == want_rng
    assert q_w[0, 1] == 127 and q_b[1] == I32_MAX or optimizer == "adam"  # sgdm saturates, never wraps
    assert np.all(np.isfinite(p["w.s1"])) and np.all(np.isfinite(p["b.s1"]))
    assert p["w"][1].tolist() == W0[1].tolist() and p["b"][0] == B0[0]  # rows not selected: unchanged


# --------------------------------------------------------------------------- C kernels vs twins

TK = Path(__file__).resolve().parents[1] / "tinymlir" / "runtime" / "tk"
FP = ctypes.POINTER(ctypes.c_float)
I8P = ctypes.POINTER(ctypes.c_int8)
I32P = ctypes.POINTER(ctypes.c_int32)
U32P = ctypes.POINTER(ctypes.c_uint32)
I32, F = ctypes.c_int32, ctypes.c_float


class CGeom(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in ConvGeometry.FIELDS]


class COpt(ctypes.Structure):
    _fields_ = [("kind", I32), ("momentum", F), ("beta1", F), ("beta2", F), ("eps", F), ("step", I32),
                ("velocity", FP), ("m", FP), ("v", FP)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = B.build_host(tmp_path_factory.mktemp("tk_opt"), sorted((TK / "src").glob("*.c")), name="libtk.so",
                      include=[TK / "include"], with_runtime=False)
    dll = ctypes.CDLL(str(so))
    G = ctypes.POINTER(CGeom)
    O = ctypes.POINTER(COpt)
    sigs = {
        "tk_conv_weight_grad_opt_s8": [G, FP, I8P, I32, F, I8P, I32P, I32, FP, F, U32P, O, FP],
        "tk_depthwise_conv_weight_grad_opt_s8": [G, FP, I8P, I32, F, I8P, I32P, I32, FP, F, U32P, O, FP],
        "tk_bias_grad_opt_s32": [FP, I32, I32, I32P, I32P, I32, FP, F, U32P, O],
    }
    for name, args in sigs.items():
        fn = getattr(dll, name)
        fn.restype, fn.argtypes = I32, args
    return dll


def _p(a, typ):
    return None if a is None else a.ctypes.data_as(typ)


def _random_opt(rng, kind: str, count: int, step: int) -> tm.Optimizer:
    def state(scale):
        return (rng.normal(0, scale, count) * (rng.random(count) < 0.8)).astype(F32)
    if kind == "sgdm":
        return tm.Optimizer("sgdm", momentum=f32(rng.uniform(0, 0.99)), velocity=state(2.0))
    return tm.Optimizer("adam", beta1=f32(rng.uniform(0.5, 0.95)), beta2=f32(rng.uniform(0.9, 0.9999)),
                        eps=f32(10.0 ** rng.uniform(-9, -2)), step=step, m=state(0.5), v=np.abs(state(0.3)))


def _copt(o: tm.Optimizer) -> tuple[COpt, dict[str, np.ndarray]]:
    arrays = {k: np.ascontiguousarray(np.array(v, dtype=F32)) for k, v in o.state().items()}
    kind = {"sgd": 0, "sgdm": 1, "adam": 2}[o.kind]
    c = COpt(kind, o.momentum, o.beta1, o.beta2, o.eps, o.step, _p(arrays.get("velocity"), FP),
             _p(arrays.get("m"), FP), _p(arrays.get("v"), FP))
    return c, arrays


def _same_state(o: tm.Optimizer, arrays: dict[str, np.ndarray]) -> None:
    for k, a in arrays.items():
        np.testing.assert_array_equal(a.view(np.uint32), np.asarray(getattr(o, k), F32).view(np.uint32), err_msg=k)


@pytest.mark.parametrize("kind", ["sgdm", "adam"])
def test_opt_kernels_match_numpy_twins(lib, kind):
    """Random geometries, channel subsets, optimizer states and Adam steps (0, 1, 2, 10,
    1000, 2^31-1), some gradients non-finite: q, the state, rng and the skip count agree."""
    rng = np.random.default_rng(11 if kind == "sgdm" else 12)
    for case in range(12):
        step = [0, 1, 2, 10, 1000, 2**31 - 1][case % 6]
        stochastic = case % 2 == 1
        g = ConvGeometry(n=1, in_h=5, in_w=5, in_c=int(rng.integers(1, 5)), out_h=3, out_w=3,
                         out_c=int(rng.integers(2, 6)), k_h=3, k_w=3, stride_h=2, stride_w=2, pad_h=1, pad_w=1)
        dy = rng.normal(0, 1, (1, 3, 3, g.out_c)).astype(F32) * (rng.random((1, 3, 3, g.out_c)) < 0.7)
        if case % 3 == 2:
            dy.reshape(-1)[int(rng.integers(dy.size))] = [np.inf, np.nan, -np.inf][case % 3]
            dy = dy.astype(F32)
        x = rng.integers(-128, 128, (1, 5, 5, g.in_c)).astype(np.int8)
        sel = np.sort(rng.choice(g.out_c, int(rng.integers(1, g.out_c + 1)), replace=False)).astype(np.int32)
        factor = rng.uniform(10, 100, g.out_c).astype(F32)
        lr = f32(rng.uniform(0.2, 3.0))
        r0 = int(rng.integers(0, 2**32))
        # regular convolution
        w = rng.integers(-127, 128, (g.out_c, 3, 3, g.in_c)).astype(np.int8)
        o = _random_opt(rng, kind, sel.size * 9 * g.in_c, step)
        want_w, want_r, want_sk, want_o = tm.conv_weight_grad_opt(g, dy, x, -3, 0.05, w, sel, factor, lr,
                                                                  r0 if stochastic else None, o)
        cw, co = w.copy(), _copt(o)
        cr = np.array([r0], np.uint32)
        scratch = np.zeros(9 * g.in_c, F32)
        sk = lib.tk_conv_weight_grad_opt_s8(ctypes.byref(CGeom(*g.astuple())), _p(dy, FP), _p(x, I8P), -3, 0.05,
                                            _p(cw, I8P), _p(sel, I32P), sel.size, _p(factor, FP), lr,
                                            _p(cr, U32P) if stochastic else None, ctypes.byref(co[0]),
                                            _p(scratch, FP))
        np.testing.assert_array_equal(cw, want_w)
        _same_state(want_o, co[1])
        assert sk == want_sk and (not stochastic or int(cr[0]) == want_r)
        # depthwise
        gd = ConvGeometry(**{**g.__dict__, "in_c": g.out_c})
        xd = rng.integers(-128, 128, (1, 5, 5, g.out_c)).astype(np.int8)
        wd = rng.integers(-127, 128, (1, 3, 3, g.out_c)).astype(np.int8)
        o = _random_opt(rng, kind, sel.size * 9, step)
        want_w, want_r, want_sk, want_o = tm.depthwise_conv_weight_grad_opt(gd, dy, xd, 5, 0.02, wd, sel, factor, lr,
                                                                            r0 if stochastic else None, o)
        cw, co, cr = wd.copy(), _copt(o), np.array([r0], np.uint32)
        scratch = np.zeros(9, F32)
        sk = lib.tk_depthwise_conv_weight_grad_opt_s8(ctypes.byref(CGeom(*gd.astuple())), _p(dy, FP), _p(xd, I8P), 5,
                                                      0.02, _p(cw, I8P), _p(sel, I32P), sel.size, _p(factor, FP), lr,
                                                      _p(cr, U32P) if stochastic else None, ctypes.byref(co[0]),
                                                      _p(scratch, FP))
        np.testing.assert_array_equal(cw, want_w)
        _same_state(want_o, co[1])
        assert sk == want_sk and (not stochastic or int(cr[0]) == want_r)
        # bias (int32, near the saturation bounds)
        dy2 = np.ascontiguousarray(dy.reshape(-1, g.out_c) * F32(1000))
        b = rng.integers(-I32_MAX, I32_MAX, g.out_c).astype(np.int32)
        b[0] = I32_MAX - 2
        o = _random_opt(rng, kind, sel.size, step)
        want_b, want_r, want_sk, want_o = tm.bias_grad_opt(dy2, b, sel, factor * F32(1e4), lr,
                                                           r0 if stochastic else None, o)
        cb, co, cr = b.copy(), _copt(o), np.array([r0], np.uint32)
        f2 = np.ascontiguousarray(factor * F32(1e4))
        sk = lib.tk_bias_grad_opt_s32(_p(dy2, FP), dy2.shape[0], g.out_c, _p(cb, I32P), _p(sel, I32P), sel.size,
                                      _p(f2, FP), lr, _p(cr, U32P) if stochastic else None, ctypes.byref(co[0]))
        np.testing.assert_array_equal(cb, want_b)
        _same_state(want_o, co[1])
        assert sk == want_sk and (not stochastic or int(cr[0]) == want_r)


def test_pow_f32_and_skip_rule():
    """pow_f32 is float32 binary exponentiation; a non-finite step leaves q and the state."""
    assert tm.pow_f32(0.9, 0) == F32(1) and tm.pow_f32(0.9, 1) == F32(0.9)
    assert tm.pow_f32(0.9, 3) == F32(F32(0.9) * F32(F32(0.9) * F32(0.9)))
    assert tm.pow_f32(0.999, 10**6) == F32(0)  # underflows to 0: bias corrections become 1
    o = tm.Optimizer("adam", beta1=f32(0.9), beta2=f32(0.999), eps=f32(1e-8), step=1,
                     m=np.array([0.5, 0.5], F32), v=np.array([0.25, 0.25], F32))
    q, skipped, o2 = tm.optim_update(np.array([3, 3]), np.array([np.inf, 1.0], F32), F32(1), 1.0, None,
                                     np.arange(2), -127, 127, o)
    assert skipped == 1 and q[0] == 3 and o2.m[0] == F32(0.5) and o2.v[0] == F32(0.25) and o2.m[1] != F32(0.5)


# --------------------------------------------------------------------------- the whole pipeline, in C


@pytest.fixture(scope="module")
def digits_example(tmp_path_factory):
    from tinymlir.examples.digits import make_example

    return make_example(tmp_path_factory.mktemp("digits_opt"), seed=0)


SCHEME = ("# digits: half the channels of the depthwise layer 1 and of the pointwise layer 2\n"
          "bias last 2\nweights 1:0.5 2:0.5\n")


def lowered_digits(ex: dict, optimizer: str, rounding: str, tmp: Path):
    scheme = tmp / "digits.scheme"
    scheme.write_text(SCHEME)
    front = f'fold-batch-norm,quantize-ptq{{calibration="{ex["calib"]}"}}'
    module, itype = run_pipeline_reading_input_type(
        import_onnx(ex["onnx"]),
        train_pipeline(scheme=scheme, rounding=rounding, front=front, optimizer=optimizer) + "," + LOWER_TRAIN)
    xs, ys = np.load(ex["test_x"]).astype(np.float32), np.load(ex["test_y"])
    x = quantize_nhwc(xs[:1], itype)
    return module, x, [int(ys[0])] * 2 + [int(ys[1])]


def run_both(module, x, labels, lr, d: Path, flags=(), compiler: str = "gcc"):
    srcs = B.write_train_harness(d, emit_c(module, prefix="model"), x, labels, lr)
    exe = B.build_host(d, srcs, name="train", shared=False, extra_flags=list(flags), compiler=compiler)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    losses, params = interpreter_run(module, x, labels, lr)
    assert_same(B.parse_train_output(r.stdout), losses, params)
    return losses, params


STATE = {"sgdm": (".momentum",), "adam": (".m", ".v")}


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("optimizer", ["sgdm", "adam"])
def test_digits_lowered_interpreter_equals_host_c(digits_example, tmp_path, optimizer, rounding):
    module, x, labels = lowered_digits(digits_example, optimizer, rounding, tmp_path)
    text = str(module)
    assert "tk.conv_weight_grad_sgd @layer2.weight.train" in text  # split: trained rows in SRAM
    assert "tk.depthwise_conv_weight_grad_sgd @layer1.weight" in text and "channels [" in text
    lr = 0.05 if optimizer == "sgdm" else 0.8
    losses, params = run_both(module, x, labels, lr, tmp_path)
    assert losses[1] < losses[0] or optimizer == "adam" and losses[2] != losses[0]
    # the state: float32, one element per trained element, only the trained rows
    trained = {n: a for n, a in params.items() if re.fullmatch(r"layer\d+\.(weight|bias)(\.train|\.rest)?", n)
               and f"{n}{STATE[optimizer][0]}" in params}  # `@W.train`'s state is `@W.train.m`
    assert {"layer1.weight", "layer2.weight.train", "layer2.bias.train", "layer2.bias.rest", "layer4.weight"} <= \
        set(trained)
    for n, a in trained.items():
        for suffix in STATE[optimizer]:
            s = params[n + suffix]
            assert s.dtype == np.float32 and np.any(s != 0), n + suffix
    assert params["layer1.weight.m" if optimizer == "adam" else "layer1.weight.momentum"].shape == (1, 3, 3, 4)
    assert params["layer2.weight.train" + STATE[optimizer][0]].shape == params["layer2.weight.train"].shape == \
        (8, 1, 1, 8)
    if optimizer == "adam":
        assert int(params["adam.step"]) == 3
    # the state is training memory: MODEL_TRAINABLE_BYTES counts it, 4 or 8 bytes per trained element
    header = emit_c(module)["model.h"]
    trainable_bytes = int(re.search(r"#define MODEL_TRAINABLE_BYTES (\d+)", header).group(1))
    state_bytes = sum(a.nbytes for n, a in params.items() if n.endswith(STATE[optimizer]))
    elements = sum(a.size for n, a in trained.items())
    elements -= params["layer1.weight"].size - 9 * 4  # layer1 trains 4 of its 8 channels of 9 taps
    assert state_bytes == 4 * len(STATE[optimizer]) * elements
    assert state_bytes < trainable_bytes


def test_digits_adam_stochastic_sanitized(digits_example, tmp_path):
    """ASan + UBSan, -Wall -Wextra -Werror -std=c99 (build_host's flags)."""
    module, x, labels = lowered_digits(digits_example, "adam", "stochastic", tmp_path)
    run_both(module, x, labels, 0.8, tmp_path, flags=SANITIZE)


def test_digits_adam_cortex_m4_bit_exact(digits_example, tmp_path):
    """The Cortex-M4 (QEMU): its FPU's float32 arithmetic and vsqrt give the same bits."""
    from tinymlir.codegen import qemu_icount as Q
    from toolchain import require_cortex_m_toolchain

    require_cortex_m_toolchain()
    module, x, labels = lowered_digits(digits_example, "adam", "stochastic", tmp_path)
    srcs = B.write_train_harness(tmp_path, emit_c(module, prefix="model"), x, labels, 0.8)
    res = Q.run_icount(B.build_cortex_m4(tmp_path, srcs), timeout=600)
    assert res.exit_code == 0, res.output[-2000:]
    assert_same(B.parse_train_output(res.output), *interpreter_run(module, x, labels, 0.8))


def test_digits_sgdm_sanitized_clang(digits_example, tmp_path):
    module, x, labels = lowered_digits(digits_example, "sgdm", "stochastic", tmp_path)
    run_both(module, x, labels, 0.05, tmp_path, flags=SANITIZE, compiler="clang")


@pytest.mark.parametrize("optimizer", ["sgdm", "adam"])
def test_digits_reorder_update_fuses_and_keeps_training_bitwise(digits_example, tmp_path, optimizer):
    """At the train level: every update of the int8 digits model fuses into its gradient
    op, and the fused step trains exactly as the unfused one (3 steps, stochastic)."""
    scheme = tmp_path / "digits.scheme"
    scheme.write_text(SCHEME)
    front = f'fold-batch-norm,quantize-ptq{{calibration="{digits_example["calib"]}"}}'
    spec = train_pipeline(scheme=scheme, rounding="stochastic", front=front, optimizer=optimizer)
    assert spec.endswith(",reorder-update")
    unfused = run_pipeline(import_onnx(digits_example["onnx"]), spec[:-len(",reorder-update")])
    fused = run_pipeline(unfused.clone(), "reorder-update")
    text = str(fused)
    assert "train.sgd " not in text and "train.adam " not in text and text.count("_grad_sgd @") == 6
    xs, ys = np.load(digits_example["test_x"]).astype(np.float32), np.load(digits_example["test_y"])
    labels = [int(ys[0])] * 2 + [int(ys[1])]
    a, b = interpreter_run(unfused, xs[:1], labels, 0.5), interpreter_run(fused, xs[:1], labels, 0.5)
    assert np.float32(a[0]).tobytes() == np.float32(b[0]).tobytes()
    assert a[1].keys() == b[1].keys() and all(a[1][k].tobytes() == b[1][k].tobytes() for k in a[1])
    assert any(not np.array_equal(a[1][k], v) for k, v in TrainState(unfused.clone()).params.items()
               if k.endswith(STATE[optimizer][0]))  # the state moved


# --------------------------------------------------------------------------- verifier


@pytest.mark.parametrize("edit,message", [
    ("momentum = 0.75 : f32", None),
    ("momentum = 1.5 : f32", "train.sgd: momentum must lie in [0, 1), got 1.5"),
    ("velocity = @w.s1", None),
    ("velocity = @w.bad", "train.sgd: velocity @w.bad of the quantized @w must be a tensor of f32 of its shape [3, 4] "
                          "(or its trained rows' [2, 4]), got tensor<2x4xi8>"),
])
def test_sgdm_verifier(edit, message):
    text = str(optimizer_module("sgdm", "nearest")).replace(
        "train.param @w.rng", "train.param @w.bad : tensor<2x4xi8> = dense<0> : tensor<2x4xi8>\n  train.param @w.rng")
    old = "momentum = 7.500000e-01 : f32" if "momentum" in edit else "velocity = @w.s1"
    text = text.replace(old, edit, 1)
    if message is None:
        Parser(make_context(), text).parse_module().verify()
        return
    with pytest.raises(VerifyException, match=re.escape(message)):
        Parser(make_context(), text).parse_module().verify()


@pytest.mark.parametrize("edit,message", [
    ("beta1 = 1.000000e+00 : f32", "train.adam: beta1 must lie in [0, 1), got 1.0"),
    ("beta2 = -1.000000e-01 : f32", "train.adam: beta2 must lie in [0, 1)"),
    ("eps = 0.000000e+00 : f32", "train.adam: eps must be positive and finite (in float32), got 0.0"),
    ("eps = 1.000000e-50 : f32", "train.adam: eps must be positive and finite (in float32)"),
    ("m = @w.rng", "train.adam: m @w.rng of the quantized @w must be a tensor of f32"),
])
def test_adam_verifier(edit, message):
    text = str(optimizer_module("adam", "nearest"))
    key = edit.split(" = ")[0]
    old = re.search(rf"\b{key} = [^,}}]+", text).group(0)
    text = text.replace(old, edit, 1)
    with pytest.raises(VerifyException, match=re.escape(message)):
        Parser(make_context(), text).parse_module().verify()


def test_tk_verifier_checks_state_shape(digits_example, tmp_path):
    module, _, _ = lowered_digits(digits_example, "adam", "nearest", tmp_path)
    text = str(module)
    # layer1's state holds its 4 trained channels: [1, 3, 3, 4]; the whole weight's shape is wrong
    bad = text.replace("train.param @layer1.weight.m : tensor<1x3x3x4xf32>", "train.param @layer1.weight.m : "
                       "tensor<1x3x3x8xf32>", 1)
    bad = re.sub(r"(train\.param @layer1\.weight\.m : tensor<1x3x3x8xf32> = )dense<[^>]*> : tensor<1x3x3x4xf32>",
                 r"\1dense<0.0> : tensor<1x3x3x8xf32>", bad)
    assert bad != text
    with pytest.raises(VerifyException, match=re.escape(
            "tk.depthwise_conv_weight_grad_sgd: m @layer1.weight.m must be a tensor of f32 of shape [1, 3, 3, 4] "
            "(one element per updated element), got tensor<1x3x3x8xf32>")):
        Parser(make_context(), bad).parse_module().verify()
    bad = text.replace("beta2 = 9.990000e-01 : f32", "beta2 = 1.000000e+00 : f32", 1)
    with pytest.raises(VerifyException, match=re.escape("beta2 must lie in [0, 1) (in float32), got 1.0")):
        Parser(make_context(), bad).parse_module().verify()


def test_train_pipeline_optimizer_option():
    assert "optimizer" not in train_pipeline()
    assert "autodiff{rounding=nearest num-classes=10 optimizer=adam" in train_pipeline(optimizer="adam")


def test_reading_the_input_type_needs_int8_io():
    from xdsl.dialects.builtin import ModuleOp

    with pytest.raises(ValueError, match="no int8-io pass"):
        run_pipeline_reading_input_type(ModuleOp([]), "fuse-qdq,convert-layout")
