"""tinymlir's C training kernels (`tinymlir/runtime/tk`, via ctypes) against their numpy
twins (`tinymlir.interpreter.tk_math`), bit for bit on many seeded random cases; the twins
against independent float64 / pure-Python references; and the sources against a
Cortex-M4 cross-compile (strict warnings)."""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tinymlir.codegen.build import FP_FLAGS, M4_FLAGS, WARN, build_host
from tinymlir.interpreter import tk_math as tk
from tinymlir.interpreter.tk_math import ConvGeometry

ROOT = Path(__file__).resolve().parents[1] / "tinymlir" / "runtime" / "tk"
INCLUDE = ROOT / "include"
SOURCES = sorted((ROOT / "src").glob("*.c"))

F32 = np.float32
FP = ctypes.POINTER(ctypes.c_float)
I8P = ctypes.POINTER(ctypes.c_int8)
U8P = ctypes.POINTER(ctypes.c_uint8)
I32P = ctypes.POINTER(ctypes.c_int32)
U32P = ctypes.POINTER(ctypes.c_uint32)
I32, F, U32 = ctypes.c_int32, ctypes.c_float, ctypes.c_uint32


class CGeom(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in ConvGeometry.FIELDS]


GP = ctypes.POINTER(CGeom)
SIGS = {
    "tk_output_mask_s8": (None, [I8P, I32, I32, I32, U8P]),
    "tk_mask_grad_f32": (None, [FP, U8P, I32, FP]),
    "tk_add_f32": (None, [FP, FP, I32, FP]),
    "tk_global_avgpool_grad_f32": (None, [FP, I32, I32, I32, I32, FP]),
    "tk_sgd_f32": (I32, [FP, FP, I32, F]),
    "tk_softmax_xent_f32": (F, [FP, I32, I32, FP]),
    "tk_conv_input_grad_f32": (None, [GP, FP, I8P, FP, FP]),
    "tk_depthwise_conv_input_grad_f32": (None, [GP, FP, I8P, FP, FP]),
    "tk_conv_weight_grad_sgd_s8": (I32, [GP, FP, I8P, I32, F, I8P, I32P, I32, FP, F, U32P, FP]),
    "tk_conv_weight_grad_sgd_scratch_bytes": (I32, [GP]),
    "tk_depthwise_conv_weight_grad_sgd_s8": (I32, [GP, FP, I8P, I32, F, I8P, I32P, I32, FP, F, U32P, FP]),
    "tk_depthwise_conv_weight_grad_sgd_scratch_bytes": (I32, [GP]),
    "tk_bias_grad_sgd_s32": (I32, [FP, I32, I32, I32P, I32P, I32, FP, F, U32P]),
}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = build_host(tmp_path_factory.mktemp("tk"), SOURCES, name="libtk.so", include=[INCLUDE], with_runtime=False)
    dll = ctypes.CDLL(str(so))
    for name, (res, args) in SIGS.items():
        fn = getattr(dll, name)
        fn.restype, fn.argtypes = res, args
    return dll


def ptr(a: np.ndarray, typ):
    assert a.flags.c_contiguous
    return a.ctypes.data_as(typ)


def cgeom(g: ConvGeometry) -> CGeom:
    return CGeom(*g.astuple())


def bits(a) -> np.ndarray:
    """float32 bits with every NaN mapped to one pattern (NaN payloads are not specified)."""
    a = np.asarray(a, F32).ravel()
    u = a.view(np.uint32).copy()
    u[np.isnan(a)] = 0x7FC00000
    return u


def assert_same_f32(c, ref, what=""):
    bc, br = bits(c), bits(ref)
    bad = np.flatnonzero(bc != br)
    assert bad.size == 0, (f"{what}: {bad.size} of {bc.size} differ, first at {bad[0]}: "
                           f"C {np.asarray(c).ravel()[bad[0]]!r} vs numpy {np.asarray(ref).ravel()[bad[0]]!r}")


# --------------------------------------------------------------------------- random cases


