"""tinymlir's portable CMSIS-NN kernels (C, via ctypes) against the numpy model
``tinymlir.interpreter.cmsisnn_math``, bit for bit; the model against float
references; and the C sources against strict warnings and sanitizers."""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tinymlir.interpreter import cmsisnn_math as cm
from tinymlir.interpreter.kernels import conv2d

ROOT = Path(__file__).resolve().parents[1] / "tinymlir" / "runtime" / "cmsisnn"
INCLUDE = ROOT / "include"
SOURCES = sorted((ROOT / "src").glob("*.c"))
STRICT = ["-Wall", "-Wextra", "-Werror", "-std=c99", "-pedantic"]

I8P = ctypes.POINTER(ctypes.c_int8)
I32P = ctypes.POINTER(ctypes.c_int32)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# Exported wrappers around the static inline helpers of arm_nnsupportfunctions.h
# (test-only; compiled into the test library).
SHIM_C = r"""
#include "arm_nnsupportfunctions.h"
void tm_requantize(const int32_t *v, const int32_t *m, const int32_t *s, int32_t *o, int32_t n)
{ int32_t i; for (i = 0; i < n; i++) o[i] = arm_nn_requantize(v[i], m[i], s[i]); }
void tm_dhm(const int32_t *a, const int32_t *b, int32_t *o, int32_t n)
{ int32_t i; for (i = 0; i < n; i++) o[i] = arm_nn_doubling_high_mult(a[i], b[i]); }
void tm_dhm_no_sat(const int32_t *a, const int32_t *b, int32_t *o, int32_t n)
{ int32_t i; for (i = 0; i < n; i++) o[i] = arm_nn_doubling_high_mult_no_sat(a[i], b[i]); }
void tm_div_pot(const int32_t *a, const int32_t *e, int32_t *o, int32_t n)
{ int32_t i; for (i = 0; i < n; i++) o[i] = arm_nn_divide_by_power_of_two(a[i], e[i]); }
"""


# --------------------------------------------------------------------------- ctypes


class Tile(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int32), ("h", ctypes.c_int32)]


class Context(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("size", ctypes.c_int32)]


class Dims(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int32), ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("c", ctypes.c_int32)]


class PerChannel(ctypes.Structure):
    _fields_ = [("multiplier", I32P), ("shift", I32P)]


class PerTensor(ctypes.Structure):
    _fields_ = [("multiplier", ctypes.c_int32), ("shift", ctypes.c_int32)]


class Activation(ctypes.Structure):
    _fields_ = [("min", ctypes.c_int32), ("max", ctypes.c_int32)]


class ConvParams(ctypes.Structure):
    _fields_ = [
        ("input_offset", ctypes.c_int32),
        ("output_offset", ctypes.c_int32),
        ("stride", Tile),
        ("padding", Tile),
        ("dilation", Tile),
        ("activation", Activation),
    ]


class DwConvParams(ctypes.Structure):
    _fields_ = [
        ("input_offset", ctypes.c_int32),
        ("output_offset", ctypes.c_int32),
        ("ch_mult", ctypes.c_int32),
        ("stride", Tile),
        ("padding", Tile),
        ("dilation", Tile),
        ("activation", Activation),
    ]


class PoolParams(ctypes.Structure):
    _fields_ = [("stride", Tile), ("padding", Tile), ("activation", Activation)]


class FcParams(ctypes.Structure):
    _fields_ = [
        ("input_offset", ctypes.c_int32),
        ("filter_offset", ctypes.c_int32),
        ("output_offset", ctypes.c_int32),
        ("activation", Activation),
    ]


def _tile(hw) -> Tile:
    return Tile(w=int(hw[1]), h=int(hw[0]))


def _dims(n, h, w, c) -> Dims:
    return Dims(int(n), int(h), int(w), int(c))


P = ctypes.POINTER
_CONV_ARGS = [P(Context), P(ConvParams), P(PerChannel), P(Dims), I8P, P(Dims), I8P, P(Dims), I32P, P(Dims), I8P]
_DW_ARGS = [P(Context), P(DwConvParams), P(PerChannel), P(Dims), I8P, P(Dims), I8P, P(Dims), I32P, P(Dims), I8P]
_POOL_ARGS = [P(Context), P(PoolParams), P(Dims), I8P, P(Dims), P(Dims), I8P]
_SIGNATURES = {
    "arm_convolve_wrapper_s8": (ctypes.c_int, _CONV_ARGS),
    "arm_convolve_1x1_s8_fast": (ctypes.c_int, _CONV_ARGS),
    "arm_convolve_1x1_s8": (ctypes.c_int, _CONV_ARGS),
    "arm_convolve_s8": (ctypes.c_int, _CONV_ARGS[:9] + [P(Dims)] + _CONV_ARGS[9:]),
    "arm_convolve_wrapper_s8_get_buffer_size": (ctypes.c_int32, [P(ConvParams), P(Dims), P(Dims), P(Dims)]),
    "arm_convolve_wrapper_s8_get_buffer_size_dsp": (ctypes.c_int32, [P(ConvParams), P(Dims), P(Dims), P(Dims)]),
    "arm_convolve_s8_get_buffer_size": (ctypes.c_int32, [P(Dims), P(Dims)]),
    "arm_convolve_1x1_s8_fast_get_buffer_size": (ctypes.c_int32, [P(Dims)]),
    "arm_depthwise_conv_wrapper_s8": (ctypes.c_int, _DW_ARGS),
    "arm_depthwise_conv_s8": (ctypes.c_int, _DW_ARGS),
    "arm_depthwise_conv_wrapper_s8_get_buffer_size": (ctypes.c_int32, [P(DwConvParams), P(Dims), P(Dims), P(Dims)]),
    "arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp": (
        ctypes.c_int32,
        [P(DwConvParams), P(Dims), P(Dims), P(Dims)],
    ),
    "arm_fully_connected_s8": (
        ctypes.c_int,
        [P(Context), P(FcParams), P(PerTensor), P(Dims), I8P, P(Dims), I8P, P(Dims), I32P, P(Dims), I8P],
    ),
    "arm_fully_connected_per_channel_s8": (
        ctypes.c_int,
        [P(Context), P(FcParams), P(PerChannel), P(Dims), I8P, P(Dims), I8P, P(Dims), I32P, P(Dims), I8P],
    ),
    "arm_fully_connected_s8_get_buffer_size": (ctypes.c_int32, [P(Dims)]),
    "arm_fully_connected_s8_get_buffer_size_dsp": (ctypes.c_int32, [P(Dims)]),
    "arm_elementwise_add_s8": (ctypes.c_int, [I8P, I8P] + [ctypes.c_int32] * 7 + [I8P] + [ctypes.c_int32] * 6),
    "arm_avgpool_s8": (ctypes.c_int, _POOL_ARGS),
    "arm_max_pool_s8": (ctypes.c_int, _POOL_ARGS),
    "arm_avgpool_s8_get_buffer_size": (ctypes.c_int32, [ctypes.c_int, ctypes.c_int]),
    "arm_avgpool_s8_get_buffer_size_dsp": (ctypes.c_int32, [ctypes.c_int, ctypes.c_int]),
    "tm_requantize": (None, [I32P, I32P, I32P, I32P, ctypes.c_int32]),
    "tm_dhm": (None, [I32P, I32P, I32P, ctypes.c_int32]),
    "tm_dhm_no_sat": (None, [I32P, I32P, I32P, ctypes.c_int32]),
    "tm_div_pot": (None, [I32P, I32P, I32P, ctypes.c_int32]),
}

GUARD = 32


def _p8(a: np.ndarray):
    return a.ctypes.data_as(I8P)


def _p32(a: np.ndarray):
    return a.ctypes.data_as(I32P)


