"""numpy twins of tinymlir's C training kernels (`tinymlir/runtime/tk`), bit for bit.

Every function here reproduces the corresponding `tk_*` C function of
`tinymlir/runtime/tk/include/tk.h` exactly: the same float32 operations (each product and
each sum rounded to float32 separately) in the same per-element order. numpy float32
elementwise operations round like C float arithmetic without FMA, so the twins loop in
Python only over the dimensions whose order matters (the accumulation order) and are
vectorized over all others.

Inputs are numpy arrays in the C layouts (NHWC activations and gradients, OHWI weights,
[1, kh, kw, c] depthwise weights); outputs are new arrays, inputs are never modified.
Scalars that the C takes as float (lr, x_scale) are rounded to float32 first, as a C call
would do.

Stochastic rounding state: `rng` is the uint32 counter value (a Python int) or None for
round-to-nearest; the update functions return the new counter value (None stays None).
Optimizer state (momentum SGD, Adam): an `Optimizer` holding float32 arrays, one element
per update index; the `*_opt` functions return it with the new state.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["ConvGeometry", "pack_mask", "unpack_mask", "output_mask", "mask_grad", "add",
           "softmax_xent", "global_avgpool_grad", "sgd_f32", "conv_input_grad", "depthwise_conv_input_grad",
           "conv_weight_grad", "conv_weight_grad_sgd", "depthwise_conv_weight_grad",
           "depthwise_conv_weight_grad_sgd", "bias_grad", "bias_grad_sgd", "fmix32", "sgd_update",
           "Optimizer", "pow_f32", "optim_update", "conv_weight_grad_opt", "depthwise_conv_weight_grad_opt",
           "bias_grad_opt"]

F32 = np.float32
_I32_LIMIT = F32(2147483648.0)
_TWO_M24 = F32(2.0 ** -24)


@dataclass(frozen=True)
class ConvGeometry:
    """Mirror of the C `tk_conv_geometry` (same field order)."""

    n: int
    in_h: int
    in_w: int
    in_c: int
    out_h: int
    out_w: int
    out_c: int
    k_h: int
    k_w: int
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dil_h: int = 1
    dil_w: int = 1

    FIELDS = ("n", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w",
              "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w")

    def astuple(self) -> tuple[int, ...]:
        return tuple(int(getattr(self, f)) for f in self.FIELDS)

    @staticmethod
    def out_size(in_size: int, k: int, stride: int, pad_begin: int, pad_end: int, dil: int) -> int:
        """The forward convolution's output size (floor), as ONNX/PyTorch compute it."""
        return (in_size + pad_begin + pad_end - dil * (k - 1) - 1) // stride + 1


# --------------------------------------------------------------------------- helpers


