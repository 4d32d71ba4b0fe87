"""Calibration tasks: the labelled data the scheme search fine-tunes on.

A task is two labelled sets of float NCHW samples: `fit` to train on, `eval` to measure
accuracy on. The built-in task is scikit-learn's digits (no download), shaped to any model
input: each 8x8 image (values 0..16) becomes v / 8 - 1 in [-1, 1], upscaled by nearest
neighbour to the model's H x W and repeated over its channels. It draws from the *training*
part of the fixed split the accuracy benchmark uses (`digits_split`: 75/25 stratified,
random_state 0), so a search never sees the benchmark's test images.

A user task is an .npz with `x` (N, C, H, W float32, the model's float input) and `y`
(N integer labels); its first `fit` samples train, the next `eval` samples measure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TaskError(ValueError):
    """A task that cannot be used (one line)."""


@dataclass(frozen=True)
class Task:
    name: str
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray

    def fingerprint(self) -> str:
        """A hash of the data (part of the search's cache key)."""
        h = hashlib.sha256()
        for a in (self.x_fit, self.y_fit, self.x_eval, self.y_eval):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


def digits_split(test_size: float = 0.25, random_state: int = 0):
    """(x_train, y_train, x_test, y_test): the 8x8 digits (float32, 0..16) and labels, the
    fixed stratified split of the accuracy benchmark."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(d.images.astype(np.float32), d.target.astype(np.int64),
                                              test_size=test_size, random_state=random_state, stratify=d.target)
    return x_tr, y_tr, x_te, y_te


def digits_to_input(images: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """8x8 digits (N, 8, 8), values 0..16 -> (N, C, H, W) float32 in [-1, 1]: v / 8 - 1,
    nearest-neighbour resampling to H x W, the gray channel repeated C times."""
    c, h, w = shape
    x = np.asarray(images, np.float32)
    if x.ndim == 2:
        x = x[None]
    x = x / np.float32(8.0) - np.float32(1.0)
    rows = np.arange(h) * x.shape[1] // h
    cols = np.arange(w) * x.shape[2] // w
    x = x[:, rows][:, :, cols]
    return np.ascontiguousarray(np.broadcast_to(x[:, None], (x.shape[0], c, h, w)))


def digits_task(shape: tuple[int, int, int], n_fit: int = 500, n_eval: int = 500, seed: int = 0) -> Task:
    """`n_fit` + `n_eval` images of the benchmark's training split (a stratified split of
    it), shaped to the model's (C, H, W) input."""
    from sklearn.model_selection import train_test_split

    x, y, _, _ = digits_split()
    if n_fit + n_eval > len(x):
        raise TaskError(f"digits task: {n_fit} + {n_eval} samples asked, the split has {len(x)}")
    x_fit, x_eval, y_fit, y_eval = train_test_split(x, y, train_size=n_fit, test_size=n_eval,
                                                    random_state=seed, stratify=y)
    return Task(f"digits{n_fit}+{n_eval}", digits_to_input(x_fit, shape), y_fit, digits_to_input(x_eval, shape), y_eval)


def load_task(path: str | Path, shape: tuple[int, int, int], n_fit: int, n_eval: int) -> Task:
    """A user task from an .npz with `x` (N, C, H, W) and `y` (N,)."""
    try:
        data = np.load(path)
        x, y = np.asarray(data["x"], np.float32), np.asarray(data["y"]).astype(np.int64)
    except (OSError, ValueError, KeyError) as e:
        raise TaskError(f"task {path}: cannot read x and y from it ({e})") from None
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise TaskError(f"task {path}: x has shape {list(x.shape)}, the model takes [N, {', '.join(map(str, shape))}]")
    if len(y) != len(x):
        raise TaskError(f"task {path}: {len(x)} samples but {len(y)} labels")
    if len(x) < n_fit + n_eval:
        raise TaskError(f"task {path}: {len(x)} samples, {n_fit} + {n_eval} needed")
    return Task(Path(path).name, x[:n_fit], y[:n_fit], x[n_fit:n_fit + n_eval], y[n_fit:n_fit + n_eval])