def _guarded(n: int, fill: int = 0x5A) -> np.ndarray:
    return np.full(n + GUARD, fill, dtype=np.uint8).view(np.int8)


def _check_guard(buf: np.ndarray, n: int, fill: int = 0x5A) -> None:
    assert np.all(buf[n:].view(np.uint8) == fill), "kernel wrote past the end of its buffer"


class Kernels:
    """Thin ctypes front end; every call checks the status and the guard bytes."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args

    def _scratch(self, size: int):
        assert size >= 0
        if size == 0:  # a zero size must really mean "no buffer needed"
            return None, Context(None, 0)
        buf = _guarded(size, 0x77)
        buf[:size] = np.random.default_rng(size).integers(-128, 128, size, dtype=np.int8)  # not zeroed
        return buf, Context(buf.ctypes.data, size)

    def conv(self, x, w, bias, in_off, out_off, stride, pad, dil, amin, amax, mult, shift, out_hw, fn=None):
        x = np.ascontiguousarray(x, np.int8)
        w = np.ascontiguousarray(w, np.int8)
        n, h, wd, cin = x.shape
        cout, kh, kw, ck = w.shape
        oh, ow = out_hw
        mult = np.ascontiguousarray(np.broadcast_to(mult, (cout,)), np.int32)
        shift = np.ascontiguousarray(np.broadcast_to(shift, (cout,)), np.int32)
        params = ConvParams(in_off, out_off, _tile(stride), _tile(pad), _tile(dil), Activation(amin, amax))
        quant = PerChannel(_p32(mult), _p32(shift))
        idims, fdims, bdims, odims = _dims(n, h, wd, cin), _dims(cout, kh, kw, ck), _dims(1, 1, 1, cout), _dims(
            n, oh, ow, cout
        )
        size = self.lib.arm_convolve_wrapper_s8_get_buffer_size(params, idims, fdims, odims)
        if fn == "arm_convolve_s8":
            size = self.lib.arm_convolve_s8_get_buffer_size(idims, fdims)
        scratch, ctx = self._scratch(size)
        b = None if bias is None else np.ascontiguousarray(bias, np.int32)
        nout = n * oh * ow * cout
        out = _guarded(nout)
        args = [ctx, params, quant, idims, _p8(x), fdims, _p8(w), bdims, None if b is None else _p32(b)]
        if fn == "arm_convolve_s8":
            args.append(None)  # upscale_dims
        status = getattr(self.lib, fn or "arm_convolve_wrapper_s8")(*args, odims, _p8(out))
        assert status == 0, f"status {status}"
        _check_guard(out, nout)
        if scratch is not None:
            _check_guard(scratch, size, 0x77)
        return out[:nout].reshape(n, oh, ow, cout).copy()

    def dwconv(self, x, w, bias, in_off, out_off, ch_mult, stride, pad, dil, amin, amax, mult, shift, out_hw, fn=None):
        x = np.ascontiguousarray(x, np.int8)
        w = np.ascontiguousarray(w, np.int8).reshape((1,) + tuple(np.shape(w)[-3:]))
        n, h, wd, cin = x.shape
        _, kh, kw, cout = w.shape
        oh, ow = out_hw
        mult = np.ascontiguousarray(np.broadcast_to(mult, (cout,)), np.int32)
        shift = np.ascontiguousarray(np.broadcast_to(shift, (cout,)), np.int32)
        params = DwConvParams(
            in_off, out_off, ch_mult, _tile(stride), _tile(pad), _tile(dil), Activation(amin, amax)
        )
        quant = PerChannel(_p32(mult), _p32(shift))
        idims, fdims, bdims, odims = _dims(n, h, wd, cin), _dims(1, kh, kw, cout), _dims(1, 1, 1, cout), _dims(
            n, oh, ow, cout
        )
        size = self.lib.arm_depthwise_conv_wrapper_s8_get_buffer_size(params, idims, fdims, odims)
        scratch, ctx = self._scratch(size)
        b = None if bias is None else np.ascontiguousarray(bias, np.int32)
        nout = n * oh * ow * cout
        out = _guarded(nout)
        status = getattr(self.lib, fn or "arm_depthwise_conv_wrapper_s8")(
            ctx, params, quant, idims, _p8(x), fdims, _p8(w), bdims, None if b is None else _p32(b), odims, _p8(out)
        )
        assert status == 0, f"status {status}"
        _check_guard(out, nout)
        return out[:nout].reshape(n, oh, ow, cout).copy()

    def fc(self, x, w, bias, in_off, w_off, out_off, amin, amax, mult, shift):
        x = np.ascontiguousarray(x, np.int8)
        w = np.ascontiguousarray(w, np.int8)
        n, k = x.shape
        m = w.shape[0]
        params = FcParams(in_off, w_off, out_off, Activation(amin, amax))
        idims, fdims, bdims, odims = _dims(n, 1, 1, k), _dims(k, 1, 1, m), _dims(1, 1, 1, m), _dims(n, 1, 1, m)
        size = self.lib.arm_fully_connected_s8_get_buffer_size(fdims)
        scratch, ctx = self._scratch(size)
        b = None if bias is None else np.ascontiguousarray(bias, np.int32)
        out = _guarded(n * m)
        if np.ndim(mult) == 0:
            quant = PerTensor(int(mult), int(shift))
            fn = self.lib.arm_fully_connected_s8
        else:
            mult = np.ascontiguousarray(mult, np.int32)
            shift = np.ascontiguousarray(shift, np.int32)
            quant = PerChannel(_p32(mult), _p32(shift))
            fn = self.lib.arm_fully_connected_per_channel_s8
        status = fn(
            ctx, params, quant, idims, _p8(x), fdims, _p8(w), bdims, None if b is None else _p32(b), odims, _p8(out)
        )
        assert status == 0, f"status {status}"
        _check_guard(out, n * m)
        return out[: n * m].reshape(n, m).copy()

    def add(self, a, b, *args):
        a = np.ascontiguousarray(a, np.int8).reshape(-1)
        b = np.ascontiguousarray(b, np.int8).reshape(-1)
        (o1, m1, s1, o2, m2, s2, ls, oo, om, os_, amin, amax) = (int(v) for v in args)
        out = _guarded(a.size)
        status = self.lib.arm_elementwise_add_s8(
            _p8(a), _p8(b), o1, m1, s1, o2, m2, s2, ls, _p8(out), oo, om, os_, amin, amax, a.size
        )
        assert status == 0
        _check_guard(out, a.size)
        return out[: a.size].copy()

    def pool(self, kind, x, kernel, stride, pad, amin, amax, out_hw):
        x = np.ascontiguousarray(x, np.int8)
        n, h, wd, c = x.shape
        oh, ow = out_hw
        params = PoolParams(_tile(stride), _tile(pad), Activation(amin, amax))
        size = self.lib.arm_avgpool_s8_get_buffer_size(ow, c) if kind == "avg" else 0
        scratch, ctx = self._scratch(size)
        nout = n * oh * ow * c
        out = _guarded(nout)
        fn = self.lib.arm_avgpool_s8 if kind == "avg" else self.lib.arm_max_pool_s8
        fdims = _dims(1, kernel[0], kernel[1], 1)
        status = fn(ctx, params, _dims(n, h, wd, c), _p8(x), fdims, _dims(n, oh, ow, c), _p8(out))
        assert status == 0
        _check_guard(out, nout)
        return out[:nout].reshape(n, oh, ow, c).copy()

    def scalar_op(self, name, *arrays):
        arrays = [np.ascontiguousarray(a, np.int32) for a in np.broadcast_arrays(*arrays)]
        out = np.zeros(arrays[0].shape, np.int32)
        getattr(self.lib, name)(*[_p32(a) for a in arrays], _p32(out), out.size)
        return out


def _compile(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def kernels(tmp_path_factory) -> Kernels:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("cmsisnn_lib")
    shim = d / "shim.c"
    shim.write_text(SHIM_C)
    so = d / "libtmcmsisnn.so"
    srcs = [*map(str, SOURCES), str(shim)]
    r = _compile([cc, "-O2", "-fPIC", "-shared", "-std=c99", f"-I{INCLUDE}", *srcs, "-o", str(so)])
    assert r.returncode == 0, r.stderr
    return Kernels(ctypes.CDLL(str(so)))


# --------------------------------------------------------------------------- random cases


def _acts(rng) -> tuple[int, int]:
    r = rng.random()
    if r < 0.5:
        return -128, 127
    if r < 0.75:  # ReLU-like clamp at the output zero point
        lo = int(rng.integers(-128, 20))
        return lo, 127
    lo = int(rng.integers(-128, 0))
    return lo, int(rng.integers(lo, 128))


def _requant_params(rng, n: int, depth: int, extreme: bool = False):
    if extreme:
        mult = rng.integers(2**30, 2**31, n, dtype=np.int64)
        mult[rng.random(n) < 0.3] = 2**31 - 1
        shift = rng.integers(-31, 31, n, dtype=np.int64)
        return mult, shift
    base = 1.0 / (max(depth, 1) ** 0.5 * 600.0)
    pairs = [cm.quantize_multiplier(base * float(rng.uniform(0.2, 4.0))) for _ in range(n)]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def _bias(rng, n: int, extreme: bool = False):
    r = rng.random()
    if r < 0.15:
        return None
    if extreme:
        return rng.integers(INT32_MIN, INT32_MAX, n, dtype=np.int64, endpoint=True)
    return rng.integers(-(2**15), 2**15, n, dtype=np.int64)


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_case(rng, kind: str | None = None):
    kind = kind or rng.choice(["1x1", "1x1s2", "3x3", "3x3s2", "any", "grouped"])
    n = int(rng.integers(1, 3))
    cin = int(rng.integers(1, 21))
    cout = int(rng.integers(1, 21))
    stride, pad, dil = (1, 1), (0, 0), (1, 1)
    if kind in ("1x1", "1x1s2"):
        kh = kw = 1
        if kind == "1x1s2":
            stride = (2, int(rng.integers(1, 3)))
    elif kind in ("3x3", "3x3s2"):
        kh = kw = 3
        pad = (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
        if kind == "3x3s2":
            stride = (2, 2)
    else:
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        pad = (int(rng.integers(0, kh)), int(rng.integers(0, kw)))
        dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    groups = 1
    if kind == "grouped":
        groups = int(rng.integers(2, 5))
        cin = groups * int(rng.integers(1, 6))
        cout = groups * int(rng.integers(1, 5))
    h = int(rng.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 10))
    w = int(rng.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 10))
    oh, ow = _out_size(h, kh, stride[0], pad[0], dil[0]), _out_size(w, kw, stride[1], pad[1], dil[1])
    if kind == "any" and rng.random() < 0.4:  # asymmetric padding: extra rows/cols at the bottom/right
        oh += int(rng.integers(0, 2))
        ow += int(rng.integers(0, 2))
    extreme = rng.random() < 0.15
    x = rng.integers(-128, 128, (n, h, w, cin), dtype=np.int8)
    wt = rng.integers(-128, 128, (cout, kh, kw, cin // groups), dtype=np.int8)
    mult, shift = _requant_params(rng, cout, kh * kw * cin // groups, extreme)
    amin, amax = _acts(rng)
    return dict(
        x=x,
        w=wt,
        bias=_bias(rng, cout, extreme),
        in_off=int(rng.integers(-127, 129)),
        out_off=int(rng.integers(-128, 128)),
        stride=stride,
        pad=pad,
        dil=dil,
        amin=amin,
        amax=amax,
        mult=mult,
        shift=shift,
        out_hw=(oh, ow),
    )


def _model_conv(c):
    return cm.convolve_s8(
        c["x"], c["w"], c["bias"], c["in_off"], c["out_off"], c["stride"], c["pad"], c["dil"],
        c["amin"], c["amax"], c["mult"], c["shift"], out_hw=c["out_hw"],
    )  # fmt: skip


def _c_conv(kernels, c, fn=None):
    return kernels.conv(
        c["x"], c["w"], c["bias"], c["in_off"], c["out_off"], c["stride"], c["pad"], c["dil"],
        c["amin"], c["amax"], c["mult"], c["shift"], c["out_hw"], fn=fn,
    )  # fmt: skip


def _dw_case(rng, ch_mult: int | None = None):
    ch_mult = ch_mult or int(rng.choice([1, 1, 2, 3]))
    cin = int(rng.choice([1, 3, 8, 17, 40, 70]))
    if ch_mult > 1:
        cin = min(cin, 40)
    kh, kw = (3, 3) if rng.random() < 0.6 else (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad = (int(rng.integers(0, kh)), int(rng.integers(0, kw)))
    dil = (1, 1) if rng.random() < 0.6 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    h = int(rng.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 9))
    w = int(rng.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 9))
    n = int(rng.integers(1, 3))
    cout = cin * ch_mult
    extreme = rng.random() < 0.15
    mult, shift = _requant_params(rng, cout, kh * kw, extreme)
    amin, amax = _acts(rng)
    return dict(
        x=rng.integers(-128, 128, (n, h, w, cin), dtype=np.int8),
        w=rng.integers(-128, 128, (1, kh, kw, cout), dtype=np.int8),
        bias=_bias(rng, cout, extreme),
        in_off=int(rng.integers(-127, 129)),
        out_off=int(rng.integers(-128, 128)),
        ch_mult=ch_mult,
        stride=stride,
        pad=pad,
        dil=dil,
        amin=amin,
        amax=amax,
        mult=mult,
        shift=shift,
        out_hw=(_out_size(h, kh, stride[0], pad[0], dil[0]), _out_size(w, kw, stride[1], pad[1], dil[1])),
    )


def _model_dw(c):
    return cm.depthwise_conv_s8(
        c["x"], c["w"], c["bias"], c["in_off"], c["out_off"], c["ch_mult"], c["stride"], c["pad"], c["dil"],
        c["amin"], c["amax"], c["mult"], c["shift"], out_hw=c["out_hw"],
    )  # fmt: skip


def _c_dw(kernels, c, fn=None):
    return kernels.dwconv(
        c["x"], c["w"], c["bias"], c["in_off"], c["out_off"], c["ch_mult"], c["stride"], c["pad"], c["dil"],
        c["amin"], c["amax"], c["mult"], c["shift"], c["out_hw"], fn=fn,
    )  # fmt: skip


def _fc_case(rng, per_channel: bool):
    n, k, m = int(rng.integers(1, 10)), int(rng.integers(1, 300)), int(rng.integers(1, 40))
    extreme = rng.random() < 0.15
    mult, shift = _requant_params(rng, m if per_channel else 1, k, extreme)
    amin, amax = _acts(rng)
    return dict(
        x=rng.integers(-128, 128, (n, k), dtype=np.int8),
        w=rng.integers(-128, 128, (m, k), dtype=np.int8),
        bias=_bias(rng, m, extreme),
        in_off=int(rng.integers(-127, 129)),
        w_off=0 if rng.random() < 0.6 else int(rng.integers(-127, 129)),
        out_off=int(rng.integers(-128, 128)),
        amin=amin,
        amax=amax,
        mult=mult if per_channel else int(mult[0]),
        shift=shift if per_channel else int(shift[0]),
    )


def _fc_args(c):
    keys = ("x", "w", "bias", "in_off", "w_off", "out_off", "amin", "amax", "mult", "shift")
    return tuple(c[k] for k in keys)


def _tflite_add_params(rng):
    """Add parameters the way TFLite derives them from the tensors' scales."""
    s1, s2, so = (float(np.exp(rng.uniform(np.log(0.005), np.log(0.2)))) for _ in range(3))
    z1, z2, zo = (int(rng.integers(-128, 128)) for _ in range(3))
    left_shift = 20
    twice_max = 2 * max(s1, s2)
    m1, sh1 = cm.quantize_multiplier(s1 / twice_max)
    m2, sh2 = cm.quantize_multiplier(s2 / twice_max)
    mo, sho = cm.quantize_multiplier(twice_max / ((1 << left_shift) * so))
    return dict(
        scales=(s1, s2, so),
        zps=(z1, z2, zo),
        args=(-z1, m1, sh1, -z2, m2, sh2, left_shift, zo, mo, sho),
    )


