"""Numpy kernels shared by the interpreter's op implementations.

Integer kernels run in float64 on purpose: BLAS is fast there, and every product of
8-bit values summed over a layer stays far below 2**53, so the result is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EXACT_INT_LIMIT = 2.0**53


def pad_nchw(x: np.ndarray, pads: Sequence[int], value: float = 0) -> np.ndarray:
    top, left, bottom, right = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(xp: np.ndarray, kh: int, kw: int, strides, dilations, oh: int, ow: int):
    """Yield (i, j, patch[N, C, OH, OW]) for every kernel position."""
    sh, sw = strides
    dh, dw = dilations
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            yield i, j, xp[:, :, r0 : r0 + sh * (oh - 1) + 1 : sh, c0 : c0 + sw * (ow - 1) + 1 : sw]


def conv2d(x: np.ndarray, w: np.ndarray, strides, pads, dilations, groups: int, pad_value: float = 0) -> np.ndarray:
    """NCHW x OIHW grouped convolution in float64, no bias."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = pad_nchw(x.astype(np.float64), pads, pad_value)
    oh = (xp.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (xp.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    og = o // groups
    wg = w.astype(np.float64).reshape(groups, og, cg, kh, kw)
    acc = np.zeros((n, groups, og, oh * ow), dtype=np.float64)
    depthwise = cg == 1 and og == 1
    for i, j, patch in _windows(xp, kh, kw, strides, dilations, oh, ow):
        p = patch.reshape(n, groups, cg, oh * ow)
        if depthwise:
            acc += p * wg[:, :, 0, i, j][None, :, :, None]
        else:
            acc += np.matmul(wg[None, :, :, :, i, j], p)
    return acc.reshape(n, o, oh, ow)


def pool2d(x: np.ndarray, kernel, strides, pads, reduce: str, count_include_pad: bool = False) -> np.ndarray:
    """Max or average pooling over NCHW."""
    kh, kw = kernel
    n, c, h, w = x.shape
    oh = (h + pads[0] + pads[2] - kh) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - kw) // strides[1] + 1
    if reduce == "max":
        fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        xp = pad_nchw(x, pads, fill)
        out = None
        for _, _, patch in _windows(xp, kh, kw, strides, (1, 1), oh, ow):
            out = patch.copy() if out is None else np.maximum(out, patch)
        return out
    xp = pad_nchw(x.astype(np.float64), pads, 0)
    total = sum(patch for _, _, patch in _windows(xp, kh, kw, strides, (1, 1), oh, ow))
    if count_include_pad:
        return (total / (kh * kw)).astype(x.dtype)
    ones = pad_nchw(np.ones((1, 1, h, w)), pads, 0)
    count = sum(patch for _, _, patch in _windows(ones, kh, kw, strides, (1, 1), oh, ow))
    return (total / count).astype(x.dtype)


def round_saturate(real: np.ndarray, zero_point, lo: int, hi: int, dtype) -> np.ndarray:
    """Round half to even, add the zero-point, clamp to [lo, hi], store as dtype."""
    return np.clip(np.rint(real) + zero_point, lo, hi).astype(dtype)


def check_exact(acc: np.ndarray, what: str) -> None:
    if acc.size and np.max(np.abs(acc)) >= EXACT_INT_LIMIT:
        raise ArithmeticError(f"{what}: integer accumulator exceeds 2**53, float64 evaluation is not exact")
