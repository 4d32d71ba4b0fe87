"""Smoke test of bench/accuracy.py on a tiny subset: the data preparation, the int8 training
step compiled to C and driven through ctypes (the 99kb scheme with QAS), the PyTorch fp32
twin with the same trainable set, the table and the plot. Skipped without the shared models."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from shared_models import shared_model

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "bench" / "accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_data_preparation():
    pytest.importorskip("sklearn")
    A = _bench()
    x_tr, y_tr, x_te, y_te = A.load_split()
    assert (len(x_tr), len(x_te)) == (1347, 450) and set(y_te) == set(range(10))
    x = A.to_input(x_tr[:2])
    assert x.shape == (2, 3, 128, 128) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.array_equal(x[0, 0, :16, :16], np.full((16, 16), x_tr[0, 0, 0] / 8 - 1, np.float32))
    assert np.array_equal(x[:, 0], x[:, 2])
    x_fit, _, x_val, _ = A.validation_split(x_tr, y_tr)
    assert len(x_fit) + len(x_val) == len(x_tr)


def test_c_and_torch_training_smoke(tmp_path):
    shared_model("mcunet-5fps-int8.onnx")
    shared_model("mcunet-5fps-fp32.onnx")
    pytest.importorskip("torch")
    A = _bench()
    x_tr, y_tr, x_te, y_te = A.load_split()
    data = (x_tr[:4], y_tr[:4], x_te[:3], y_te[:3])

    spec = A.c_spec(A.CONFIGS["int8-qas-99kb"], seed=1)
    assert "autodiff{seed=1 " in spec and ",qas," in spec and "mcunet-5fps-99kb.scheme" in spec
    assert ",qas," not in A.c_spec(A.CONFIGS["int8-noqas-99kb"], seed=0)
    assert "sparse-update{bias-last=22}" in A.c_spec(A.CONFIGS["int8-bias-only"], seed=0)

    c = A.run_config(A.CONFIGS["int8-qas-99kb"], data, 1e-3, 1, [0], tmp_path, log=lambda s: None)
    assert len(c["acc"]) == 1 and 0.0 <= c["acc"][0] <= 1.0
    assert c["runs"][0]["steps_per_s"] > 0 and np.isfinite(c["runs"][0]["last_epoch_loss"])
    assert c["sram_bytes"] == c["arena_bytes"] + c["trainable_bytes"] > 0
    assert 0 < c["update_bytes"] < c["sram_bytes"]

    t = A.run_config(A.CONFIGS["fp32-99kb"], data, 1e-3, 1, [0], tmp_path, log=lambda s: None)
    assert len(t["acc"]) == 1 and np.isfinite(t["runs"][0]["last_epoch_loss"])

    results = {"int8-qas-99kb": c, "fp32-99kb": t,
               "searched-100kb": {"label": "(v)", "kind": "skip", "skipped": "not run: a note"}}
    text = A.table(results)
    assert "not run: a note" in text and text.count("\n") == 4
    A.plot(results, tmp_path / "accuracy.png")
    assert (tmp_path / "accuracy.png").stat().st_size > 0
