"""quantize-ptq: a float `nn` graph becomes int8 `quant` ops that compute nearly the same.

Small random graphs written in IR text are calibrated on random inputs and compared with
the float graph through the reference interpreter; the shared fp32 models are calibrated
on scikit-learn's two sample photos and must keep the fp32 top-1 class on them.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from xdsl.parser import Parser
from xdsl.utils.arg_spec import parse_spec
from xdsl.utils.exceptions import DiagnosticException

from tinymlir.context import make_context
from tinymlir.dialects.quant import qtype
from tinymlir.interpreter import run_function
from tinymlir.passes.quantize_ptq import (
    QuantizePTQPass,
    activation_qtype,
    quantize_module,
    quantize_weights,
)

from shared_models import MODELS  # noqa: E402
MODEL_NAMES = ["mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3"]
FLOAT_COMPUTE = {"nn.conv2d", "nn.gemm", "nn.add", "nn.global_avg_pool"}


# -- helpers ---------------------------------------------------------------------------
def dense(a: np.ndarray) -> str:
    a = np.asarray(a, dtype=np.float32)
    return f"dense<{a.tolist()}> : tensor<{'x'.join(map(str, a.shape))}xf32>"


def tensor(*shape: int) -> str:
    return f"tensor<{'x'.join(map(str, shape))}xf32>"


def parse(text: str):
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


def ops(module) -> Counter[str]:
    return Counter(op.name for op in module.walk())


def run_all(module, xs: np.ndarray) -> np.ndarray:
    return np.concatenate([run_function(module, [x[None]])[0] for x in xs])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


CONV = "strides = array<i64: {s}, {s}>, pads = array<i64: {p}, {p}, {p}, {p}>, dilations = array<i64: 1, 1>, groups = {g} : i64"


def mobilenet_block(rng: np.random.Generator) -> str:
    """conv3x3 + ReLU6 -> depthwise 3x3 + ReLU -> pointwise (linear) -> + residual -> GAP ->
    flatten -> gemm (trans_b)."""
    c = 8
    w1, b1 = rng.normal(0, np.sqrt(2 / 27), (c, 3, 3, 3)), rng.normal(0, 0.1, c)
    w2, b2 = rng.normal(0, np.sqrt(2 / 9), (c, 1, 3, 3)), rng.normal(0, 0.1, c)
    w3, b3 = rng.normal(0, np.sqrt(1 / c), (c, c, 1, 1)), rng.normal(0, 0.1, c)
    wf, bf = rng.normal(0, 1.0, (10, c)), rng.normal(0, 0.1, 10)
    t, tg, tf = tensor(1, c, 8, 8), tensor(1, c, 1, 1), tensor(1, c)
    return f"""
    func.func @forward(%x: {tensor(1, 3, 8, 8)}) -> {tensor(1, 10)} {{
      %w1 = arith.constant {dense(w1)}
      %b1 = arith.constant {dense(b1)}
      %w2 = arith.constant {dense(w2)}
      %b2 = arith.constant {dense(b2)}
      %w3 = arith.constant {dense(w3)}
      %b3 = arith.constant {dense(b3)}
      %wf = arith.constant {dense(wf)}
      %bf = arith.constant {dense(bf)}
      %c1 = nn.conv2d %x, %w1, %b1 {{{CONV.format(s=1, p=1, g=1)}}} : ({tensor(1, 3, 8, 8)}, {tensor(c, 3, 3, 3)}, {tensor(c)}) -> {t}
      %r1 = nn.clip %c1 {{min = 0.0 : f32, max = 6.0 : f32}} : ({t}) -> {t}
      %c2 = nn.conv2d %r1, %w2, %b2 {{{CONV.format(s=1, p=1, g=c)}}} : ({t}, {tensor(c, 1, 3, 3)}, {tensor(c)}) -> {t}
      %r2 = nn.relu %c2 : ({t}) -> {t}
      %c3 = nn.conv2d %r2, %w3, %b3 {{{CONV.format(s=1, p=0, g=1)}}} : ({t}, {tensor(c, c, 1, 1)}, {tensor(c)}) -> {t}
      %a = nn.add %c3, %r1 : ({t}, {t}) -> {t}
      %g = nn.global_avg_pool %a : ({t}) -> {tg}
      %f = nn.flatten %g {{axis = 1 : i64}} : ({tg}) -> {tf}
      %y = nn.gemm %f, %wf, %bf {{alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true}} : ({tf}, {tensor(10, c)}, {tensor(10)}) -> {tensor(1, 10)}
      func.return %y : {tensor(1, 10)}
    }}"""


def inputs(seed: int, n: int, shape=(3, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


# -- random graphs ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_mobilenet_block_is_quantized_and_stays_close(method):
    module = parse(mobilenet_block(np.random.default_rng(0)))
    test_x = inputs(1, 32)
    want = run_all(module, test_x)

    quantize_module(module, inputs(2, 16), method=method)
    module.verify()

    names = ops(module)
    assert not FLOAT_COMPUTE & set(names), names
    assert names["quant.conv2d"] == 3 and names["quant.add"] == 1, names
    assert names["quant.global_avg_pool"] == 1 and names["quant.fully_connected"] == 1, names
    assert names["quant.quantize"] == 1 and names["quant.dequantize"] == 1, names
    assert "nn.relu" not in names and "nn.clip" not in names and "arith.constant" not in names, names
    assert names["nn.flatten"] == 1  # on the int8 tensor
    assert "quant.requantize" not in names

    got = run_all(module, test_x)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert cosine(got, want).min() > 0.99, cosine(got, want)
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.85


def test_quantized_types_follow_the_scheme():
    module = parse(mobilenet_block(np.random.default_rng(3)))
    quantize_module(module, inputs(4, 8))
    for op in module.walk():
        if op.name in ("quant.conv2d", "quant.fully_connected"):
            x, w, b, y = qtype(op.input), qtype(op.weight), qtype(op.bias), qtype(op.result)
            assert w.is_per_channel and w.axis.data == 0 and not any(w.zp_array())
            wq = op.weight.owner.numpy()
            assert wq.dtype == np.int8 and np.abs(wq).max() == 127 and wq.min() >= -127
            assert b.storage_name == "i32" and not any(b.zp_array())
            np.testing.assert_allclose(b.scale_array(), x.scale * w.scale_array(), rtol=1e-6)
            assert not x.is_per_channel and not y.is_per_channel
        if op.name == "quant.quantize":  # the graph input: uniform(-1, 1) -> zero-point near 0
            qt = qtype(op.result)
            assert qt.storage_name == "i8" and abs(qt.zero_point) <= 2 and abs(qt.scale - 2 / 255) < 1e-3


def test_relu6_output_range_starts_at_zero():
    """ReLU6 folded into a conv: the output range is the clip's calibrated range, so real 0
    is the lowest code (-128) and the clamp needs no act_min."""
    module = parse(mobilenet_block(np.random.default_rng(5)))
    quantize_module(module, inputs(6, 8))
    conv1 = next(op for op in module.walk() if op.name == "quant.conv2d")
    y = qtype(conv1.result)
    assert y.zero_point == -128 and y.scale * 255 <= 6.0 + 1e-6
    assert conv1.act_min is None and conv1.act_max is None


def edge_graph(rng: np.random.Generator) -> str:
    """Clip(0.5, 3) folded (act_min above the zero-point), max_pool and reshape passed
    through, gemm without trans_b with alpha/beta and a folded ReLU, softmax left float."""
    w = rng.normal(0, 0.4, (6, 4, 3, 3))
    b = rng.normal(0, 0.5, (24, 5))
    c = rng.normal(0, 0.3, (1, 5))
    t1, t2 = tensor(1, 6, 4, 4), tensor(1, 6, 2, 2)
    return f"""
    func.func @forward(%x: {tensor(1, 4, 8, 8)}) -> {tensor(1, 5)} {{
      %w = arith.constant {dense(w)}
      %b = arith.constant {dense(b)}
      %c = arith.constant {dense(c)}
      %y1 = nn.conv2d %x, %w {{{CONV.format(s=2, p=1, g=1)}}} : ({tensor(1, 4, 8, 8)}, {tensor(6, 4, 3, 3)}) -> {t1}
      %y2 = nn.clip %y1 {{min = 0.5 : f32, max = 3.0 : f32}} : ({t1}) -> {t1}
      %y3 = nn.max_pool %y2 {{kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>}} : ({t1}) -> {t2}
      %y4 = nn.reshape %y3 : ({t2}) -> {tensor(1, 24)}
      %y5 = nn.gemm %y4, %b, %c {{alpha = 0.5 : f32, beta = 2.0 : f32, trans_a = false, trans_b = false}} : ({tensor(1, 24)}, {tensor(24, 5)}, {tensor(1, 5)}) -> {tensor(1, 5)}
      %y6 = nn.relu %y5 : ({tensor(1, 5)}) -> {tensor(1, 5)}
      %y7 = nn.softmax %y6 {{axis = 1 : i64}} : ({tensor(1, 5)}) -> {tensor(1, 5)}
      func.return %y7 : {tensor(1, 5)}
    }}"""


def test_clip_max_pool_reshape_gemm_and_a_float_softmax():
    module = parse(edge_graph(np.random.default_rng(7)))
    test_x = inputs(8, 16, (4, 8, 8))
    want = run_all(module, test_x)
    quantize_module(module, inputs(9, 16, (4, 8, 8)))
    module.verify()
    names = ops(module)
    assert not FLOAT_COMPUTE & set(names), names
    assert names["nn.max_pool"] == 1 and names["nn.reshape"] == 1 and names["nn.softmax"] == 1
    assert "nn.clip" not in names and "nn.relu" not in names and "quant.requantize" not in names

    conv = next(op for op in module.walk() if op.name == "quant.conv2d")
    y = qtype(conv.result)
    assert conv.bias is None
    assert conv.act_min is not None and conv.act_min.value.data == round(0.5 / y.scale) + y.zero_point
    pool = next(op for op in module.walk() if op.name == "nn.max_pool")
    assert pool.input.type.element_type == pool.result.type.element_type == y  # same quantization
    softmax = next(op for op in module.walk() if op.name == "nn.softmax")
    assert softmax.input.owner.name == "quant.dequantize"
    assert softmax.result.uses.get_length() == 1  # straight to func.return, no quantize after

    got = run_all(module, test_x)
    assert np.abs(got - want).max() < 0.05, np.abs(got - want).max()


def test_relu_with_other_users_stays_float_between_dequantize_and_quantize():
    rng = np.random.default_rng(11)
    t = tensor(1, 4, 6, 6)
    module = parse(f"""
    func.func @forward(%x: {t}) -> {t} {{
      %w = arith.constant {dense(rng.normal(0, 0.5, (4, 4, 1, 1)))}
      %c = nn.conv2d %x, %w {{{CONV.format(s=1, p=0, g=1)}}} : ({t}, {tensor(4, 4, 1, 1)}) -> {t}
      %r = nn.relu %c : ({t}) -> {t}
      %a = nn.add %c, %r : ({t}, {t}) -> {t}
      func.return %a : {t}
    }}""")
    test_x = inputs(12, 8, (4, 6, 6))
    want = run_all(module, test_x)
    quantize_module(module, inputs(13, 8, (4, 6, 6)))
    module.verify()
    names = ops(module)
    assert names["nn.relu"] == 1 and names["quant.conv2d"] == 1 and names["quant.add"] == 1
    relu = next(op for op in module.walk() if op.name == "nn.relu")
    assert relu.input.owner.name == "quant.dequantize"
    assert relu.result.get_user_of_unique_use().name == "quant.quantize"
    got = run_all(module, test_x)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


# -- parameters ------------------------------------------------------------------------
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (0.0, 6.0), (0.3, 2.0), (-5.0, -1.0), (-0.01, 100.0), (0.0, 0.0)])
def test_activation_range_contains_zero_exactly(lo, hi):
    qt = activation_qtype(lo, hi)
    assert -128 <= qt.zero_point <= 127 and qt.scale > 0
    assert np.float32(qt.scale) == qt.scale  # float32-exact, as the types print it
    if hi > lo:
        real_lo, real_hi = (-128 - qt.zero_point) * qt.scale, (127 - qt.zero_point) * qt.scale
        assert real_lo <= min(lo, 0) + qt.scale and real_hi >= max(hi, 0) - qt.scale


def test_weights_per_channel_symmetric_and_bias_fits():
    w = np.array([[1.0, -0.5], [0.0, 0.0], [1e-3, 2e-3]], dtype=np.float32)
    b = np.array([0.25, 3.0, 1e6], dtype=np.float32)
    w_q, w_t, b_q, b_t = quantize_weights(w, b, input_scale=0.01)
    assert w_q[0].tolist() == [127, -64] and w_q[1].tolist() == [0, 0]
    s = w_t.scale_array()
    assert s[0] == pytest.approx(1 / 127, rel=1e-6)
    bias_real = b_q * b_t.scale_array()
    np.testing.assert_allclose(bias_real, b, rtol=1e-5)  # the zero channel keeps its bias
    assert b_q.dtype == np.int32


# -- the pass and its errors -----------------------------------------------------------
def test_pass_options_from_the_command_line_spec(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(path, inputs(2, 4))
    spec = parse_spec(f'quantize-ptq{{calibration="{path}" calibration-method=percentile percentile=99.9}}')
    p = QuantizePTQPass.from_spec(spec)
    assert (p.calibration, p.calibration_method, p.percentile) == (str(path), "percentile", 99.9)
    assert QuantizePTQPass.from_spec(parse_spec("quantize-ptq{percentile=99}")).percentile == 99
    module = parse(mobilenet_block(np.random.default_rng(0)))
    p.apply(make_context(), module)
    module.verify()
    assert "nn.conv2d" not in ops(module)


@pytest.mark.parametrize(
    "make,options,fragment",
    [
        (None, "", "needs calibration samples"),
        (None, 'calibration="{d}/missing.npy"', "cannot read calibration file"),
        (lambda: np.zeros((4, 3, 8, 7), np.float32), 'calibration="{f}"',
         "must have shape [N, 3, 8, 8], got [4, 3, 8, 7]"),
        (lambda: np.zeros((4, 3, 8, 8), np.int8), 'calibration="{f}"', "must be floating point"),
        (lambda: np.zeros((0, 3, 8, 8), np.float32), 'calibration="{f}"', "no samples"),
        (lambda: np.full((2, 3, 8, 8), np.nan, np.float32), 'calibration="{f}"', "NaN"),
        (lambda: np.zeros((2, 3, 8, 8), np.float32), 'calibration="{f}" calibration-method=kl',
         "unknown calibration method 'kl'"),
    ],
)
def test_bad_calibration_is_a_one_line_pass_error(tmp_path, make, options, fragment):
    f = tmp_path / "calib.npy"
    if make is not None:
        np.save(f, make())
    spec = parse_spec("quantize-ptq{" + options.format(d=tmp_path, f=f) + "}" if options else "quantize-ptq")
    module = parse(mobilenet_block(np.random.default_rng(0)))
    with pytest.raises(DiagnosticException) as e:
        QuantizePTQPass.from_spec(spec).apply(make_context(), module)
    message = str(e.value)
    assert fragment in message and "\n" not in message and message.startswith("quantize-ptq: ")


def test_unreadable_file_through_tinymlir_opt_is_one_line(tmp_path):
    src = tmp_path / "m.mlir"
    src.write_text(mobilenet_block(np.random.default_rng(0)))
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a numpy file")
    r = subprocess.run(
        [sys.executable, "-c", "import sys; from tinymlir.tools.opt import main; sys.exit(main())", str(src), "-p",
         f'quantize-ptq{{calibration="{bad}"}}'],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read calibration file" in lines[0] and "not a .npy file" in lines[0], r.stderr


# -- the shared fp32 models on two real photos -----------------------------------------
def _box_resize(img: np.ndarray, side: int = 128) -> np.ndarray:
    """Area (box-filter) resize of a square HxWx3 image in [0, 1] to side x side."""
    n = img.shape[0]
    a = np.zeros((side, n))
    f = n / side
    for o in range(side):
        lo, hi = o * f, (o + 1) * f
        for i in range(int(lo), min(int(np.ceil(hi)), n)):
            a[o, i] = min(hi, i + 1) - max(lo, i)
    a /= f
    return np.stack([a @ img[..., k] @ a.T for k in range(3)])


def photo_input(img: np.ndarray, crop: int | None = None, flip: bool = False) -> np.ndarray:
    """The centred square crop (the largest by default), box-resized to 128x128, scaled to
    [-1, 1], NCHW float32."""
    h, w = img.shape[:2]
    crop = crop or min(h, w)
    top, left = (h - crop) // 2, (w - crop) // 2
    x = img[top : top + crop, left : left + crop].astype(np.float64) / 255.0
    if flip:
        x = x[:, ::-1]
    return ((_box_resize(x) - 0.5) / 0.5)[None].astype(np.float32)


@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("PIL", reason="scikit-learn's load_sample_images needs Pillow (pip install pillow)")
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images  # china.jpg, flower.jpg
    test = np.concatenate([photo_input(img) for img in images])
    calib = np.concatenate(
        [photo_input(img, crop, flip) for img in images for crop in (None, 320) for flip in (False, True)]
    )
    return test, calib


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shared_model_keeps_top1_on_sample_photos(name, photos):
    """Calibrated on 8 samples (both photos, their mirror images and 320-pixel centre crops
    of each), the int8 model gives the fp32 top-1 class on china.jpg and flower.jpg."""
    path = MODELS / f"{name}-fp32.onnx"
    if not path.exists():
        pytest.skip(f"shared model {path} not found (set TINYMLIR_MODELS to the models folder)")
    from tinymlir.frontend import import_onnx

    test, calib = photos
    module = import_onnx(str(path))
    want = run_all(module, test)
    quantize_module(module, calib)
    module.verify()
    names = ops(module)
    assert not FLOAT_COMPUTE & set(names) and "nn.clip" not in names, names
    got = run_all(module, test)
    margins = np.sort(want, 1)[:, -1] - np.sort(want, 1)[:, -2]
    report = (f"fp32 top-1 {want.argmax(1).tolist()} (margins {', '.join(f'{m:.3f}' for m in margins)}), "
              f"int8 top-1 {got.argmax(1).tolist()}")
    print(f"{name}: {report}")
    assert cosine(got, want).min() > 0.99, report
    assert got.argmax(1).tolist() == want.argmax(1).tolist(), report


def test_calibration_with_the_batch_dimension_gives_the_same_result():
    calib = inputs(2, 4)
    a = parse(mobilenet_block(np.random.default_rng(0)))
    b = parse(mobilenet_block(np.random.default_rng(0)))
    quantize_module(a, calib)
    quantize_module(b, calib[:, None])  # [N, 1, 3, 8, 8] = [N, *input_shape]
    assert str(a) == str(b)
