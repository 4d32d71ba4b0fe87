"""The stochastic-rounding generator of `train.sgd` (MurmurHash3's fmix32 over a counter),
written independently of tinymlir for the int8 training references of the tests."""

from __future__ import annotations

import numpy as np


def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def uniforms(state: int, count: int) -> np.ndarray:
    """The `count` uniforms in [0, 1) drawn from generator state `state`."""
    return np.array([(fmix32((state + i) & 0xFFFFFFFF) >> 8) / 2.0**24 for i in range(count)])