def random_geometry(rng: np.random.Generator, depthwise: bool = False, fc: bool = False) -> ConvGeometry:
    if fc:
        ci, co = int(rng.integers(1, 70)), int(rng.integers(1, 40))
        return ConvGeometry(int(rng.integers(1, 3)), 1, 1, ci, 1, 1, co, 1, 1)
    while True:
        k_h, k_w = (int(rng.choice([1, 3, 5, 7])) for _ in range(2))
        if rng.random() < 0.3:
            k_w = k_h
        s_h, s_w = (int(rng.choice([1, 1, 2])) for _ in range(2))
        d_h, d_w = (int(rng.choice([1, 1, 2])) for _ in range(2))
        in_h, in_w = (int(rng.integers(1, 12)) for _ in range(2))
        p_h, p_w = (int(rng.integers(0, (k - 1) * d // 2 + 2)) for k, d in ((k_h, d_h), (k_w, d_w)))
        e_h, e_w = (int(rng.integers(0, (k - 1) * d // 2 + 2)) for k, d in ((k_h, d_h), (k_w, d_w)))
        out_h = ConvGeometry.out_size(in_h, k_h, s_h, p_h, e_h, d_h)
        out_w = ConvGeometry.out_size(in_w, k_w, s_w, p_w, e_w, d_w)
        if out_h >= 1 and out_w >= 1:
            break
    n = int(rng.integers(1, 3))
    if depthwise:
        ci = co = int(rng.integers(1, 40))
    else:
        ci, co = int(rng.integers(1, 20)), int(rng.integers(1, 12))
    return ConvGeometry(n, in_h, in_w, ci, out_h, out_w, co, k_h, k_w, s_h, s_w, p_h, p_w, d_h, d_w)


def random_dy(rng, shape, zero_frac=0.5, specials=False) -> np.ndarray:
    dy = (rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 30.0])).astype(F32)
    dy[rng.random(shape) < zero_frac] = 0.0
    if rng.random() < 0.2:
        dy[rng.random(shape) < 0.2] *= -0.0  # signed zeros
    if specials and dy.size:
        flat = dy.reshape(-1)
        for v in rng.choice([np.nan, np.inf, -np.inf], size=int(rng.integers(1, 3))):
            flat[int(rng.integers(flat.size))] = v
    return dy


def random_int8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int16).astype(np.int8)


def random_selection(rng, count):
    if rng.random() < 0.35:
        return None
    sel = np.flatnonzero(rng.random(count) < rng.uniform(0.2, 0.9)).astype(np.int32)
    return sel


def c_selection(sel, count):
    if sel is None:
        return None, count
    sel = np.ascontiguousarray(sel, np.int32)
    return sel, sel.size


# --------------------------------------------------------------------------- elementwise


def test_output_mask(lib):
    rng = np.random.default_rng(1)
    for case in range(200):
        count = int(rng.integers(0, 40)) if case < 150 else int(rng.integers(40, 3000))
        y = random_int8(rng, count)
        lo, hi = (int(v) for v in np.sort(rng.integers(-130, 130, 2)))
        if case % 3 == 0:
            lo, hi = -128, 127  # ReLU-like with zero point -128
        nbytes = (count + 7) // 8
        m = np.full(nbytes + 1, 0xFF, np.uint8)
        lib.tk_output_mask_s8(ptr(y, I8P), count, lo, hi, ptr(m, U8P))
        ref = tk.output_mask(y, lo, hi)
        assert np.array_equal(m[:nbytes], tk.pack_mask(ref)), case
        assert m[nbytes] == 0xFF  # nothing written past the mask
        assert np.array_equal(tk.unpack_mask(m[:nbytes], count), ref)
        # independent definition
        assert np.array_equal(ref, np.array([lo < int(v) < hi for v in y], bool))
        if count % 8:
            assert m[nbytes - 1] >> (count % 8) == 0  # unused high bits are 0


def test_mask_grad_and_add(lib):
    rng = np.random.default_rng(2)
    for case in range(120):
        count = int(rng.integers(0, 300))
        g = random_dy(rng, count, zero_frac=0.2, specials=case % 4 == 0)
        mb = rng.random(count) < 0.5
        m = np.ascontiguousarray(tk.pack_mask(mb))
        mp = ptr(m, U8P) if m.size else None
        out = np.full(count, 7.0, F32)
        lib.tk_mask_grad_f32(ptr(g, FP), mp, count, ptr(out, FP))
        ref = tk.mask_grad(g, mb)
        assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))
        assert np.array_equal(ref.view(np.uint32), np.where(mb, g.view(np.uint32), 0))
        inplace = g.copy()
        lib.tk_mask_grad_f32(ptr(inplace, FP), mp, count, ptr(inplace, FP))
        assert np.array_equal(inplace.view(np.uint32), ref.view(np.uint32))

        b = random_dy(rng, count, zero_frac=0.2, specials=case % 4 == 1)
        out = np.empty(count, F32)
        lib.tk_add_f32(ptr(g, FP), ptr(b, FP), count, ptr(out, FP))
        assert_same_f32(out, tk.add(g, b), "add")
        a2 = g.copy()
        lib.tk_add_f32(ptr(a2, FP), ptr(b, FP), count, ptr(a2, FP))
        assert_same_f32(a2, tk.add(g, b), "add in place")


def test_global_avgpool_grad(lib):
    rng = np.random.default_rng(3)
    for _ in range(60):
        n, h, w, c = (int(v) for v in rng.integers(1, 9, 4))
        dy = random_dy(rng, (n, c), zero_frac=0.1)
        dx = np.empty((n, h, w, c), F32)
        lib.tk_global_avgpool_grad_f32(ptr(dy, FP), n, h, w, c, ptr(dx, FP))
        ref = tk.global_avgpool_grad(dy, h, w)
        assert_same_f32(dx, ref, "avgpool")
        assert np.allclose(ref, np.broadcast_to((dy.astype(np.float64) / (h * w))[:, None, None, :], ref.shape),
                           rtol=1e-6, atol=0)


def test_sgd_f32(lib):
    rng = np.random.default_rng(4)
    for case in range(50):
        count = int(rng.integers(0, 200))
        p = rng.standard_normal(count).astype(F32)
        gr = random_dy(rng, count, zero_frac=0.1, specials=case % 2 == 0)
        if count and case % 5 == 0:
            gr[0] = F32(3e38)  # lr * g overflows to inf: skipped
        lr = float(F32(rng.choice([0.01, 0.5, 10.0])))
        pc = p.copy()
        skipped = lib.tk_sgd_f32(ptr(pc, FP), ptr(gr, FP), count, lr)
        ref, ref_skipped = tk.sgd_f32(p, gr, lr)
        assert skipped == ref_skipped
        assert_same_f32(pc, ref, "sgd_f32")
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(F32(lr) * gr)
        assert np.array_equal(ref[bad], p[bad])


# --------------------------------------------------------------------------- loss


def test_softmax_xent(lib):
    rng = np.random.default_rng(5)
    for case in range(150):
        k = int(rng.integers(1, 40))
        z = (rng.standard_normal(k) * rng.choice([0.01, 1.0, 10.0, 100.0])).astype(F32)
        label = int(rng.integers(k))
        grad = np.empty(k, F32)
        loss = lib.tk_softmax_xent_f32(ptr(z, FP), k, label, ptr(grad, FP))
        ref_loss, ref_grad = tk.softmax_xent(z, label)
        assert np.float32(loss).view(np.uint32) == ref_loss.view(np.uint32), case
        assert_same_f32(grad, ref_grad, "softmax grad")
        assert lib.tk_softmax_xent_f32(ptr(z, FP), k, label, None) == loss  # grad may be NULL
        # float64 sanity
        z64 = z.astype(np.float64)
        p = np.exp(z64 - z64.max())
        p /= p.sum()
        onehot = np.eye(k)[label]
        assert np.allclose(ref_grad, p - onehot, rtol=1e-5, atol=1e-7)
        assert math.isclose(float(ref_loss), -math.log(p[label]) if p[label] > 0 else math.inf,
                            rel_tol=1e-5, abs_tol=1e-6) or not np.isfinite(ref_loss)


# --------------------------------------------------------------------------- input gradients


def conv_input_grad_f64(g: ConvGeometry, dy, w, w_scale, depthwise=False):
    """Direct float64 formula, output-position driven (independent of tk_math)."""
    dx = np.zeros((g.n, g.in_h, g.in_w, g.in_c))
    gs = dy.astype(np.float64) * w_scale.astype(np.float64)
    wf = w.astype(np.float64)
    for oh in range(g.out_h):
        for ow in range(g.out_w):
            for kh in range(g.k_h):
                for kw in range(g.k_w):
                    ih = oh * g.stride_h - g.pad_h + kh * g.dil_h
                    iw = ow * g.stride_w - g.pad_w + kw * g.dil_w
                    if 0 <= ih < g.in_h and 0 <= iw < g.in_w:
                        if depthwise:
                            dx[:, ih, iw, :] += gs[:, oh, ow, :] * wf[0, kh, kw, :]
                        else:
                            dx[:, ih, iw, :] += gs[:, oh, ow, :] @ wf[:, kh, kw, :]
    return dx


def run_input_grad(lib, g, dy, w, ws, depthwise):
    dx = np.full((g.n, g.in_h, g.in_w, g.in_c), np.nan, F32)  # every element must be written
    fn = lib.tk_depthwise_conv_input_grad_f32 if depthwise else lib.tk_conv_input_grad_f32
    cg = cgeom(g)
    fn(ctypes.byref(cg), ptr(dy, FP), ptr(w, I8P), ptr(ws, FP), ptr(dx, FP))
    return dx


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
def test_conv_input_grad(lib, depthwise):
    rng = np.random.default_rng(6 + depthwise)
    for case in range(300):
        g = random_geometry(rng, depthwise=depthwise, fc=(not depthwise and case % 6 == 0))
        specials = case % 10 == 9
        dy = random_dy(rng, (g.n, g.out_h, g.out_w, g.out_c), zero_frac=rng.uniform(0, 0.8), specials=specials)
        w = random_int8(rng, (1, g.k_h, g.k_w, g.in_c) if depthwise else (g.out_c, g.k_h, g.k_w, g.in_c))
        ws = (rng.uniform(0.5, 2.0, g.out_c) * 10.0 ** rng.uniform(-4, 0)).astype(F32)
        dx = run_input_grad(lib, g, dy, w, ws, depthwise)
        twin = tk.depthwise_conv_input_grad if depthwise else tk.conv_input_grad
        ref = twin(g, dy, w, ws)
        assert_same_f32(dx, ref, f"case {case} {g}")
        if not specials:
            f64 = conv_input_grad_f64(g, dy, w, ws, depthwise)
            assert np.allclose(ref, f64, rtol=1e-5, atol=1e-5 * float(np.abs(f64).max() + 1e-30)), g


def test_conv_input_grad_order_matters(lib):
    """A case where float32 summation order changes the result: the C and the twin agree on
    the documented order (kh, kw outer, co inner) and differ from a reordered sum."""
    g = ConvGeometry(1, 1, 1, 1, 1, 1, 3, 1, 1)
    dy = np.array([[[[1.0, 1e8, -1e8]]]], F32)
    w = np.ones((3, 1, 1, 1), np.int8)
    ws = np.ones(3, F32)
    dx = run_input_grad(lib, g, dy, w, ws, False)
    assert dx.ravel()[0] == 0.0  # (0 + 1) + 1e8 rounds to 1e8, then - 1e8 = 0
    assert_same_f32(dx, tk.conv_input_grad(g, dy, w, ws))


# --------------------------------------------------------------------------- weight / bias gradients + SGD


def pick_lr(rng, gw, f):
    mag = np.abs(gw.astype(np.float64) * f)
    mag = mag[np.isfinite(mag) & (mag > 0)]
    scale = float(np.median(mag)) if mag.size else 1.0
    return float(F32(rng.choice([0.3, 2.0, 40.0, 1e4]) / scale))


def run_weight_grad(lib, g, dy, x, x_off, x_scale, w, sel, factor, lr, state, depthwise):
    csel, nsel = c_selection(sel, g.out_c)
    wc = w.copy()
    rngc = None if state is None else np.array([state], np.uint32)
    cg = cgeom(g)
    fn_b = lib.tk_depthwise_conv_weight_grad_sgd_scratch_bytes if depthwise else lib.tk_conv_weight_grad_sgd_scratch_bytes
    fn = lib.tk_depthwise_conv_weight_grad_sgd_s8 if depthwise else lib.tk_conv_weight_grad_sgd_s8
    nbytes = fn_b(ctypes.byref(cg))
    expect = g.k_h * g.k_w * (1 if depthwise else g.in_c) * 4
    assert nbytes == expect
    scratch = np.full(nbytes // 4 + 4, 12345.0, F32)
    skipped = fn(ctypes.byref(cg), ptr(dy, FP), ptr(x, I8P), x_off, x_scale, ptr(wc, I8P),
                 None if csel is None else ptr(csel, I32P), nsel, ptr(factor, FP), lr,
                 None if rngc is None else ptr(rngc, U32P), ptr(scratch, FP))
    assert np.all(scratch[nbytes // 4:] == 12345.0)  # no scratch overrun
    run_weight_grad.last_scratch = scratch[:nbytes // 4]
    return wc, (None if rngc is None else int(rngc[0])), skipped


def check_scratch_gradient(scratch, gw_twin, g, n_sel, depthwise):
    """White-box: on return the scratch still holds the float32 gradient of the last
    selected channel, which the integer update alone would hide (a 1-ulp gradient
    difference rarely changes the rounded step)."""
    ref = expected_scratch(gw_twin, g, n_sel, depthwise)
    assert_same_f32(scratch[:ref.size], ref, f"weight gradient in scratch (depthwise={depthwise})")


def expected_scratch(gw_twin, g, n_sel, depthwise) -> np.ndarray:
    if n_sel == 0:
        return np.zeros(0, F32)
    if depthwise:
        return np.ascontiguousarray(gw_twin[..., -1]).ravel()
    return gw_twin[-1].ravel()


def weight_grad_f64(g, dy, x, x_off, x_scale, depthwise):
    xr = (x.astype(np.float64) + x_off) * float(F32(x_scale))
    d64 = dy.astype(np.float64)
    shape = (g.k_h, g.k_w, g.out_c) if depthwise else (g.out_c, g.k_h, g.k_w, g.in_c)
    gw = np.zeros(shape)
    for oh in range(g.out_h):
        for ow in range(g.out_w):
            for kh in range(g.k_h):
                for kw in range(g.k_w):
                    ih = oh * g.stride_h - g.pad_h + kh * g.dil_h
                    iw = ow * g.stride_w - g.pad_w + kw * g.dil_w
                    if 0 <= ih < g.in_h and 0 <= iw < g.in_w:
                        if depthwise:
                            gw[kh, kw] += (d64[:, oh, ow, :] * xr[:, ih, iw, :]).sum(0)
                        else:
                            gw[:, kh, kw, :] += d64[:, oh, ow, :].T @ xr[:, ih, iw, :]
    return gw


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
def test_weight_grad_sgd(lib, depthwise):
    rng = np.random.default_rng(10 + depthwise)
    totals = dict(changed=0, saturated=0, skipped=0, cases=0)
    for case in range(300):
        g = random_geometry(rng, depthwise=depthwise, fc=(not depthwise and case % 6 == 0))
        if depthwise and case % 5 == 0:
            g = ConvGeometry(1, 5, 5, 37, 5, 5, 37, 3, 3, 1, 1, 1, 1, 1, 1)  # several channel blocks
        specials = case % 7 == 6
        dy = random_dy(rng, (g.n, g.out_h, g.out_w, g.out_c), zero_frac=rng.uniform(0, 0.9), specials=specials)
        x = random_int8(rng, (g.n, g.in_h, g.in_w, g.in_c))
        x_off = int(rng.integers(-128, 128))
        x_scale = float(F32(rng.uniform(0.001, 0.1)))
        w = random_int8(rng, (1, g.k_h, g.k_w, g.out_c) if depthwise else (g.out_c, g.k_h, g.k_w, g.in_c))
        w[w == -128] = -127
        factor = (10.0 ** rng.uniform(-1, 2, g.out_c)).astype(F32)
        if case % 11 == 5:
            factor[int(rng.integers(g.out_c))] = np.inf  # gw * f not finite (or 0 * inf): skipped
        sel = random_selection(rng, g.out_c)
        state = None if case % 2 == 0 else int(rng.integers(0, 2**32)) if case % 3 else 0xFFFFFFF0
        gw_twin = (tk.depthwise_conv_weight_grad if depthwise else tk.conv_weight_grad)(g, dy, x, x_off, x_scale, sel)
        lr = pick_lr(rng, gw_twin, 1.0)
        wc, rc, sc = run_weight_grad(lib, g, dy, x, x_off, x_scale, w, sel, factor, lr, state, depthwise)
        twin = tk.depthwise_conv_weight_grad_sgd if depthwise else tk.conv_weight_grad_sgd
        wr, rr, sr = twin(g, dy, x, x_off, x_scale, w, sel, factor, lr, state)
        n_sel = g.out_c if sel is None else len(sel)
        check_scratch_gradient(run_weight_grad.last_scratch, gw_twin, g, n_sel, depthwise)
        assert np.array_equal(wc, wr), f"case {case}: {np.count_nonzero(wc != wr)} weights differ, {g}"
        assert (rc, sc) == (rr, sr), case
        if state is not None:
            assert rc == (state + n_sel * g.k_h * g.k_w * (1 if depthwise else g.in_c)) % 2**32
        # unselected channels unchanged
        unsel = np.setdiff1d(np.arange(g.out_c), np.arange(g.out_c) if sel is None else sel)
        ax = -1 if depthwise else 0
        assert np.array_equal(np.take(wc, unsel, axis=ax), np.take(w, unsel, axis=ax))
        changed = np.take(wc != w, np.arange(g.out_c) if sel is None else sel, axis=ax)
        totals["changed"] += int(changed.sum())
        totals["saturated"] += int(np.sum((np.abs(wc.astype(int)) == 127) & (wc != w)))
        totals["skipped"] += sc
        totals["cases"] += 1
        # float64 sanity of the gradient the twin (and the C) uses
        if not specials:
            f64 = weight_grad_f64(g, dy, x, x_off, x_scale, depthwise)
            f64 = f64[..., sel] if (depthwise and sel is not None) else (f64 if depthwise or sel is None else f64[sel])
            if f64.size:
                assert np.allclose(gw_twin, f64, rtol=1e-4, atol=1e-4 * float(np.abs(f64).max()))
    print(f"\n[tk weight grad, depthwise={depthwise}] {totals}")
    assert totals["changed"] > 1000 and totals["saturated"] > 50 and totals["skipped"] > 0, totals


def test_weight_grad_sgd_rounding_semantics(lib):
    """Nearest rounding against an independent float64 formula; stochastic rounding is
    unbiased on average and never more than one step from the exact update."""
    rng = np.random.default_rng(20)
    g = ConvGeometry(1, 6, 6, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    dy = random_dy(rng, (1, 6, 6, 8), zero_frac=0.3)
    x = random_int8(rng, (1, 6, 6, 8))
    w = np.zeros((8, 3, 3, 8), np.int8)
    factor = np.ones(8, F32)
    gw = tk.conv_weight_grad(g, dy, x, 3, 0.05)
    lr = float(F32(3.0 / np.median(np.abs(gw))))
    t = (np.float64(F32(lr)) * gw.astype(np.float64))
    wn, _, _ = run_weight_grad(lib, g, dy, x, 3, 0.05, w, None, factor, lr, None, False)
    exact = np.clip(-t, -127, 127)
    near = np.abs(np.abs(t - np.floor(t)) - 0.5) > 1e-3
    assert np.array_equal(wn[near], np.clip(-np.rint(t[near]), -127, 127).astype(np.int8))
    draws = []
    state = 7
    for _ in range(40):
        ws, state, _ = run_weight_grad(lib, g, dy, x, 3, 0.05, w, None, factor, lr, state, False)
        assert np.all(np.abs(ws - exact) < 1.0 + 1e-6)
        draws.append(ws.astype(np.float64))
    inside = np.abs(exact) < 126
    assert abs(float(np.mean((np.mean(draws, 0) - exact)[inside]))) < 0.05


def test_bias_grad_sgd(lib):
    rng = np.random.default_rng(30)
    changed = saturated = skipped_total = 0
    for case in range(120):
        rows, c = int(rng.integers(1, 200)), int(rng.integers(1, 80))
        dy = random_dy(rng, (rows, c), zero_frac=rng.uniform(0, 0.9), specials=case % 9 == 8)
        b = rng.integers(-2**31 + 1, 2**31, size=c, dtype=np.int64).astype(np.int32)
        if case % 4 == 0:
            b = rng.integers(-1000, 1000, size=c).astype(np.int32)
        factor = (10.0 ** rng.uniform(-1, 3, c)).astype(F32)
        sel = random_selection(rng, c)
        state = None if case % 2 == 0 else int(rng.integers(0, 2**32))
        lr = pick_lr(rng, tk.bias_grad(dy, sel), factor if sel is None else factor[sel])
        if case % 8 == 3:
            lr = 1e30  # t beyond +-2^31: clamped, then saturated
        elif case % 8 in (1, 5):
            lr = float(F32(lr * 2.0 ** 22))  # |t| ~ 2^23..2^30: the step keeps every bit of the gradient
        csel, nsel = c_selection(sel, c)
        bc = b.copy()
        rngc = None if state is None else np.array([state], np.uint32)
        sc = lib.tk_bias_grad_sgd_s32(ptr(dy, FP), rows, c, ptr(bc, I32P), None if csel is None else ptr(csel, I32P),
                                      nsel, ptr(factor, FP), lr, None if rngc is None else ptr(rngc, U32P))
        br, rr, sr = tk.bias_grad_sgd(dy, b, sel, factor, lr, state)
        assert np.array_equal(bc, br), case
        assert sc == sr and (None if rngc is None else int(rngc[0])) == rr
        changed += int(np.sum(bc != b))
        saturated += int(np.sum((np.abs(bc.astype(np.int64)) == 2**31 - 1) & (bc != b)))
        skipped_total += sc
        gw = tk.bias_grad(dy, sel)
        if case % 9 != 8:
            ref = dy.astype(np.float64).sum(0)[sel if sel is not None else slice(None)]
            assert np.allclose(gw, ref, rtol=1e-4, atol=1e-4 * float(np.abs(dy).max()))
    assert changed > 1000 and saturated > 5 and skipped_total > 0


def test_sgd_rule_edges(lib):
    """Crafted cases of the update rule through the bias kernel (rows = 1, factor = lr = 1),
    checked against values derived by hand."""
    dy = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, np.nan, np.inf, 3e9, -3e9, 7.0, -7.0]], F32)
    c = dy.shape[1]
    b = np.array([0, 0, 0, 0, 0, 0, 5, 5, 0, 0, 2**31 - 5, -2**31 + 5], np.int32)
    factor = np.ones(c, F32)
    bc = b.copy()
    sk = lib.tk_bias_grad_sgd_s32(ptr(dy, FP), 1, c, ptr(bc, I32P), None, c, ptr(factor, FP), 1.0, None)
    expect = [0, -2, -2, 0, 2, 0, 5, 5, -(2**31 - 1), 2**31 - 1, 2**31 - 12, -2**31 + 12]
    assert bc.tolist() == expect and sk == 2
    br, rr, sr = tk.bias_grad_sgd(dy, b, None, factor, 1.0, None)
    assert br.tolist() == expect and sr == 2 and rr is None


def test_fmix32_reference():
    """The vectorized uint32 fmix32 against a pure-Python one."""
    def ref(h):
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & 0xFFFFFFFF
        return h ^ (h >> 16)
    vals = [0, 1, 2, 0xFFFFFFFF, 0x80000000, 123456789] + list(np.random.default_rng(0).integers(0, 2**32, 50))
    assert tk.fmix32(np.array(vals, np.uint32)).tolist() == [ref(int(v)) for v in vals]


def test_twins_do_not_modify_inputs():
    rng = np.random.default_rng(40)
    g = ConvGeometry(1, 5, 5, 6, 3, 3, 4, 3, 3, 2, 2, 1, 1, 1, 1)
    dy = random_dy(rng, (1, 3, 3, 4))
    x = random_int8(rng, (1, 5, 5, 6))
    w = random_int8(rng, (4, 3, 3, 6))
    factor = np.ones(4, F32)
    copies = [a.copy() for a in (dy, x, w, factor)]
    tk.conv_input_grad(g, dy, w, factor)
    tk.conv_weight_grad_sgd(g, dy, x, 1, 0.1, w, [1, 3], factor, 10.0, 5)
    for a, b in zip((dy, x, w, factor), copies):
        assert np.array_equal(a, b)


def test_twin_speed():
    """The interpreter's twins stay fast on MCUNet-sized layers."""
    rng = np.random.default_rng(50)
    g = ConvGeometry(1, 4, 4, 96, 4, 4, 576, 1, 1)
    dy = random_dy(rng, (1, 4, 4, 576))
    w = random_int8(rng, (576, 1, 1, 96))
    ws = np.full(576, 0.01, F32)
    t0 = time.perf_counter()
    tk.conv_input_grad(g, dy, w, ws)
    t_in = time.perf_counter() - t0
    g2 = ConvGeometry(1, 16, 16, 16, 16, 16, 48, 1, 1)
    dy2 = random_dy(rng, (1, 16, 16, 48))
    x2 = random_int8(rng, (1, 16, 16, 16))
    w2 = random_int8(rng, (48, 1, 1, 16))
    t0 = time.perf_counter()
    tk.conv_weight_grad_sgd(g2, dy2, x2, 0, 0.02, w2, None, np.ones(48, F32), 1.0, 1)
    t_w = time.perf_counter() - t0
    g3 = ConvGeometry(1, 16, 16, 48, 16, 16, 48, 3, 3, 1, 1, 1, 1, 1, 1)
    dy3 = random_dy(rng, (1, 16, 16, 48))
    x3 = random_int8(rng, (1, 16, 16, 48))
    w3 = random_int8(rng, (1, 3, 3, 48))
    t0 = time.perf_counter()
    tk.depthwise_conv_weight_grad_sgd(g3, dy3, x3, 0, 0.02, w3, None, np.ones(48, F32), 1.0, None)
    t_dw = time.perf_counter() - t0
    print(f"\n[tk twins] 1x1 input grad 576->96 on 4x4: {t_in * 1e3:.1f} ms, 1x1 weight grad 16x16: "
          f"{t_w * 1e3:.1f} ms, 3x3 depthwise weight grad 16x16x48: {t_dw * 1e3:.1f} ms")
    # generous bounds (tests run in parallel); typical timings are a few ms
    assert t_in < 0.3 and t_w < 0.3 and t_dw < 0.3


# --------------------------------------------------------------------------- Cortex-M4 / strict compile


from toolchain import require_cortex_m_toolchain as require_m4_toolchain  # noqa: E402


def test_cortex_m4_compile(tmp_path):
    require_m4_toolchain("arm-none-eabi-gcc")
    cc = shutil.which("arm-none-eabi-gcc")
    for src in SOURCES:
        cmd = [cc, *M4_FLAGS, "--specs=picolibc.specs", "-O2", *WARN, *FP_FLAGS, f"-I{INCLUDE}",
               "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_strict_host_compile(tmp_path, cc):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    for src in SOURCES:
        r = subprocess.run([cc, "-O2", *WARN, "-pedantic", *FP_FLAGS, f"-I{INCLUDE}", "-c", str(src),
                            "-o", str(tmp_path / (src.stem + ".o"))], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- Cortex-M4 in QEMU


class M4Program:
    """A generated C program that runs tk kernels on embedded inputs and prints every
    output value, plus the values the numpy twins predict for it."""

    def __init__(self):
        self.decls: list[str] = []
        self.body: list[str] = []
        self.expected: list[tuple[str, int]] = []  # (case label, value)
        self.count = 0

    def array(self, a: np.ndarray, const: bool = True) -> str:
        a = np.ascontiguousarray(a).ravel()
        name = f"a{self.count}"
        self.count += 1
        if a.dtype == F32:
            def lit(v):
                v = float(v)
                if math.isnan(v):
                    return "NAN"
                if math.isinf(v):
                    return "INFINITY" if v > 0 else "-INFINITY"
                return v.hex() + "f"
            ctype, vals = "float", [lit(v) for v in a]
        else:
            ctype = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t", np.dtype(np.int32): "int32_t"}[a.dtype]
            vals = [f"({int(v)})" if int(v) > -2**31 else "(-2147483647 - 1)" for v in a]
        vals = vals or ["0"]
        self.decls.append(f"static {'const ' if const else ''}{ctype} {name}[{len(vals)}] = {{{', '.join(vals)}}};")
        return name

    def output(self, label: str, cexpr: str, expected: np.ndarray, n: int | None = None) -> None:
        expected = np.asarray(expected)
        n = expected.size if n is None else n
        kind = "f" if expected.dtype == F32 else "i"
        self.body.append(f'    puts("CASE {label}"); dump_{kind}({cexpr}, {n});')
        vals = bits(expected) if kind == "f" else expected.astype(np.int64).ravel()
        self.expected += [(label, int(v)) for v in vals]

    def scalar(self, label: str, cexpr: str, expected, kind: str) -> None:
        fmt = 'printf("f %08lx\\n", (unsigned long)f32_bits(' + cexpr + '));' if kind == "f" else \
            'printf("i %ld\\n", (long)(' + cexpr + '));'
        self.body.append(f'    puts("CASE {label}"); {fmt}')
        self.expected.append((label, int(bits(np.float32(expected))[0]) if kind == "f" else int(expected)))

    def source(self) -> str:
        return "\n".join([
            "#include <math.h>", "#include <stdint.h>", "#include <stdio.h>", "#include <string.h>",
            '#include "tk.h"',
            "static uint32_t f32_bits(float v) { uint32_t b; memcpy(&b, &v, sizeof b); return b; }",
            "static void dump_f(const float *p, int32_t n) { int32_t i; for (i = 0; i < n; i++) "
            'printf("f %08lx\\n", (unsigned long)f32_bits(p[i])); }',
            "static void dump_i_any(long v) { printf(\"i %ld\\n\", v); }",
            "#define dump_i(p, n) do { int32_t i_; for (i_ = 0; i_ < (n); i_++) dump_i_any((long)(p)[i_]); } while (0)",
            *self.decls,
            "int main(void)", "{", *self.body, '    puts("END");', "    return 0;", "}", ""])

    @staticmethod
    def parse(text: str) -> list[tuple[str, int]]:
        out, label = [], None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("CASE "):
                label = line[5:]
            elif line.startswith("f "):
                v = np.array([int(line[2:], 16)], np.uint32).view(F32)
                out.append((label, int(bits(v)[0])))
            elif line.startswith("i "):
                out.append((label, int(line[2:])))
        assert "END" in text, text[-2000:]
        return out


def geom_c(g: ConvGeometry) -> str:
    return "{" + ", ".join(str(v) for v in g.astuple()) + "}"


def build_m4_program(rng: np.random.Generator) -> M4Program:
    P = M4Program()
    # elementwise
    y = random_int8(rng, 37)
    m = tk.pack_mask(tk.output_mask(y, -128, 100))
    out = P.array(np.zeros(m.size, np.uint8), const=False)
    P.body.append(f"    tk_output_mask_s8({P.array(y)}, 37, -128, 100, {out});")
    P.output("output_mask", out, m)
    g = random_dy(rng, 29, zero_frac=0.2, specials=True)
    g[3] = F32(1e-40)  # subnormal: the M4 must not flush to zero
    b = random_dy(rng, 29, zero_frac=0.2)
    mb = rng.random(29) < 0.5
    out = P.array(np.zeros(29, F32), const=False)
    P.body.append(f"    tk_mask_grad_f32({P.array(g)}, {P.array(tk.pack_mask(mb))}, 29, {out});")
    P.output("mask_grad", out, tk.mask_grad(g, mb))
    out = P.array(np.zeros(29, F32), const=False)
    P.body.append(f"    tk_add_f32({P.array(g)}, {P.array(b)}, 29, {out});")
    P.output("add", out, tk.add(g, b))
    dy = random_dy(rng, (2, 5), zero_frac=0.1)
    out = P.array(np.zeros(2 * 3 * 7 * 5, F32), const=False)
    P.body.append(f"    tk_global_avgpool_grad_f32({P.array(dy)}, 2, 3, 7, 5, {out});")
    P.output("avgpool", out, tk.global_avgpool_grad(dy, 3, 7))
    p = rng.standard_normal(23).astype(F32)
    gr = random_dy(rng, 23, specials=True)
    pn = P.array(p, const=False)
    ref, sk = tk.sgd_f32(p, gr, 0.37)
    P.body.append(f"    {{ int32_t s = tk_sgd_f32({pn}, {P.array(gr)}, 23, 0.37f); printf(\"i %ld\\n\", (long)s); }}")
    P.expected.append(("sgd_f32 skipped", sk))
    P.output("sgd_f32", pn, ref)
    # softmax (double exp/log of picolibc vs the host libm)
    for k, scale in ((10, 1.0), (17, 30.0), (3, 0.01)):
        z = (rng.standard_normal(k) * scale).astype(F32)
        label = int(rng.integers(k))
        loss, grad = tk.softmax_xent(z, label)
        gn = P.array(np.zeros(k, F32), const=False)
        P.scalar(f"softmax loss k={k}", f"tk_softmax_xent_f32({P.array(z)}, {k}, {label}, {gn})", loss, "f")
        P.output(f"softmax grad k={k}", gn, grad)
    # input gradients
    geoms = [ConvGeometry(1, 9, 7, 6, 5, 4, 5, 3, 3, 2, 2, 1, 1, 1, 1),
             ConvGeometry(2, 1, 1, 40, 1, 1, 24, 1, 1),
             ConvGeometry(1, 8, 8, 3, 4, 4, 4, 5, 3, 1, 2, 2, 1, 2, 1)]
    for i, ge in enumerate(geoms):
        dy = random_dy(rng, (ge.n, ge.out_h, ge.out_w, ge.out_c), zero_frac=0.4)
        w = random_int8(rng, (ge.out_c, ge.k_h, ge.k_w, ge.in_c))
        ws = rng.uniform(1e-3, 1e-1, ge.out_c).astype(F32)
        n_out = ge.n * ge.in_h * ge.in_w * ge.in_c
        out = P.array(np.zeros(n_out, F32), const=False)
        P.body.append(f"    {{ static const tk_conv_geometry g = {geom_c(ge)}; "
                      f"tk_conv_input_grad_f32(&g, {P.array(dy)}, {P.array(w)}, {P.array(ws)}, {out}); }}")
        P.output(f"conv_input_grad {i}", out, tk.conv_input_grad(ge, dy, w, ws))
    gd = ConvGeometry(1, 7, 7, 37, 4, 4, 37, 3, 3, 2, 2, 1, 1, 1, 1)
    dy = random_dy(rng, (1, 4, 4, 37), zero_frac=0.4)
    w = random_int8(rng, (1, 3, 3, 37))
    ws = rng.uniform(1e-3, 1e-1, 37).astype(F32)
    out = P.array(np.zeros(7 * 7 * 37, F32), const=False)
    P.body.append(f"    {{ static const tk_conv_geometry g = {geom_c(gd)}; "
                  f"tk_depthwise_conv_input_grad_f32(&g, {P.array(dy)}, {P.array(w)}, {P.array(ws)}, {out}); }}")
    P.output("depthwise_input_grad", out, tk.depthwise_conv_input_grad(gd, dy, w, ws))
    # weight gradients + SGD, both roundings
    scratch = P.array(np.zeros(7 * 7 * 64, F32), const=False)
    for i, (ge, dw) in enumerate([(geoms[0], False), (geoms[1], False), (geoms[2], False), (gd, True),
                                  (ConvGeometry(1, 6, 6, 20, 6, 6, 20, 5, 5, 1, 1, 2, 2, 1, 1), True)]):
        dy = random_dy(rng, (ge.n, ge.out_h, ge.out_w, ge.out_c), zero_frac=0.4, specials=i == 1)
        x = random_int8(rng, (ge.n, ge.in_h, ge.in_w, ge.in_c))
        w = random_int8(rng, (1, ge.k_h, ge.k_w, ge.out_c) if dw else (ge.out_c, ge.k_h, ge.k_w, ge.in_c))
        factor = (10.0 ** rng.uniform(-1, 2, ge.out_c)).astype(F32)
        sel = None if i % 2 else np.flatnonzero(rng.random(ge.out_c) < 0.6).astype(np.int32)
        gwf = (tk.depthwise_conv_weight_grad if dw else tk.conv_weight_grad)(ge, dy, x, -5, 0.03, sel)
        lr = pick_lr(rng, gwf, 1.0)
        for state in (None, int(rng.integers(0, 2**32))):
            twin = tk.depthwise_conv_weight_grad_sgd if dw else tk.conv_weight_grad_sgd
            wr, rr, sr = twin(ge, dy, x, -5, 0.03, w, sel, factor, lr, state)
            wn = P.array(w, const=False)
            rn = P.array(np.array([0 if state is None else state - 2**32 * (state >= 2**31)], np.int32), const=False)
            seln = "NULL" if sel is None else P.array(sel)
            fn = "tk_depthwise_conv_weight_grad_sgd_s8" if dw else "tk_conv_weight_grad_sgd_s8"
            rngarg = "NULL" if state is None else f"(uint32_t *){rn}"
            P.body.append(f"    {{ static const tk_conv_geometry g = {geom_c(ge)}; int32_t s = {fn}(&g, "
                          f"{P.array(dy)}, {P.array(x)}, -5, 0.03f, {wn}, {seln}, "
                          f"{0 if sel is None else sel.size}, {P.array(factor)}, {float(lr).hex()}f, {rngarg}, "
                          f"{scratch}); printf(\"i %ld\\n\", (long)s); printf(\"i %lu\\n\", "
                          f"(unsigned long)(uint32_t){rn}[0]); }}")
            P.expected += [(f"wgrad {i} skipped", sr), (f"wgrad {i} rng", 0 if rr is None else rr)]
            P.output(f"wgrad {i} state={state}", wn, wr)
            n_sel = ge.out_c if sel is None else sel.size
            P.output(f"wgrad {i} gradient in scratch", scratch, expected_scratch(gwf, ge, n_sel, dw))
    # bias
    dy = random_dy(rng, (30, 19), zero_frac=0.5, specials=True)
    b = rng.integers(-2**31 + 1, 2**31, size=19, dtype=np.int64).astype(np.int32)
    b[:5] = rng.integers(-100, 100, 5)
    factor = (10.0 ** rng.uniform(0, 3, 19)).astype(F32)
    lr = pick_lr(rng, tk.bias_grad(dy), factor)
    for state in (None, 12345):
        br, rr, sr = tk.bias_grad_sgd(dy, b, [0, 2, 3, 7, 8, 18], factor, lr, state)
        bn = P.array(b, const=False)
        rn = P.array(np.array([0 if state is None else state], np.int32), const=False)
        rngarg = "NULL" if state is None else f"(uint32_t *){rn}"
        P.body.append(f"    {{ int32_t s = tk_bias_grad_sgd_s32({P.array(dy)}, 30, 19, {bn}, "
                      f"{P.array(np.array([0, 2, 3, 7, 8, 18], np.int32))}, 6, {P.array(factor)}, "
                      f"{float(lr).hex()}f, {rngarg}); printf(\"i %ld\\n\", (long)s); "
                      f"printf(\"i %lu\\n\", (unsigned long)(uint32_t){rn}[0]); }}")
        P.expected += [("bias skipped", sr), ("bias rng", 0 if rr is None else rr)]
        P.output(f"bias state={state}", bn, br)
    return P


def test_cortex_m4_qemu_bit_exact(tmp_path):
    """The kernels cross-compiled for a Cortex-M4F (picolibc's libm) and run in QEMU print
    exactly what the numpy twins predict (NaN payloads aside)."""
    from tinymlir.codegen import build as B
    require_m4_toolchain("arm-none-eabi-gcc", "qemu-system-arm")
    P = build_m4_program(np.random.default_rng(60))
    main = tmp_path / "tk_main.c"
    main.write_text(P.source())
    elf = B.build_cortex_m4(tmp_path, [main, *SOURCES], name="tk.elf", include=[INCLUDE], with_runtime=False)
    code, text = B.run_qemu(elf, timeout=60)
    assert code == 0, text[-2000:]
    got = M4Program.parse(text)
    assert len(got) == len(P.expected), (len(got), len(P.expected))
    bad = [(e, gv) for e, gv in zip(P.expected, got) if e[1] != gv[1]]
    assert not bad, f"{len(bad)} values differ, first: expected {bad[0][0]}, got {bad[0][1]}"