def _quiet(fn):
    """Run without numpy floating-point warnings: overflow, NaN and Inf are part of the
    kernels' defined behaviour (C raises no signal either)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return wrapper


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=F32)


def _tap_range(k: int, out: int, inp: int, stride: int, pad: int, dil: int):
    """For tap k: (o0, count, i0) such that output o0 + t (t < count) reads input
    i0 + t * stride, all valid; None if the tap never hits the input."""
    off = k * dil - pad  # i = o * stride + off
    o0 = 0 if off >= 0 else (-off + stride - 1) // stride
    if inp - 1 - off < 0:
        return None
    o1 = min(out - 1, (inp - 1 - off) // stride)
    if o1 < o0:
        return None
    return o0, o1 - o0 + 1, o0 * stride + off


def _taps(g: ConvGeometry):
    """Yield (kh, kw, (oh0, nh, ih0), (ow0, nw, iw0)) for every tap with valid positions."""
    for kh in range(g.k_h):
        rh = _tap_range(kh, g.out_h, g.in_h, g.stride_h, g.pad_h, g.dil_h)
        if rh is None:
            continue
        for kw in range(g.k_w):
            rw = _tap_range(kw, g.out_w, g.in_w, g.stride_w, g.pad_w, g.dil_w)
            if rw is None:
                continue
            yield kh, kw, rh, rw


def _in_view(a: np.ndarray, g: ConvGeometry, rh, rw) -> np.ndarray:
    _, nh, ih0 = rh
    _, nw, iw0 = rw
    return a[:, ih0:ih0 + (nh - 1) * g.stride_h + 1:g.stride_h, iw0:iw0 + (nw - 1) * g.stride_w + 1:g.stride_w]


def _out_view(a: np.ndarray, rh, rw) -> np.ndarray:
    oh0, nh, _ = rh
    ow0, nw, _ = rw
    return a[:, oh0:oh0 + nh, ow0:ow0 + nw]


def _im2col(g: ConvGeometry, xr: np.ndarray):
    """(cols [n, out_h, out_w, k_h, k_w, c] float32 with 0 at invalid taps,
    valid [out_h, out_w, k_h, k_w] bool)."""
    cols = np.zeros((g.n, g.out_h, g.out_w, g.k_h, g.k_w, xr.shape[-1]), F32)
    valid = np.zeros((g.out_h, g.out_w, g.k_h, g.k_w), bool)
    for kh, kw, rh, rw in _taps(g):
        _out_view(cols, rh, rw)[..., kh, kw, :] = _in_view(xr, g, rh, rw)
        valid[rh[0]:rh[0] + rh[1], rw[0]:rw[0] + rw[1], kh, kw] = True
    return cols, valid


def _selection(channels, count: int) -> np.ndarray:
    if channels is None:
        return np.arange(count, dtype=np.int64)
    sel = np.asarray(channels, dtype=np.int64).ravel()
    if sel.size and (np.any(np.diff(sel) <= 0) or sel[0] < 0 or sel[-1] >= count):
        raise ValueError(f"channels must be ascending, distinct and in [0, {count})")
    return sel


def _check_depthwise(g: ConvGeometry) -> None:
    if g.in_c != g.out_c:
        raise ValueError(f"depthwise kernels need in_c == out_c (channel multiplier 1), got {g.in_c} and {g.out_c}")


def _real_x(x: np.ndarray, x_offset: int, x_scale: float) -> np.ndarray:
    """xr = (float)(x + x_offset) * x_scale, elementwise (int32 add, one float32 product)."""
    return (np.asarray(x).astype(np.int32) + np.int32(x_offset)).astype(F32) * F32(x_scale)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, elementwise on uint32 (wrapping)."""
    h = np.array(h, dtype=np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _round_update(q: np.ndarray, t: np.ndarray, fin: np.ndarray, rng, idx: np.ndarray, qmin: int,
                  qmax: int) -> np.ndarray:
    """q rounded and saturated from the float32 step t where `fin` (tk.h's SGD rule after
    t), q elsewhere; int64."""
    t = np.clip(np.where(fin, t, F32(0)), -_I32_LIMIT, _I32_LIMIT).astype(F32)
    if rng is None:
        new = q - np.rint(t).astype(np.int64)
    else:
        seed = (np.asarray(idx, dtype=np.uint64) + np.uint64(int(rng) & 0xFFFFFFFF)) & np.uint64(0xFFFFFFFF)
        u = (fmix32(seed.astype(np.uint32)) >> np.uint32(8)).astype(F32) * _TWO_M24
        v = np.clip(u - t, -_I32_LIMIT, _I32_LIMIT).astype(F32)
        new = q + np.floor(v).astype(np.int64)
    return np.where(fin, np.clip(new, qmin, qmax), q)


@_quiet
def sgd_update(q: np.ndarray, gw: np.ndarray, f: np.ndarray, lr: float, rng, idx: np.ndarray,
               qmin: int, qmax: int) -> tuple[np.ndarray, int]:
    """The SGD rule of tk.h, elementwise: q (integers), gradient gw and channel factor f
    (float32, broadcast together), update indices idx (for stochastic rounding, rng is the
    counter state; None = nearest). Returns (new q as int64, number skipped)."""
    q = np.asarray(q).astype(np.int64)
    gs = np.asarray(gw, F32) * np.asarray(f, F32)
    t = F32(lr) * gs
    fin = np.isfinite(t)
    return _round_update(q, t, fin, rng, idx, qmin, qmax), int(np.count_nonzero(~fin))


OPTIMIZERS = ("sgd", "sgdm", "adam")


@dataclass(frozen=True)
class Optimizer:
    """Mirror of the C `tk_optimizer`: `kind` "sgd", "sgdm" or "adam", its float32
    hyper-parameters, Adam's step count, and the state arrays (float32, one element per
    update index, flat; None where unused)."""

    kind: str = "sgd"
    momentum: float = 0.0
    beta1: float = 0.0
    beta2: float = 0.0
    eps: float = 0.0
    step: int = 0
    velocity: np.ndarray | None = None
    m: np.ndarray | None = None
    v: np.ndarray | None = None

    def state(self) -> dict[str, np.ndarray]:
        """The state arrays this optimizer uses, by field name."""
        names = {"sgd": (), "sgdm": ("velocity",), "adam": ("m", "v")}[self.kind]
        return {n: getattr(self, n) for n in names}


def pow_f32(b: float, t: int) -> np.float32:
    """b^t in float32 by binary exponentiation, as tk.h's pow_f32 (1 for t <= 0)."""
    r, b, n = F32(1), F32(b), max(int(t), 0)
    while n:
        if n & 1:
            r = F32(r * b)
        b = F32(b * b)
        n >>= 1
    return r


@_quiet
def optim_update(q: np.ndarray, gw: np.ndarray, f: np.ndarray, lr: float, rng, idx: np.ndarray,
                 qmin: int, qmax: int, opt: Optimizer | None) -> tuple[np.ndarray, int, Optimizer | None]:
    """The update rule of tk.h's *_opt kernels, elementwise, as `sgd_update` with an
    optimizer: its state element of each updated element is at the element's update index
    (`idx`). Returns (new q as int64, number skipped, the optimizer with its new state)."""
    if opt is None or opt.kind == "sgd":
        new, skipped = sgd_update(q, gw, f, lr, rng, idx, qmin, qmax)
        return new, skipped, opt
    q = np.asarray(q).astype(np.int64)
    idx = np.asarray(idx, dtype=np.int64)
    gs = np.asarray(gw, F32) * np.asarray(f, F32)
    lr = F32(lr)
    if opt.kind == "sgdm":
        assert opt.velocity is not None
        vn = F32(opt.momentum) * np.asarray(opt.velocity, F32)[idx] + gs
        t = lr * vn
        fin = np.isfinite(t) & np.isfinite(vn)
        new_state = {"velocity": vn}
    elif opt.kind == "adam":
        assert opt.m is not None and opt.v is not None
        b1, b2 = F32(opt.beta1), F32(opt.beta2)
        c1, c2 = F32(F32(1) - b1), F32(F32(1) - b2)
        bc1, bc2 = F32(F32(1) - pow_f32(b1, opt.step)), F32(F32(1) - pow_f32(b2, opt.step))
        mn = b1 * np.asarray(opt.m, F32)[idx] + c1 * gs
        g2 = gs * gs
        vn = b2 * np.asarray(opt.v, F32)[idx] + c2 * g2
        mh = mn / bc1
        vh = vn / bc2
        d = np.sqrt(vh) + F32(opt.eps)
        t = lr * (mh / d)
        fin = np.isfinite(t) & np.isfinite(mn) & np.isfinite(vn)
        new_state = {"m": mn, "v": vn}
    else:
        raise ValueError(f"unknown optimizer kind {opt.kind!r}")
    new = _round_update(q, t.astype(F32), fin, rng, idx, qmin, qmax)
    changes = {}
    for name, value in new_state.items():
        arr = np.array(getattr(opt, name), dtype=F32, copy=True).reshape(-1)
        flat_idx, flat_new, flat_fin = idx.reshape(-1), value.astype(F32).reshape(-1), fin.reshape(-1)
        arr[flat_idx[flat_fin]] = flat_new[flat_fin]
        changes[name] = arr.reshape(np.shape(getattr(opt, name)))
    return new, int(np.count_nonzero(~fin)), replace(opt, **changes)


def _next_rng(rng, n: int):
    return None if rng is None else (int(rng) + int(n)) & 0xFFFFFFFF


# --------------------------------------------------------------------------- elementwise


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """bool array -> the C bit-packed mask bytes (element i = bit i & 7 of byte i >> 3)."""
    return np.packbits(np.asarray(mask, bool).ravel(), bitorder="little")


def unpack_mask(packed: np.ndarray, count: int) -> np.ndarray:
    """C mask bytes -> flat bool array of `count` elements."""
    return np.unpackbits(np.asarray(packed, np.uint8).ravel(), count=count, bitorder="little").astype(bool)


def output_mask(y: np.ndarray, act_min: int, act_max: int) -> np.ndarray:
    """tk_output_mask_s8, unpacked: act_min < y < act_max (strict), same shape as y."""
    y = np.asarray(y).astype(np.int32)
    return (y > int(act_min)) & (y < int(act_max))


@_quiet
def mask_grad(g: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """tk_mask_grad_f32: g where mask else +0.0f (mask: bool array of g's shape or size)."""
    g = np.asarray(g, F32)
    return np.where(np.asarray(mask, bool).reshape(g.shape), g, F32(0)).astype(F32)


@_quiet
def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """tk_add_f32."""
    return (np.asarray(a, F32) + np.asarray(b, F32)).astype(F32)


@_quiet
def global_avgpool_grad(dy: np.ndarray, h: int, w: int) -> np.ndarray:
    """tk_global_avgpool_grad_f32: dy [n, c] -> dx [n, h, w, c] = dy / (float)(h * w)."""
    dy = np.asarray(dy, F32)
    q = dy / F32(h * w)
    return np.ascontiguousarray(np.broadcast_to(q[:, None, None, :], (dy.shape[0], h, w, dy.shape[1])))


@_quiet
def sgd_f32(p: np.ndarray, g: np.ndarray, lr: float) -> tuple[np.ndarray, int]:
    """tk_sgd_f32: (new p, skipped) with p - lr * g where lr * g is finite."""
    p = np.asarray(p, F32)
    t = F32(lr) * np.asarray(g, F32)
    fin = np.isfinite(t)
    return np.where(fin, p - np.where(fin, t, F32(0)), p).astype(F32), int(np.count_nonzero(~fin))


# --------------------------------------------------------------------------- loss


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _log(v: float) -> float:
    if v == 0.0:
        return -math.inf
    if v < 0.0:
        return math.nan
    return math.log(v)


@_quiet
def softmax_xent(logits: np.ndarray, label: int) -> tuple[np.float32, np.ndarray]:
    """tk_softmax_xent_f32 (batch 1, double precision, libm exp/log via Python's math):
    (loss float32, grad float32 [k])."""
    z = [float(v) for v in np.asarray(logits, F32).ravel()]
    m = z[0]
    for v in z[1:]:
        if v > m:
            m = v
    s = 0.0
    for v in z:
        s = s + _exp(v - m)
    lse = _log(s)
    grad = np.array([_exp((v - m) - lse) - (1.0 if j == label else 0.0) for j, v in enumerate(z)], np.float64)
    return F32(lse - (z[label] - m)), grad.astype(F32)


# --------------------------------------------------------------------------- input gradients


@_quiet
def conv_input_grad(g: ConvGeometry, dy: np.ndarray, w: np.ndarray, w_scale: np.ndarray) -> np.ndarray:
    """tk_conv_input_grad_f32: dy [n, out_h, out_w, out_c], w OHWI int8, w_scale [out_c]
    -> dx [n, in_h, in_w, in_c]."""
    dy = _f32(dy).reshape(g.n, g.out_h, g.out_w, g.out_c)
    wf = np.asarray(w).reshape(g.out_c, g.k_h, g.k_w, g.in_c).astype(F32)
    gs = dy * _f32(w_scale).reshape(g.out_c)
    dx = np.zeros((g.n, g.in_h, g.in_w, g.in_c), F32)
    for kh, kw, rh, rw in _taps(g):
        acc = _in_view(dx, g, rh, rw)
        gsv = _out_view(gs, rh, rw)
        tmp = np.empty(acc.shape, F32)
        for co in range(g.out_c):
            np.multiply(gsv[..., co:co + 1], wf[co, kh, kw], out=tmp)
            np.add(acc, tmp, out=acc)
    return dx


@_quiet
def depthwise_conv_input_grad(g: ConvGeometry, dy: np.ndarray, w: np.ndarray, w_scale: np.ndarray) -> np.ndarray:
    """tk_depthwise_conv_input_grad_f32: w [1, k_h, k_w, c] int8, w_scale [c]."""
    _check_depthwise(g)
    c = g.in_c
    dy = _f32(dy).reshape(g.n, g.out_h, g.out_w, c)
    wf = np.asarray(w).reshape(g.k_h, g.k_w, c).astype(F32)
    gs = dy * _f32(w_scale).reshape(c)
    dx = np.zeros((g.n, g.in_h, g.in_w, c), F32)
    for kh, kw, rh, rw in _taps(g):
        acc = _in_view(dx, g, rh, rw)
        np.add(acc, _out_view(gs, rh, rw) * wf[kh, kw], out=acc)
    return dx


# --------------------------------------------------------------------------- fused gradient + SGD


@_quiet
def conv_weight_grad(g: ConvGeometry, dy: np.ndarray, x: np.ndarray, x_offset: int, x_scale: float,
                     channels=None) -> np.ndarray:
    """The float32 weight gradient that tk_conv_weight_grad_sgd_s8 computes, for the
    selected output channels: [n_sel, k_h, k_w, in_c]."""
    sel = _selection(channels, g.out_c)
    dy = _f32(dy).reshape(g.n, g.out_h, g.out_w, g.out_c)
    xr = _real_x(x, x_offset, x_scale).reshape(g.n, g.in_h, g.in_w, g.in_c)
    cols, valid = _im2col(g, xr)
    kk = g.k_h * g.k_w * g.in_c
    cols = cols.reshape(g.n, g.out_h, g.out_w, kk)
    invalid = ~np.repeat(valid.reshape(g.out_h, g.out_w, g.k_h * g.k_w), g.in_c, axis=-1)
    gw = np.zeros((sel.size, kk), F32)
    dsel = dy[..., sel]
    for b in range(g.n):
        for oh in range(g.out_h):
            for ow in range(g.out_w):
                d = dsel[b, oh, ow]
                nz = d != 0
                if not nz.any():
                    continue
                rows = slice(None) if nz.all() else np.flatnonzero(nz)
                contrib = d[rows, None] * cols[b, oh, ow][None, :]
                bad = invalid[oh, ow]
                if bad.any():  # invalid taps add nothing (matters for non-finite d)
                    contrib[:, bad] = 0
                gw[rows] = gw[rows] + contrib
    return gw.reshape(sel.size, g.k_h, g.k_w, g.in_c)


@_quiet
def conv_weight_grad_sgd(g: ConvGeometry, dy: np.ndarray, x: np.ndarray, x_offset: int, x_scale: float,
                         w: np.ndarray, channels, factor: np.ndarray, lr: float, rng):
    """tk_conv_weight_grad_sgd_s8: -> (new w int8 OHWI, new rng or None, skipped)."""
    return conv_weight_grad_opt(g, dy, x, x_offset, x_scale, w, channels, factor, lr, rng, None)[:3]


@_quiet
def conv_weight_grad_opt(g: ConvGeometry, dy: np.ndarray, x: np.ndarray, x_offset: int, x_scale: float,
                         w: np.ndarray, channels, factor: np.ndarray, lr: float, rng, opt: Optimizer | None):
    """tk_conv_weight_grad_opt_s8: -> (new w int8 OHWI, new rng or None, skipped, new optimizer)."""
    sel = _selection(channels, g.out_c)
    gw = conv_weight_grad(g, dy, x, x_offset, x_scale, sel)
    kk = g.k_h * g.k_w * g.in_c
    new_w = np.array(w, dtype=np.int8, copy=True).reshape(g.out_c, kk)
    idx = np.arange(sel.size * kk, dtype=np.uint64).reshape(sel.size, kk)
    f = _f32(factor).reshape(g.out_c)[sel][:, None]
    q, skipped, opt = optim_update(new_w[sel], gw.reshape(sel.size, kk), f, lr, rng, idx, -127, 127, opt)
    new_w[sel] = q.astype(np.int8)
    return new_w.reshape(np.shape(w)), _next_rng(rng, sel.size * kk), skipped, opt


@_quiet
def depthwise_conv_weight_grad(g: ConvGeometry, dy: np.ndarray, x: np.ndarray, x_offset: int, x_scale: float,
                               channels=None) -> np.ndarray:
    """The float32 gradient that tk_depthwise_conv_weight_grad_sgd_s8 computes:
    [k_h, k_w, n_sel]."""
    _check_depthwise(g)
    c = g.out_c
    sel = _selection(channels, c)
    dy = _f32(dy).reshape(g.n, g.out_h, g.out_w, c)[..., sel]
    xr = _real_x(x, x_offset, x_scale).reshape(g.n, g.in_h, g.in_w, c)[..., sel]
    cols, valid = _im2col(g, xr)
    gw = np.zeros((g.k_h, g.k_w, sel.size), F32)
    for b in range(g.n):
        for oh in range(g.out_h):
            for ow in range(g.out_w):
                d = dy[b, oh, ow]
                nz = d != 0
                if not nz.any():
                    continue
                contrib = d * cols[b, oh, ow]
                keep = nz[None, None, :] & valid[oh, ow][:, :, None]
                gw = gw + np.where(keep, contrib, F32(0))
    return gw


@_quiet
def depthwise_conv_weight_grad_sgd(g: ConvGeometry, dy: np.ndarray, x: np.ndarray, x_offset: int, x_scale: float,
                                   w: np.ndarray, channels, factor: np.ndarray, lr: float, rng):
    """tk_depthwise_conv_weight_grad_sgd_s8: -> (new w int8 [1, k_h, k_w, c], new rng, skipped)."""
    return depthwise_conv_weight_grad_opt(g, dy, x, x_offset, x_scale, w, channels, factor, lr, rng, None)[:3]


@_quiet
def depthwise_conv_weight_grad_opt(g: ConvGeometry, dy: np.ndarray, x: np.ndarray, x_offset: int, x_scale: float,
                                   w: np.ndarray, channels, factor: np.ndarray, lr: float, rng,
                                   opt: Optimizer | None):
    """tk_depthwise_conv_weight_grad_opt_s8: -> (new w, new rng, skipped, new optimizer)."""
    c = g.out_c
    sel = _selection(channels, c)
    gw = depthwise_conv_weight_grad(g, dy, x, x_offset, x_scale, sel).reshape(g.k_h * g.k_w, sel.size)
    new_w = np.array(w, dtype=np.int8, copy=True).reshape(g.k_h * g.k_w, c)
    idx = (np.arange(g.k_h * g.k_w, dtype=np.uint64)[:, None] * np.uint64(sel.size)
           + np.arange(sel.size, dtype=np.uint64)[None, :])
    f = _f32(factor).reshape(c)[sel][None, :]
    q, skipped, opt = optim_update(new_w[:, sel], gw, f, lr, rng, idx, -127, 127, opt)
    new_w[:, sel] = q.astype(np.int8)
    return new_w.reshape(np.shape(w)), _next_rng(rng, sel.size * g.k_h * g.k_w), skipped, opt


@_quiet
def bias_grad(dy2d: np.ndarray, channels=None) -> np.ndarray:
    """The float32 bias gradient of tk_bias_grad_sgd_s32 for the selected channels."""
    dy2d = _f32(dy2d)
    sel = _selection(channels, dy2d.shape[1])
    cols = dy2d[:, sel]
    gw = np.zeros(sel.size, F32)
    for r in range(cols.shape[0]):
        gw = gw + cols[r]
    return gw


@_quiet
def bias_grad_sgd(dy2d: np.ndarray, b: np.ndarray, channels, factor: np.ndarray, lr: float, rng):
    """tk_bias_grad_sgd_s32: dy2d [rows, c], b int32 [c] -> (new b, new rng, skipped)."""
    return bias_grad_opt(dy2d, b, channels, factor, lr, rng, None)[:3]


@_quiet
def bias_grad_opt(dy2d: np.ndarray, b: np.ndarray, channels, factor: np.ndarray, lr: float, rng,
                  opt: Optimizer | None):
    """tk_bias_grad_opt_s32: -> (new b, new rng, skipped, new optimizer)."""
    dy2d = _f32(dy2d)
    c = dy2d.shape[1]
    sel = _selection(channels, c)
    gw = bias_grad(dy2d, sel)
    new_b = np.array(b, dtype=np.int32, copy=True).reshape(c)
    f = _f32(factor).reshape(c)[sel]
    q, skipped, opt = optim_update(new_b[sel], gw, f, lr, rng, np.arange(sel.size, dtype=np.uint64),
                                   -(2**31 - 1), 2**31 - 1, opt)
    new_b[sel] = q.astype(np.int32)
    return new_b.reshape(np.shape(b)), _next_rng(rng, sel.size), skipped, opt