# --------------------------------------------------------------------------- fixed point


def _ref_dhm_sat(a: int, b: int) -> int:
    """CMSIS-NN's documented saturating form: sign-dependent nudge, truncating division."""
    if a == b == INT32_MIN:
        return INT32_MAX
    nudge = (1 << 30) if (a < 0) == (b < 0) else 1 - (1 << 30)
    num = a * b + nudge
    q = abs(num) // (1 << 31)
    return q if num >= 0 else -q


def _ref_div_pot(x: int, e: int) -> int:
    """x / 2**e rounded to nearest, ties away from zero (exact rationals)."""
    f = Fraction(x, 1 << e)
    r = math.floor(abs(f) + Fraction(1, 2))
    return r if f >= 0 else -r


def _edge_int32(rng, n):
    edges = np.array([INT32_MIN, INT32_MIN + 1, -(2**30), -1, 0, 1, 2**30, INT32_MAX - 1, INT32_MAX], np.int64)
    return np.concatenate([edges, rng.integers(INT32_MIN, INT32_MAX, n, dtype=np.int64, endpoint=True)])


def test_doubling_high_mult_matches_reference_and_c(kernels):
    rng = np.random.default_rng(1)
    a = _edge_int32(rng, 400)
    b = _edge_int32(rng, 400)
    aa, bb = (v.reshape(-1) for v in np.meshgrid(a[:9], b[:9]))  # every pair of edge values
    aa = np.concatenate([aa, a, rng.integers(-(2**16), 2**16, 200)])
    bb = np.concatenate([bb, b, rng.integers(-(2**16), 2**16, 200)])
    sat = cm.doubling_high_mult(aa, bb)
    no_sat = cm.doubling_high_mult_no_sat(aa, bb)
    ref = np.array([_ref_dhm_sat(int(x), int(y)) for x, y in zip(aa, bb)], np.int64)
    np.testing.assert_array_equal(sat, ref)
    both_min = (aa == INT32_MIN) & (bb == INT32_MIN)
    np.testing.assert_array_equal(no_sat[~both_min], ref[~both_min])
    assert np.all(sat[both_min] == INT32_MAX) and np.all(no_sat[both_min] == INT32_MIN)  # saturate vs wrap
    np.testing.assert_array_equal(kernels.scalar_op("tm_dhm", aa, bb), sat)
    np.testing.assert_array_equal(kernels.scalar_op("tm_dhm_no_sat", aa, bb), no_sat)


