"""Where the tests find the paper's shared models, and real photos to feed them."""

import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest

MODELS = Path(os.environ.get("TINYMLIR_MODELS", Path(__file__).resolve().parents[1].parent / "shared" / "models"))
MODEL_NAMES = ["mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3"]


def shared_model(filename: str) -> Path:
    """The path of a shared model, or skip the test with the reason."""
    path = MODELS / filename
    if not path.exists():
        pytest.skip(f"shared model {path} not found (set TINYMLIR_MODELS to the models directory)")
    return path


def _box_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Area-average resize of an HxWxC image to size x size."""
    h, w = img.shape[:2]
    rows = np.minimum((np.arange(h) * size) // h, size - 1)
    cols = np.minimum((np.arange(w) * size) // w, size - 1)
    out = np.zeros((size, size, img.shape[2]))
    count = np.zeros((size, size, 1))
    np.add.at(out, (rows[:, None], cols[None, :]), img)
    np.add.at(count, (rows[:, None], cols[None, :]), 1)
    return out / count


@cache
def sample_photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's two photos (china, flower): centre square crop, 128x128, [-1, 1], NCHW."""
    pytest.importorskip("PIL", reason="scikit-learn's load_sample_images needs Pillow")
    from sklearn.datasets import load_sample_images

    out = []
    for img in load_sample_images().images:
        h, w = img.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = img[top : top + side, left : left + side].astype(np.float64) / 255.0
        x = (_box_resize(square, 128) - 0.5) / 0.5
        out.append(np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32))
    return tuple(out)
