"""Numpy model of the integer semantics of the CMSIS-NN kernels tinymlir calls.

Bit-exact with CMSIS-NN's pure C path (default double-rounding requantization,
``CMSIS_NN_USE_SINGLE_ROUNDING`` not defined) and with tinymlir's portable C
implementation in ``tinymlir/runtime/cmsisnn``; the interpreter uses it for the
``cmsisnn`` dialect.

Conventions (same as CMSIS-NN):

* activations are NHWC int8, convolution filters OHWI, depthwise filters
  ``[1, KH, KW, C_IN * ch_mult]``, fully connected weights ``[C_OUT, K]``;
* ``input_offset = -z_x``, ``filter_offset = -z_w``, ``output_offset = +z_y``;
* ``stride``, ``padding`` and ``dilation`` are ``(h, w)`` pairs, ``padding``
  being the *top/left* padding only. CMSIS-NN is told the output size
  explicitly; pass it as ``out_hw=(OH, OW)``. When omitted it is computed with
  the same padding at the bottom/right, i.e.
  ``OH = (H + 2*pad_h - dil_h*(KH-1) - 1) // stride_h + 1``. Window elements
  beyond any edge of the input are skipped (they contribute as if the input
  were ``-input_offset``), so asymmetric (e.g. ONNX ``SAME_UPPER``) padding is
  expressed by the top/left pad plus a larger ``out_hw``;
* every accumulator is ``bias + sum((x + input_offset) * (w + filter_offset))``
  reduced modulo 2**32, then ``requantize`` + ``output_offset`` (wrapping) and
  a clamp to ``[act_min, act_max]``.

Integer sums are computed in float64 (BLAS); every product of offset 8-bit
values is below 2**16, so sums stay exact for any realistic depth (< 2**37
terms). The fixed-point steps use int64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "quantize_multiplier",
    "requantize",
    "convolve_s8",
    "depthwise_conv_s8",
    "fully_connected_s8",
    "elementwise_add_s8",
    "avgpool_s8",
    "max_pool_s8",
    "doubling_high_mult",
    "doubling_high_mult_no_sat",
    "divide_by_power_of_two",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _wrap32(v: np.ndarray) -> np.ndarray:
    """Reduce int64 values modulo 2**32 into the int32 range (two's complement)."""
    v = np.asarray(v, dtype=np.int64)
    return ((v + 2**31) & 0xFFFFFFFF) - 2**31


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    h, w = v
    return int(h), int(w)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``real ~= multiplier * 2**(shift - 31)``.

    ``multiplier`` is in ``[2**30, 2**31)`` for positive ``real`` (negated for a
    negative one); ``real == 0`` gives ``(0, 0)``; reals below ``2**-32`` flush to
    ``(0, 0)`` like TFLite (shift < -31). The mantissa is rounded half away from
    zero (``std::round``).
    """
    real = float(real)
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real):
        raise ValueError(f"cannot quantize multiplier {real!r}")
    q, shift = math.frexp(real)  # real = q * 2**shift, 0.5 <= |q| < 1
    scaled = abs(q) * 2.0**31  # exact: scaling by a power of two
    q_fixed = int(math.floor(scaled + 0.5))  # round half away from zero, on |q|
    if q < 0:
        q_fixed = -q_fixed
    if abs(q_fixed) == 2**31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def doubling_high_mult_no_sat(a, b) -> np.ndarray:
    """``arm_nn_doubling_high_mult_no_sat``: ``(a*b + 2**30) >> 31`` wrapped to int32."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    return _wrap32((a * b + (1 << 30)) >> 31)


def doubling_high_mult(a, b) -> np.ndarray:
    """``arm_nn_doubling_high_mult``: as above, but INT32_MIN*INT32_MIN saturates."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    r = doubling_high_mult_no_sat(a, b)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), r)


def divide_by_power_of_two(x, exponent) -> np.ndarray:
    """``arm_nn_divide_by_power_of_two``: ``x / 2**exponent``, ties away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = np.left_shift(np.int64(1), e) - 1
    remainder = x & mask
    result = x >> e
    threshold = (mask >> 1) + (result < 0)
    return result + (remainder > threshold)


def requantize(acc, multiplier, shift) -> np.ndarray:
    """``arm_nn_requantize`` elementwise, with numpy broadcasting.

    ``acc`` holds int32 values; ``shift`` in [-31, 31]. Returns int32.
    """
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if np.any(s > 31) or np.any(s < -31):
        raise ValueError("shift must be in [-31, 31]")
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    scaled = _wrap32(acc * np.left_shift(np.int64(1), left))
    return divide_by_power_of_two(doubling_high_mult_no_sat(scaled, m), right).astype(np.int32)


def _finish(acc: np.ndarray, multipliers, shifts, output_offset: int, act_min: int, act_max: int) -> np.ndarray:
    """int64 accumulators -> int8 outputs (wrap, requantize, offset, clamp)."""
    r = requantize(_wrap32(acc), multipliers, shifts).astype(np.int64)
    r = _wrap32(r + int(output_offset))
    return np.clip(r, act_min, act_max).astype(np.int8)


def _out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _patches(xo: np.ndarray, kernel, stride, padding, dilation, out_hw, fill: float) -> np.ndarray:
    """Window gather: [N, OH, OW, KH, KW, C] from NHWC ``xo`` (float64).

    Positions outside the input read ``fill``.
    """
    n, h, w, c = xo.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    oh, ow = out_hw
    rows = np.arange(oh)[:, None] * sh + np.arange(kh)[None, :] * dh - ph  # [OH, KH]
    cols = np.arange(ow)[:, None] * sw + np.arange(kw)[None, :] * dw - pw  # [OW, KW]
    lo_r, hi_r = min(0, int(rows.min())), max(h, int(rows.max()) + 1)
    lo_c, hi_c = min(0, int(cols.min())), max(w, int(cols.max()) + 1)
    xp = np.full((n, hi_r - lo_r, hi_c - lo_c, c), fill, dtype=np.float64)
    xp[:, -lo_r : -lo_r + h, -lo_c : -lo_c + w, :] = xo
    g = xp[:, (rows - lo_r)[:, :, None, None], (cols - lo_c)[None, None, :, :], :]  # [N, OH, KH, OW, KW, C]
    return g.transpose(0, 1, 3, 2, 4, 5)


def _resolve_out_hw(x_shape, kernel, stride, padding, dilation, out_hw) -> tuple[int, int]:
    if out_hw is not None:
        oh, ow = _pair(out_hw)
    else:
        oh = _out_size(x_shape[1], kernel[0], stride[0], padding[0], dilation[0])
        ow = _out_size(x_shape[2], kernel[1], stride[1], padding[1], dilation[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"empty output {oh}x{ow}")
    return oh, ow


def _bias(bias, n: int) -> np.ndarray:
    if bias is None:
        return np.zeros(n, dtype=np.int64)
    b = np.asarray(bias, dtype=np.int64).reshape(-1)
    if b.shape[0] != n:
        raise ValueError(f"bias has {b.shape[0]} values, expected {n}")
    return b


def convolve_s8(
    x_nhwc,
    w_ohwi,
    bias,
    input_offset: int,
    output_offset: int,
    stride,
    padding,
    dilation,
    act_min: int,
    act_max: int,
    multipliers,
    shifts,
    *,
    out_hw: Sequence[int] | None = None,
) -> np.ndarray:
    """``arm_convolve_wrapper_s8``: NHWC int8 x OHWI int8 -> NHWC int8.

    ``w.shape[3]`` may divide ``C_IN`` (grouped convolution, ``C_IN // w.shape[3]``
    groups). ``multipliers``/``shifts`` have one value per output channel (or a
    scalar).
    """
    x = np.asarray(x_nhwc)
    w = np.asarray(w_ohwi)
    n, h, wd, cin = x.shape
    cout, kh, kw, ck = w.shape
    if cin % ck or cout % (cin // ck):
        raise ValueError(f"incompatible input channels {cin} / filter channels {ck} / outputs {cout}")
    groups = cin // ck
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    oh, ow = _resolve_out_hw(x.shape, (kh, kw), stride, padding, dilation, out_hw)
    xo = x.astype(np.float64) + float(input_offset)
    pt = _patches(xo, (kh, kw), stride, padding, dilation, (oh, ow), 0.0)  # [N, OH, OW, KH, KW, CIN]
    og = cout // groups
    acc = np.empty((n, oh, ow, cout), dtype=np.float64)
    for g in range(groups):
        cols = pt[..., g * ck : (g + 1) * ck].reshape(n * oh * ow, kh * kw * ck)
        wg = w[g * og : (g + 1) * og].astype(np.float64).reshape(og, kh * kw * ck)
        acc[..., g * og : (g + 1) * og] = (cols @ wg.T).reshape(n, oh, ow, og)
    acc64 = np.rint(acc).astype(np.int64) + _bias(bias, cout)
    return _finish(acc64, multipliers, shifts, output_offset, act_min, act_max)


def depthwise_conv_s8(
    x_nhwc,
    w_1hwc,
    bias,
    input_offset: int,
    output_offset: int,
    ch_mult: int,
    stride,
    padding,
    dilation,
    act_min: int,
    act_max: int,
    multipliers,
    shifts,
    *,
    out_hw: Sequence[int] | None = None,
) -> np.ndarray:
    """``arm_depthwise_conv_wrapper_s8``: output channel ``oc`` uses input channel
    ``oc // ch_mult`` and filter channel ``oc`` of ``w[0, :, :, :]``."""
    x = np.asarray(x_nhwc)
    w = np.asarray(w_1hwc)
    n, h, wd, cin = x.shape
    if w.ndim == 4:
        if w.shape[0] != 1:
            raise ValueError("depthwise filter must be [1, KH, KW, C_OUT]")
        w = w[0]
    kh, kw, cout = w.shape
    if cout != cin * int(ch_mult):
        raise ValueError(f"C_OUT {cout} != C_IN {cin} * ch_mult {ch_mult}")
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    oh, ow = _resolve_out_hw(x.shape, (kh, kw), stride, padding, dilation, out_hw)
    xo = x.astype(np.float64) + float(input_offset)
    pt = _patches(xo, (kh, kw), stride, padding, dilation, (oh, ow), 0.0)  # [N, OH, OW, KH, KW, CIN]
    wr = w.astype(np.float64).reshape(kh, kw, cin, int(ch_mult))
    acc = np.einsum("nhwabc,abcm->nhwcm", pt, wr, optimize=True).reshape(n, oh, ow, cout)
    acc64 = np.rint(acc).astype(np.int64) + _bias(bias, cout)
    return _finish(acc64, multipliers, shifts, output_offset, act_min, act_max)


def fully_connected_s8(
    x_nk,
    w_mk,
    bias,
    input_offset: int,
    filter_offset: int,
    output_offset: int,
    act_min: int,
    act_max: int,
    multiplier,
    shift,
) -> np.ndarray:
    """``arm_fully_connected_s8`` (scalar multiplier/shift) or
    ``arm_fully_connected_per_channel_s8`` (arrays of length M): [N, K] x [M, K] -> [N, M]."""
    x = np.asarray(x_nk)
    w = np.asarray(w_mk)
    x = x.reshape(x.shape[0], -1)
    m, k = w.shape
    if x.shape[1] != k:
        raise ValueError(f"input depth {x.shape[1]} != filter depth {k}")
    xo = x.astype(np.float64) + float(input_offset)
    wo = w.astype(np.float64) + float(filter_offset)
    acc64 = np.rint(xo @ wo.T).astype(np.int64) + _bias(bias, m)
    return _finish(acc64, multiplier, shift, output_offset, act_min, act_max)


def elementwise_add_s8(
    a,
    b,
    in1_offset: int,
    in1_mult: int,
    in1_shift: int,
    in2_offset: int,
    in2_mult: int,
    in2_shift: int,
    left_shift: int,
    out_offset: int,
    out_mult: int,
    out_shift: int,
    act_min: int,
    act_max: int,
) -> np.ndarray:
    """``arm_elementwise_add_s8`` (inputs broadcast with numpy rules; the C
    function itself needs equal sizes)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    scale = np.int64(1) << int(left_shift)
    i1 = requantize(_wrap32((a + int(in1_offset)) * scale), in1_mult, in1_shift).astype(np.int64)
    i2 = requantize(_wrap32((b + int(in2_offset)) * scale), in2_mult, in2_shift).astype(np.int64)
    s = requantize(_wrap32(i1 + i2), out_mult, out_shift).astype(np.int64)
    s = _wrap32(s + int(out_offset))
    return np.clip(s, act_min, act_max).astype(np.int8)


def _pool_prepare(x_nhwc, kernel, stride, padding, out_hw):
    x = np.asarray(x_nhwc)
    kernel, stride, padding = _pair(kernel), _pair(stride), _pair(padding)
    oh, ow = _resolve_out_hw(x.shape, kernel, stride, padding, (1, 1), out_hw)
    return x, kernel, stride, padding, (oh, ow)


def avgpool_s8(
    x_nhwc,
    kernel,
    stride,
    padding,
    act_min: int,
    act_max: int,
    *,
    out_hw: Sequence[int] | None = None,
) -> np.ndarray:
    """``arm_avgpool_s8``: mean over the window elements inside the input,
    rounded half away from zero. Default output size ``(H + 2*pad - K)//stride + 1``."""
    x, kernel, stride, padding, ohw = _pool_prepare(x_nhwc, kernel, stride, padding, out_hw)
    sums = _patches(x.astype(np.float64), kernel, stride, padding, (1, 1), ohw, 0.0).sum(axis=(3, 4))
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.float64)
    counts = _patches(ones, kernel, stride, padding, (1, 1), ohw, 0.0).sum(axis=(3, 4))
    s = np.rint(sums).astype(np.int64)
    c = np.rint(counts).astype(np.int64)
    if np.any(c == 0):
        raise ValueError("a pooling window lies entirely outside the input")
    mag = (np.abs(s) + c // 2) // c  # C truncating division of the rounded magnitude
    avg = np.where(s > 0, mag, -mag)
    return np.clip(avg, act_min, act_max).astype(np.int8)


def max_pool_s8(
    x_nhwc,
    kernel,
    stride,
    padding,
    act_min: int,
    act_max: int,
    *,
    out_hw: Sequence[int] | None = None,
) -> np.ndarray:
    """``arm_max_pool_s8``: max over the window elements inside the input, then clamp."""
    x, kernel, stride, padding, ohw = _pool_prepare(x_nhwc, kernel, stride, padding, out_hw)
    m = _patches(x.astype(np.float64), kernel, stride, padding, (1, 1), ohw, -np.inf).max(axis=(3, 4))
    if np.any(np.isneginf(m)):
        raise ValueError("a pooling window lies entirely outside the input")
    return np.clip(m, act_min, act_max).astype(np.int8)