def test_divide_by_power_of_two(kernels):
    rng = np.random.default_rng(2)
    x = np.concatenate([_edge_int32(rng, 300), np.arange(-40, 41)])
    xs, es = (v.reshape(-1) for v in np.meshgrid(x, np.arange(0, 32)))
    ref = np.array([_ref_div_pot(int(v), int(e)) for v, e in zip(xs, es)], np.int64)
    np.testing.assert_array_equal(cm.divide_by_power_of_two(xs, es), ref)
    np.testing.assert_array_equal(kernels.scalar_op("tm_div_pot", xs, es), ref)


def test_requantize_extremes_c_vs_model(kernels):
    rng = np.random.default_rng(3)
    acc = _edge_int32(rng, 2000)
    shifts = np.arange(-31, 31)
    mults = np.array([0, 1, 2**30, 2**30 + 1, 2**31 - 2, 2**31 - 1, -(2**31) + 1, -(2**30)], np.int64)
    a, m, s = (v.reshape(-1) for v in np.meshgrid(acc[:40], mults, shifts))
    a = np.concatenate([a, acc, acc])
    m = np.concatenate([m, rng.integers(2**30, 2**31, acc.size), rng.integers(-(2**31) + 1, 2**31, acc.size)])
    s = np.concatenate([s, rng.integers(-31, 31, acc.size), rng.integers(-31, 32, acc.size)])
    model = cm.requantize(a, m, s)
    assert model.dtype == np.int32
    np.testing.assert_array_equal(kernels.scalar_op("tm_requantize", a, m, s), model)
    # broadcasting: per-channel parameters along the last axis
    acc2 = rng.integers(-(2**20), 2**20, (5, 7))
    mm, ss = rng.integers(2**30, 2**31, 7), rng.integers(-20, 5, 7)
    rows = np.stack([cm.requantize(acc2[i], mm, ss) for i in range(5)])
    np.testing.assert_array_equal(cm.requantize(acc2, mm, ss), rows)


def test_requantize_is_close_to_real_product():
    """Within 1 of round(acc * multiplier * 2**(shift - 31)) computed exactly."""
    rng = np.random.default_rng(4)
    for _ in range(300):
        m = int(rng.integers(2**30, 2**31))
        s = int(rng.integers(-31, 8))
        lim = min(2**31 - 1, (2**31 - 1) >> max(s, 0))
        acc = int(rng.integers(-lim, lim))
        exact = Fraction(acc * m, 1) * Fraction(2) ** (s - 31)
        assert abs(int(cm.requantize(acc, m, s)) - round(exact)) <= 1


def test_quantize_multiplier_known_values():
    assert cm.quantize_multiplier(0.0) == (0, 0)
    assert cm.quantize_multiplier(0.5) == (2**30, 0)
    assert cm.quantize_multiplier(1.0) == (2**30, 1)
    assert cm.quantize_multiplier(0.75) == (3 * 2**29, 0)
    assert cm.quantize_multiplier(2.0**-10) == (2**30, -9)
    assert cm.quantize_multiplier(1.0 - 2.0**-40) == (2**30, 1)  # mantissa rounds up to 2**31
    assert cm.quantize_multiplier(1e-12) == (0, 0)  # shift < -31 flushes to zero
    m, s = cm.quantize_multiplier(3.0)
    assert (m, s) == (3 * 2**29, 2)
    m, s = cm.quantize_multiplier(-0.75)
    assert (m, s) == (-3 * 2**29, 0)


def test_quantize_multiplier_vs_float():
    rng = np.random.default_rng(5)
    reals = np.exp(rng.uniform(np.log(1e-6), 0.0, 500))
    for real in reals:
        m, s = cm.quantize_multiplier(float(real))
        assert 2**30 <= m < 2**31 and -31 <= s <= 0
        assert abs(m * 2.0 ** (s - 31) - real) <= real * 2.0**-30
        acc = rng.integers(-(2**31) + 1, 2**31, 64)
        got = cm.requantize(acc, m, s).astype(np.int64)
        want = np.round(acc.astype(np.float64) * float(real))
        assert np.max(np.abs(got - want)) <= 1, real


# --------------------------------------------------------------------------- kernels vs model


@pytest.mark.parametrize("kind", ["1x1", "1x1s2", "3x3", "3x3s2", "any", "grouped"])
def test_convolve_wrapper_matches_model(kernels, kind):
    rng = np.random.default_rng(100 + ["1x1", "1x1s2", "3x3", "3x3s2", "any", "grouped"].index(kind))
    for _ in range(40):
        c = _conv_case(rng, kind)
        info = str({k: v for k, v in c.items() if k not in ("x", "w")})
        np.testing.assert_array_equal(_c_conv(kernels, c), _model_conv(c), err_msg=info)


