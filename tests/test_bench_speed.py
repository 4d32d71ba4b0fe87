"""Smoke tests of bench/speed.py, bench/compile_time.py and bench/onnx_to_torch.py on the
bundled digits CNN (tinymlir.examples.digits): the core functions run end to end and
their tables carry every field, with positive values. No absolute time is asserted.

The network is the digits example's (its `init_params` + `export_onnx`), untrained:
`make_example` trains it for about a minute, and the speed of a step does not depend on
the weights' values. The C builds use gcc; the QEMU test skips without the Cortex-M
toolchain (unless CI=true).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")

from bench import compile_time, speed  # noqa: E402
from bench.onnx_to_torch import (  # noqa: E402
    UnsupportedOp,
    replace_classifier,
    set_trainable,
    torch_model_from_onnx,
)

from tinymlir.pipelines import LOWER_INFER, LOWER_TRAIN  # noqa: E402


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from tinymlir.examples import digits as D

    d = tmp_path_factory.mktemp("bench_digits")
    rng = np.random.default_rng(0)
    onnx_path = D.export_onnx(D.init_params(rng), d / "digits_cnn.onnx")
    calib = d / "calib.npy"
    np.save(calib, rng.uniform(-1, 1, (32, 1, D.SIZE, D.SIZE)).astype(np.float32))
    ptq = f'fold-batch-norm,quantize-ptq{{calibration="{calib}"}}'
    case = speed.Case(
        name="digits", train_onnx=onnx_path,
        train_spec=f'{ptq},autodiff{{num-classes=10 trainable="last:3"}},qas,prune-backward,reorder-update,{LOWER_TRAIN}',
        full_spec=f"{ptq},autodiff{{num-classes=10}},qas,prune-backward,reorder-update,{LOWER_TRAIN}",
        infer_onnx=onnx_path, infer_spec=f"{ptq},{LOWER_INFER}",
        torch_onnx=onnx_path, ort_onnx=onnx_path,
        torch_biases=[2, 3, 4], torch_weights=[2, 3, 4])  # last:3 of conv1, dw, pw, conv4, fc
    return case


def test_converter_matches_onnxruntime_and_trains(digits):
    import onnxruntime as ort
    import torch

    model = torch_model_from_onnx(digits.torch_onnx)
    assert len(model.layers) == speed.count_layers(digits.torch_onnx) == 5
    assert not any(p.requires_grad for p in model.parameters())
    x = speed.example_input((1, 1, 16, 16))
    sess = ort.InferenceSession(str(digits.torch_onnx), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)

    replace_classifier(model, 7)
    params = set_trainable(model, biases=[3, 4], weights=[4])
    assert [tuple(p.shape) for p in params] == [(16,), (7, 16), (7,)]
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.tensor([1]))
    loss.backward()
    assert all(p.grad is not None for p in params)
    assert model.layer(2).weight.grad is None


def test_converter_rejects_unknown_ops(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Softsign", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(UnsupportedOp, match="Softsign"):
        torch_model_from_onnx(path)


def test_speed_host_tables(digits, tmp_path):
    res = speed.bench_case(digits, tmp_path, repeats=3, threads=(2, 1), full=True, qemu=False,
                             warmup_seconds=0, log=lambda s: None)
    assert res["notes"] == []
    assert [r["update"] for r in res["train"]] == ["sparse", "full"]
    for r in res["train"]:
        assert r["c_ms"] > 0 and r["c_min_ms"] > 0 and r["c_trainable_bytes"] > 0
        assert set(r["torch_ms"]) == set(r["ratio"]) == {"2", "1"}
        assert all(v > 0 for v in [*r["torch_ms"].values(), *r["ratio"].values()])
        assert r["torch_trainable_tensors"] > 0 and r["torch_trainable_elements"] > 0
        assert np.isfinite(r["c_first_loss"]) and r["c_first_loss"] > 0
    sparse, full = res["train"]
    assert full["torch_trainable_elements"] > sparse["torch_trainable_elements"]
    assert full["c_trainable_bytes"] > sparse["c_trainable_bytes"]
    inf = res["infer"]
    assert inf["c_ms"] > 0 and all(v > 0 for v in [*inf["ort_ms"].values(), *inf["ratio"].values()])

    tabs = speed.tables([res])
    assert set(tabs) == {"train", "infer"}
    head = tabs["train"].splitlines()[0]
    for col in ("model", "update", "C step ms", "torch 2 thr ms", "torch 1 thr ms", "C / torch 2 thr",
                "C / torch 1 thr"):
        assert col in head
    assert len(tabs["train"].splitlines()) == 4  # header, rule, sparse, full
    assert "C / onnxruntime 2 thr" in tabs["infer"] and "digits" in tabs["infer"]


def test_speed_qemu_counts(digits, tmp_path):
    from toolchain import require_cortex_m_toolchain

    require_cortex_m_toolchain()
    train, itype = speed.lowered(digits.train_onnx, digits.train_spec)
    x = speed.int8_input(speed.example_input(speed.model_input_shape(digits.train_onnx)), itype)
    assert x.dtype == np.int8 and x.shape == (1, 16, 16, 1)  # NHWC, as int8-io makes the functions take it
    t = speed.qemu_train(train, x, 3, tmp_path / "train", ram_kib=512, timeout=300)
    infer, _ = speed.lowered(digits.infer_onnx, digits.infer_spec)
    i = speed.qemu_infer(infer, x, tmp_path / "infer", ram_kib=512, timeout=300)
    assert t["instructions"] > i["instructions"] > 0
    assert t["sram"] > 0 and t["flash"] > 0 and t["stack"] > 0
    res = {"model": "digits", "train": [], "infer": None, "qemu": {"model": "digits", "sparse": t, "full": None,
                                                                     "infer": i}}
    tab = speed.tables([res])["qemu"]
    assert "train step sparse" in tab and "full / sparse" in tab and "digits" in tab


def test_compile_time_rows(digits, tmp_path):
    row = compile_time.bench_pipeline("digits", "train", digits.train_onnx, digits.train_spec, tmp_path,
                                      repeats=1, compile_c=True)
    stages = row["stages"]
    assert list(stages)[0] == "import" and list(stages)[-1] == "emit_c"
    passes = [k for k in stages if k.startswith("pass ")]
    assert passes[0] == "pass fold-batch-norm" and passes[-1] == "pass split-sparse-params"
    assert len(passes) == 11 and all(v >= 0 for v in stages.values())
    assert row["onnx_to_c"] > 0 and row["cc_model_c"] > 0 and row["cc_build_host"] > 0
    assert (tmp_path / "libmodel.so").is_file()
    summary = compile_time.summary_table([row])
    for col in ("import", "passes", "emit_c", "ONNX -> C", "gcc -c model.c", "build_host"):
        assert col in summary.splitlines()[0]
    assert "convert-train-to-tk" in compile_time.pass_table([row])