def test_convolve_entry_points_agree(kernels):
    rng = np.random.default_rng(7)
    for _ in range(15):
        c = _conv_case(rng, "any")
        np.testing.assert_array_equal(_c_conv(kernels, c, "arm_convolve_s8"), _model_conv(c))
    for _ in range(10):
        c = _conv_case(rng, "1x1")
        want = _model_conv(c)
        np.testing.assert_array_equal(_c_conv(kernels, c, "arm_convolve_1x1_s8_fast"), want)
        np.testing.assert_array_equal(_c_conv(kernels, c, "arm_convolve_1x1_s8"), want)
        np.testing.assert_array_equal(_c_conv(kernels, c, "arm_convolve_s8"), want)
        c = _conv_case(rng, "1x1s2")
        np.testing.assert_array_equal(_c_conv(kernels, c, "arm_convolve_1x1_s8"), _model_conv(c))


def test_convolve_larger_layer(kernels):
    """A MobileNet-sized layer: channel counts across the 16-wide inner blocks, many pixel groups."""
    rng = np.random.default_rng(8)
    for cin, cout, k, s in [(32, 48, 3, 1), (67, 33, 3, 2), (64, 128, 1, 1)]:
        c = _conv_case(rng, "3x3")
        x = rng.integers(-128, 128, (1, 15, 13, cin), dtype=np.int8)
        w = rng.integers(-128, 128, (cout, k, k, cin), dtype=np.int8)
        p = k // 2
        mult, shift = _requant_params(rng, cout, k * k * cin)
        c.update(
            x=x, w=w, bias=rng.integers(-5000, 5000, cout), stride=(s, s), pad=(p, p), dil=(1, 1),
            mult=mult, shift=shift, out_hw=(_out_size(15, k, s, p, 1), _out_size(13, k, s, p, 1)),
        )  # fmt: skip
        np.testing.assert_array_equal(_c_conv(kernels, c), _model_conv(c))


@pytest.mark.parametrize("ch_mult", [1, 2, 3])
def test_depthwise_matches_model(kernels, ch_mult):
    rng = np.random.default_rng(200 + ch_mult)
    for i in range(40):
        c = _dw_case(rng, ch_mult)
        fn = "arm_depthwise_conv_s8" if i % 4 == 0 else None
        np.testing.assert_array_equal(_c_dw(kernels, c, fn), _model_dw(c))


@pytest.mark.parametrize("per_channel", [False, True])
def test_fully_connected_matches_model(kernels, per_channel):
    rng = np.random.default_rng(300 + per_channel)
    for _ in range(60):
        c = _fc_case(rng, per_channel)
        np.testing.assert_array_equal(kernels.fc(*_fc_args(c)), cm.fully_connected_s8(*_fc_args(c)))


def test_elementwise_add_matches_model(kernels):
    rng = np.random.default_rng(400)
    for i in range(60):
        n = int(rng.integers(1, 300))
        a = rng.integers(-128, 128, n, dtype=np.int8)
        b = rng.integers(-128, 128, n, dtype=np.int8)
        if i % 3 == 2:  # arbitrary parameters, exercising the wrap-around paths
            args = [int(rng.integers(-127, 129)), int(rng.integers(2**30, 2**31)), int(rng.integers(-31, 5)),
                    int(rng.integers(-127, 129)), int(rng.integers(2**30, 2**31)), int(rng.integers(-31, 5)),
                    int(rng.integers(0, 25)), int(rng.integers(-128, 128)), int(rng.integers(2**30, 2**31)),
                    int(rng.integers(-31, 31))]  # fmt: skip
        else:
            args = list(_tflite_add_params(rng)["args"])
        amin, amax = _acts(rng)
        want = cm.elementwise_add_s8(a, b, *args, amin, amax)
        np.testing.assert_array_equal(kernels.add(a, b, *args, amin, amax), want)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_pooling_matches_model(kernels, kind):
    rng = np.random.default_rng(500 + (kind == "max"))
    model = cm.avgpool_s8 if kind == "avg" else cm.max_pool_s8
    for _ in range(50):
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        pad = (int(rng.integers(0, kh)), int(rng.integers(0, kw)))
        n, c = int(rng.integers(1, 3)), int(rng.choice([1, 5, 16, 70]))
        h, w = int(rng.integers(max(1, kh - 2 * pad[0]), 10)), int(rng.integers(max(1, kw - 2 * pad[1]), 10))
        x = rng.integers(-128, 128, (n, h, w, c), dtype=np.int8)
        amin, amax = _acts(rng)
        out_hw = (_out_size(h, kh, stride[0], pad[0], 1), _out_size(w, kw, stride[1], pad[1], 1))
        got = kernels.pool(kind, x, (kh, kw), stride, pad, amin, amax, out_hw)
        np.testing.assert_array_equal(got, model(x, (kh, kw), stride, pad, amin, amax))


# --------------------------------------------------------------------------- model vs independent references


def test_conv_model_close_to_float_reference():
    """Offsets, layouts, padding and grouping agree with an independent NCHW float convolution."""
    rng = np.random.default_rng(600)
    for _ in range(25):
        c = _conv_case(rng, str(rng.choice(["3x3", "any", "grouped", "1x1s2"])))
        c["mult"], c["shift"] = _requant_params(rng, c["w"].shape[0], c["w"][0].size)
        got = _model_conv(c).astype(np.int64)
        x, w = c["x"].astype(np.float64), c["w"].astype(np.float64)
        groups = x.shape[3] // w.shape[3]
        (oh, ow), (sh, sw), (ph, pw), (dh, dw) = c["out_hw"], c["stride"], c["pad"], c["dil"]
        kh, kw = w.shape[1:3]
        pb = (oh - 1) * sh + dh * (kh - 1) + 1 - ph - x.shape[1]
        pr = (ow - 1) * sw + dw * (kw - 1) + 1 - pw - x.shape[2]
        xin = (x + c["in_off"]).transpose(0, 3, 1, 2)
        if pb < 0:
            xin = xin[:, :, : x.shape[1] + pb]
        if pr < 0:
            xin = xin[:, :, :, : x.shape[2] + pr]
        acc = conv2d(xin, w.transpose(0, 3, 1, 2), (sh, sw), (ph, pw, max(pb, 0), max(pr, 0)), (dh, dw), groups)
        acc = acc.transpose(0, 2, 3, 1) + (0 if c["bias"] is None else c["bias"])
        real = c["mult"].astype(np.float64) * 2.0 ** (c["shift"] - 31.0)
        want = np.clip(np.round(acc * real) + c["out_off"], c["amin"], c["amax"])
        assert np.max(np.abs(got - want)) <= 1


def test_depthwise_model_close_to_loop_reference():
    rng = np.random.default_rng(601)
    for _ in range(10):
        c = _dw_case(rng)
        c["mult"], c["shift"] = _requant_params(rng, c["w"].shape[3], 9)
        x, w = c["x"].astype(np.int64), c["w"][0].astype(np.int64)
        n, h, wd, cin = x.shape
        oh, ow = c["out_hw"]
        acc = np.zeros((n, oh, ow, w.shape[2]), np.int64)
        for oc in range(w.shape[2]):
            ic = oc // c["ch_mult"]
            for oy in range(oh):
                for ox in range(ow):
                    for ky in range(w.shape[0]):
                        for kx in range(w.shape[1]):
                            iy = oy * c["stride"][0] - c["pad"][0] + ky * c["dil"][0]
                            ix = ox * c["stride"][1] - c["pad"][1] + kx * c["dil"][1]
                            if 0 <= iy < h and 0 <= ix < wd:
                                acc[:, oy, ox, oc] += (x[:, iy, ix, ic] + c["in_off"]) * w[ky, kx, oc]
        acc += 0 if c["bias"] is None else c["bias"]
        want = np.clip(cm.requantize(acc, c["mult"], c["shift"]).astype(np.int64) + c["out_off"], c["amin"], c["amax"])
        np.testing.assert_array_equal(_model_dw(c), want)


def test_fc_and_add_models_close_to_float():
    rng = np.random.default_rng(602)
    for per_channel in (False, True):
        for _ in range(20):
            c = _fc_case(rng, per_channel)
            m = c["w"].shape[0]
            mult, shift = _requant_params(rng, m if per_channel else 1, c["x"].shape[1])
            c["mult"], c["shift"] = (mult, shift) if per_channel else (int(mult[0]), int(shift[0]))
            acc = (c["x"] + float(c["in_off"])) @ (c["w"] + float(c["w_off"])).T
            acc += 0 if c["bias"] is None else c["bias"]
            real = np.asarray(c["mult"], np.float64) * 2.0 ** (np.asarray(c["shift"]) - 31.0)
            want = np.clip(np.round(acc * real) + c["out_off"], c["amin"], c["amax"])
            assert np.max(np.abs(cm.fully_connected_s8(*_fc_args(c)).astype(np.int64) - want)) <= 1
    for _ in range(30):
        p = _tflite_add_params(rng)
        (s1, s2, so), (z1, z2, zo) = p["scales"], p["zps"]
        a = rng.integers(-128, 128, 500)
        b = rng.integers(-128, 128, 500)
        got = cm.elementwise_add_s8(a, b, *p["args"], -128, 127).astype(np.int64)
        want = np.clip(np.round((s1 * (a - z1) + s2 * (b - z2)) / so) + zo, -128, 127)
        assert np.max(np.abs(got - want)) <= 1


def test_pool_models_match_loop_reference():
    rng = np.random.default_rng(603)
    for _ in range(15):
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pad = (int(rng.integers(0, kh)), int(rng.integers(0, kw)))
        x = rng.integers(-128, 128, (1, 6, 7, 3), dtype=np.int8)
        amin, amax = _acts(rng)
        avg = cm.avgpool_s8(x, (kh, kw), stride, pad, amin, amax)
        mx = cm.max_pool_s8(x, (kh, kw), stride, pad, amin, amax)
        for oy in range(avg.shape[1]):
            for ox in range(avg.shape[2]):
                ys = [y for y in range(oy * stride[0] - pad[0], oy * stride[0] - pad[0] + kh) if 0 <= y < 6]
                xs = [v for v in range(ox * stride[1] - pad[1], ox * stride[1] - pad[1] + kw) if 0 <= v < 7]
                win = x[0][np.ix_(ys, xs)].reshape(-1, 3).astype(np.int64)
                for ch in range(3):
                    s, cnt = int(win[:, ch].sum()), win.shape[0]
                    r = (s + cnt // 2) // cnt if s > 0 else -((-s + cnt // 2) // cnt)  # half away from zero
                    assert avg[0, oy, ox, ch] == min(max(r, amin), amax)
                    assert mx[0, oy, ox, ch] == min(max(int(win[:, ch].max()), amin), amax)


# --------------------------------------------------------------------------- API details


def test_buffer_sizes_follow_cmsis_nn(kernels):
    lib = kernels.lib
    params = ConvParams(0, 0, _tile((1, 1)), _tile((0, 0)), _tile((1, 1)), Activation(-128, 127))
    one = _dims(1, 8, 8, 16)
    assert lib.arm_convolve_wrapper_s8_get_buffer_size(params, one, _dims(8, 1, 1, 16), one) == 0
    assert lib.arm_convolve_1x1_s8_fast_get_buffer_size(one) == 0
    for k, cin in [(3, 16), (3, 3), (5, 7), (1, 5)]:
        params.padding = _tile((1, 1))
        rhs = k * k * cin
        want = 2 * (rhs + (-rhs) % 4) * 2
        fdims = _dims(8, k, k, cin)
        assert lib.arm_convolve_wrapper_s8_get_buffer_size(params, _dims(1, 8, 8, cin), fdims, one) == want
        assert lib.arm_convolve_wrapper_s8_get_buffer_size_dsp(params, _dims(1, 8, 8, cin), fdims, one) == want
        assert lib.arm_convolve_s8_get_buffer_size(_dims(1, 8, 8, cin), fdims) == want
    dw = DwConvParams(0, 0, 1, _tile((1, 1)), _tile((2, 2)), _tile((1, 1)), Activation(-128, 127))
    d = _dims(1, 8, 8, 10)
    assert lib.arm_depthwise_conv_wrapper_s8_get_buffer_size(dw, d, _dims(1, 5, 5, 10), d) == 0
    assert lib.arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp(dw, d, _dims(1, 5, 5, 10), d) == 10 * 25 * 2
    dw.padding = _tile((1, 1))
    assert lib.arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp(dw, d, _dims(1, 3, 3, 10), d) == 0
    assert lib.arm_fully_connected_s8_get_buffer_size(_dims(100, 1, 1, 10)) == 0
    assert lib.arm_fully_connected_s8_get_buffer_size_dsp(_dims(100, 1, 1, 10)) == 0
    assert lib.arm_avgpool_s8_get_buffer_size(4, 24) == 0
    assert lib.arm_avgpool_s8_get_buffer_size_dsp(4, 24) == 96


def test_argument_errors(kernels):
    lib = kernels.lib
    x = np.zeros(64, np.int8)
    w = np.zeros(64, np.int8)
    out = np.zeros(64, np.int8)
    mult = np.full(4, 2**30, np.int32)
    shift = np.zeros(4, np.int32)
    quant = PerChannel(_p32(mult), _p32(shift))
    params = ConvParams(0, 0, _tile((1, 1)), _tile((1, 1)), _tile((1, 1)), Activation(-128, 127))
    idims, fdims, odims, bdims = _dims(1, 2, 2, 4), _dims(4, 3, 3, 4), _dims(1, 2, 2, 4), _dims(1, 1, 1, 4)
    null_ctx = Context(None, 0)
    # the generic path needs its scratch buffer
    st = lib.arm_convolve_wrapper_s8(
        null_ctx, params, quant, idims, _p8(x), fdims, _p8(w), bdims, None, odims, _p8(out)
    )
    assert st == -1
    scratch = np.zeros(1024, np.int8)
    ctx = Context(scratch.ctypes.data, 1024)
    up = _dims(1, 2, 2, 1)
    st = lib.arm_convolve_s8(ctx, params, quant, idims, _p8(x), fdims, _p8(w), bdims, None, up, odims, _p8(out))
    assert st == -2  # transposed-convolution upscaling is not implemented
    params.input_offset = -128  # padding value 128 does not fit int8: outside CMSIS-NN's documented range
    st = lib.arm_convolve_wrapper_s8(ctx, params, quant, idims, _p8(x), fdims, _p8(w), bdims, None, odims, _p8(out))
    assert st == -1
    params.input_offset = 0
    params.padding = _tile((0, 0))
    params.stride = _tile((2, 2))  # not allowed for the _fast 1x1 kernel
    st = lib.arm_convolve_1x1_s8_fast(
        null_ctx, params, quant, idims, _p8(x), _dims(4, 1, 1, 4), _p8(w), bdims, None, _dims(1, 1, 1, 4), _p8(out)
    )
    assert st == -1
    pool = PoolParams(_tile((1, 1)), _tile((3, 3)), Activation(-128, 127))  # window entirely in the padding
    st = lib.arm_avgpool_s8(null_ctx, pool, _dims(1, 2, 2, 1), _p8(x), _dims(1, 1, 1, 1), _dims(1, 4, 4, 1), _p8(out))
    assert st == -1


# --------------------------------------------------------------------------- compiler hygiene


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_sources_compile_warning_free(cc, tmp_path):
    if not shutil.which(cc):
        pytest.skip(f"{cc} not installed")
    for src in SOURCES:
        r = _compile([cc, *STRICT, "-O2", f"-I{INCLUDE}", "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))])
        assert r.returncode == 0, f"{src.name}:\n{r.stderr}"
    hdr = tmp_path / "headers.c"
    hdr.write_text('#include "arm_nnfunctions.h"\n#include "arm_nnsupportfunctions.h"\nint tm_dummy;\n')
    r = _compile([cc, *STRICT, f"-I{INCLUDE}", "-c", str(hdr), "-o", str(tmp_path / "headers.o")])
    assert r.returncode == 0, r.stderr
    cxx = {"gcc": "g++", "clang": "clang++"}[cc]
    if shutil.which(cxx):  # the public headers are usable from C++ too
        hpp = tmp_path / "headers.cpp"
        hpp.write_text(hdr.read_text())
        r = _compile([cxx, "-Wall", "-Wextra", "-Werror", "-std=c++11", f"-I{INCLUDE}", "-fsyntax-only", str(hpp)])
        assert r.returncode == 0, r.stderr


def _c_array(ctype: str, name: str, values) -> str:
    vals = ",".join(str(int(v)) for v in np.asarray(values).reshape(-1))
    return f"static const {ctype} {name}[] = {{{vals}}};\n"


def _sanitizer_driver(cases) -> str:
    """C source running every case on exactly-sized heap copies and printing the outputs."""
    head = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"
static void *dup(const void *src, size_t n) { void *p = malloc(n ? n : 1); memcpy(p, src, n); return p; }
static void *scratch(int32_t n) { return n > 0 ? malloc((size_t)n) : NULL; }
static void show(const char *name, int status, const int8_t *out, int32_t n)
{ int32_t i; printf("%s %d", name, status); for (i = 0; i < n; i++) printf(" %d", out[i]); printf("\n"); }
"""
    data, body = [], []
    for idx, (kind, c) in enumerate(cases):
        p = f"c{idx}_"
        if kind in ("conv", "dw"):
            x, w = c["x"], c["w"]
            cout = w.shape[0] if kind == "conv" else w.shape[3]
            n, h, wd, cin = x.shape
            oh, ow = c["out_hw"]
            nout = n * oh * ow * cout
            data += [_c_array("int8_t", p + "x", x), _c_array("int8_t", p + "w", w)]
            data += [_c_array("int32_t", p + "m", np.broadcast_to(c["mult"], (cout,))),
                     _c_array("int32_t", p + "s", np.broadcast_to(c["shift"], (cout,)))]  # fmt: skip
            has_bias = c["bias"] is not None
            if has_bias:
                data.append(_c_array("int32_t", p + "b", c["bias"]))
            t = lambda v: f"{{{v[1]}, {v[0]}}}"  # noqa: E731  cmsis_nn_tile is {w, h}
            act = f"{{{c['amin']}, {c['amax']}}}"
            if kind == "conv":
                params = f"cmsis_nn_conv_params pr = {{{c['in_off']}, {c['out_off']}, {t(c['stride'])}, {t(c['pad'])}, {t(c['dil'])}, {act}}};"
                fdims = f"{{{cout}, {w.shape[1]}, {w.shape[2]}, {w.shape[3]}}}"
                size = "arm_convolve_wrapper_s8_get_buffer_size(&pr, &id, &fd, &od)"
                call = "arm_convolve_wrapper_s8"
            else:
                params = f"cmsis_nn_dw_conv_params pr = {{{c['in_off']}, {c['out_off']}, {c['ch_mult']}, {t(c['stride'])}, {t(c['pad'])}, {t(c['dil'])}, {act}}};"
                fdims = f"{{1, {w.shape[1]}, {w.shape[2]}, {cout}}}"
                size = "arm_depthwise_conv_wrapper_s8_get_buffer_size(&pr, &id, &fd, &od)"
                call = "arm_depthwise_conv_wrapper_s8"
            bias = f"(int32_t *)dup({p}b, sizeof {p}b)" if has_bias else "NULL"
            body.append(f"""{{
  {params}
  cmsis_nn_dims id = {{{n}, {h}, {wd}, {cin}}}, fd = {fdims}, bd = {{1, 1, 1, {cout}}}, od = {{{n}, {oh}, {ow}, {cout}}};
  cmsis_nn_per_channel_quant_params q; cmsis_nn_context ctx; int st;
  int8_t *x = dup({p}x, sizeof {p}x), *w = dup({p}w, sizeof {p}w), *o = malloc({nout});
  int32_t *b = {bias};
  q.multiplier = dup({p}m, sizeof {p}m); q.shift = dup({p}s, sizeof {p}s);
  ctx.size = {size}; ctx.buf = scratch(ctx.size);
  st = {call}(&ctx, &pr, &q, &id, x, &fd, w, &bd, b, &od, o);
  show("case{idx}", st, o, {nout});
  free(x); free(w); free(o); free(b); free(q.multiplier); free(q.shift); free(ctx.buf);
}}
""")
        elif kind == "fc":
            x, w = c["x"], c["w"]
            n, k = x.shape
            m = w.shape[0]
            per_channel = np.ndim(c["mult"]) > 0
            data += [_c_array("int8_t", p + "x", x), _c_array("int8_t", p + "w", w)]
            has_bias = c["bias"] is not None
            if has_bias:
                data.append(_c_array("int32_t", p + "b", c["bias"]))
            if per_channel:
                data += [_c_array("int32_t", p + "m", c["mult"]), _c_array("int32_t", p + "s", c["shift"])]
                quant = f"cmsis_nn_per_channel_quant_params q; q.multiplier = dup({p}m, sizeof {p}m); q.shift = dup({p}s, sizeof {p}s);"
                call, free_q = "arm_fully_connected_per_channel_s8", "free(q.multiplier); free(q.shift);"
            else:
                quant = f"cmsis_nn_per_tensor_quant_params q = {{{c['mult']}, {c['shift']}}};"
                call, free_q = "arm_fully_connected_s8", ""
            bias = f"(int32_t *)dup({p}b, sizeof {p}b)" if has_bias else "NULL"
            body.append(f"""{{
  cmsis_nn_fc_params pr = {{{c['in_off']}, {c['w_off']}, {c['out_off']}, {{{c['amin']}, {c['amax']}}}}};
  cmsis_nn_dims id = {{{n}, 1, 1, {k}}}, fd = {{{k}, 1, 1, {m}}}, bd = {{1, 1, 1, {m}}}, od = {{{n}, 1, 1, {m}}};
  cmsis_nn_context ctx; int st;
  int8_t *x = dup({p}x, sizeof {p}x), *w = dup({p}w, sizeof {p}w), *o = malloc({n * m});
  int32_t *b = {bias};
  {quant}
  ctx.size = arm_fully_connected_s8_get_buffer_size(&fd); ctx.buf = scratch(ctx.size);
  st = {call}(&ctx, &pr, &q, &id, x, &fd, w, &bd, b, &od, o);
  show("case{idx}", st, o, {n * m});
  free(x); free(w); free(o); free(b); free(ctx.buf); {free_q}
}}
""")
        elif kind == "add":
            a, b, args = c["a"], c["b"], c["args"]
            data += [_c_array("int8_t", p + "a", a), _c_array("int8_t", p + "b", b)]
            o1, m1, s1, o2, m2, s2, ls, oo, om, os_, amin, amax = args
            body.append(f"""{{
  int8_t *a = dup({p}a, sizeof {p}a), *b = dup({p}b, sizeof {p}b), *o = malloc({a.size});
  int st = arm_elementwise_add_s8(a, b, {o1}, {m1}, {s1}, {o2}, {m2}, {s2}, {ls}, o, {oo}, {om}, {os_}, {amin}, {amax}, {a.size});
  show("case{idx}", st, o, {a.size});
  free(a); free(b); free(o);
}}
""")
        elif kind in ("avg", "max"):
            x = c["x"]
            n, h, wd, ch = x.shape
            oh, ow = c["out_hw"]
            (kh, kw), (sh, sw), (ph, pw) = c["kernel"], c["stride"], c["pad"]
            data.append(_c_array("int8_t", p + "x", x))
            fn = "arm_avgpool_s8" if kind == "avg" else "arm_max_pool_s8"
            size = f"arm_avgpool_s8_get_buffer_size({ow}, {ch})" if kind == "avg" else "0"
            body.append(f"""{{
  cmsis_nn_pool_params pr = {{{{{sw}, {sh}}}, {{{pw}, {ph}}}, {{{c['amin']}, {c['amax']}}}}};
  cmsis_nn_dims id = {{{n}, {h}, {wd}, {ch}}}, fd = {{1, {kh}, {kw}, 1}}, od = {{{n}, {oh}, {ow}, {ch}}};
  cmsis_nn_context ctx; int st;
  int8_t *x = dup({p}x, sizeof {p}x), *o = malloc({n * oh * ow * ch});
  ctx.size = {size}; ctx.buf = scratch(ctx.size);
  st = {fn}(&ctx, &pr, &id, x, &fd, &od, o);
  show("case{idx}", st, o, {n * oh * ow * ch});
  free(x); free(o); free(ctx.buf);
}}
""")
        elif kind == "requant":
            data += [_c_array("int32_t", p + "a", c["acc"]), _c_array("int32_t", p + "m", c["mult"]),
                     _c_array("int32_t", p + "s", c["shift"])]  # fmt: skip
            body.append(f"""{{
  int32_t i; printf("case{idx} 0");
  for (i = 0; i < (int32_t)(sizeof {p}a / sizeof {p}a[0]); i++) printf(" %ld", (long)arm_nn_requantize({p}a[i], {p}m[i], {p}s[i]));
  printf(" %ld %ld\\n", (long)arm_nn_doubling_high_mult(NN_Q31_MIN, NN_Q31_MIN), (long)arm_nn_doubling_high_mult_no_sat(NN_Q31_MIN, NN_Q31_MIN));
}}
""")
    return head + "".join(data) + "int main(void)\n{\n" + "".join(body) + "  return 0;\n}\n"


def _expected(kind, c) -> list[int]:
    if kind == "conv":
        return _model_conv(c).reshape(-1).tolist()
    if kind == "dw":
        return _model_dw(c).reshape(-1).tolist()
    if kind == "fc":
        return cm.fully_connected_s8(*_fc_args(c)).reshape(-1).tolist()
    if kind == "add":
        return cm.elementwise_add_s8(c["a"], c["b"], *c["args"]).reshape(-1).tolist()
    if kind in ("avg", "max"):
        fn = cm.avgpool_s8 if kind == "avg" else cm.max_pool_s8
        return fn(c["x"], c["kernel"], c["stride"], c["pad"], c["amin"], c["amax"], out_hw=c["out_hw"]).reshape(-1).tolist()
    return cm.requantize(c["acc"], c["mult"], c["shift"]).tolist() + [INT32_MAX, INT32_MIN]


def _driver_cases():
    rng = np.random.default_rng(700)
    cases = [("conv", _conv_case(rng, k)) for k in ("3x3", "3x3s2", "1x1", "1x1s2", "any", "any", "grouped")]
    cases += [("dw", _dw_case(rng, m)) for m in (1, 1, 2, 3)]
    cases += [("fc", _fc_case(rng, False)), ("fc", _fc_case(rng, True)), ("fc", _fc_case(rng, True))]
    p = _tflite_add_params(rng)
    a, b = rng.integers(-128, 128, 37), rng.integers(-128, 128, 37)
    cases.append(("add", dict(a=a, b=b, args=tuple(p["args"]) + (-128, 127))))
    cases.append(("add", dict(a=a, b=b, args=(5, 2**31 - 1, 3, -7, 2**30, -31, 25, 3, 2**31 - 1, 30, -100, 100))))
    for kind in ("avg", "max"):
        x = rng.integers(-128, 128, (2, 7, 6, 70), dtype=np.int8)
        cases.append((kind, dict(x=x, kernel=(3, 2), stride=(2, 1), pad=(1, 1), amin=-100, amax=110, out_hw=(4, 7))))
    acc = _edge_int32(rng, 40)
    cases.append(("requant", dict(acc=np.tile(acc, 3), mult=np.repeat([2**31 - 1, 2**30, 1], acc.size),
                                  shift=np.tile(np.linspace(-31, 30, acc.size).astype(int), 3))))  # fmt: skip
    return cases


def _check_driver_output(cases, stdout: str) -> None:
    lines = stdout.strip().splitlines()
    assert len(lines) == len(cases), stdout[-2000:]
    for idx, ((kind, c), line) in enumerate(zip(cases, lines)):
        name, status, *values = line.split()
        assert name == f"case{idx}" and status == "0", line[:200]
        assert [int(v) for v in values] == _expected(kind, c), f"case{idx} ({kind})"


def test_sanitizers_clean(tmp_path):
    """A standalone driver built with -fsanitize=address,undefined runs a few cases of
    every kernel on exactly-sized heap buffers; its outputs match the model."""
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc not installed")
    cases = _driver_cases()
    src = tmp_path / "driver.c"
    src.write_text(_sanitizer_driver(cases))
    exe = tmp_path / "driver"
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    r = _compile([cc, *STRICT, *flags, f"-I{INCLUDE}", *map(str, SOURCES), str(src), "-o", str(exe)])
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                         env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"})  # fmt: skip
    assert run.returncode == 0 and "runtime error" not in run.stderr, run.stderr[-4000:]
    _check_driver_output(cases, run.stdout)


def test_cortex_m4_qemu_matches_model(tmp_path):
    """The same driver cross-compiled for a Cortex-M4 (32-bit int32_t == long, Thumb-2)
    and run on QEMU's mps2-an386 with semihosting gives the model's outputs."""
    cc, qemu = shutil.which("arm-none-eabi-gcc"), shutil.which("qemu-system-arm")
    if cc is None or qemu is None:
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed")
    cases = _driver_cases()
    src = tmp_path / "driver.c"
    src.write_text(_sanitizer_driver(cases))
    elf = tmp_path / "driver.elf"
    target = ["--specs=picolibc.specs", "--oslib=semihost", "--crt0=semihost", "-mcpu=cortex-m4", "-mthumb",
              "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2",
              "-Wl,--defsym=__flash=0x00000000", "-Wl,--defsym=__flash_size=0x400000",
              "-Wl,--defsym=__ram=0x20000000", "-Wl,--defsym=__ram_size=0x400000"]  # fmt: skip
    r = _compile([cc, *STRICT, *target, f"-I{INCLUDE}", *map(str, SOURCES), str(src), "-o", str(elf)])
    if r.returncode != 0 and "picolibc" in r.stderr:
        pytest.skip("picolibc for arm-none-eabi not installed")
    assert r.returncode == 0, r.stderr
    run = subprocess.run(
        [qemu, "-M", "mps2-an386", "-nographic", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    # picolibc's semihosted stdout may reach QEMU's stderr: keep the driver's lines only
    lines = [ln for ln in (run.stdout + "\n" + run.stderr).splitlines() if ln.startswith("case")]
    _check_driver_output(cases, "\n".join(lines))
