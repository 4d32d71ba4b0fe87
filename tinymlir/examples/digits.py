"""Bundled example model: a tiny MobileNet-flavoured CNN on scikit-learn's digits.

Nothing is downloaded: scikit-learn ships the 8x8 digits. Training is plain
numpy with a hand-written backward pass, so the example needs no deep-learning
framework, and it is fully seeded so the exported ONNX file is byte-identical
from run to run.

    python -m tinymlir.examples.digits OUTDIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SIZE = 16
NUM_CLASSES = 10
BN_EPS = 1e-5
OPSET = 17
IR_VERSION = 8  # onnxruntime 1.32 accepts it, and older runtimes do too

# name -> (out_ch, in_ch_per_group, kernel, stride, groups); names are the ONNX
# initializer names, so a params dict and the exported graph share one namespace.
CONVS = {
    "conv1": (8, 1, 3, 1, 1),  # full conv, no bias: BatchNormalization follows
    "dw": (8, 1, 3, 2, 8),  # depthwise 3x3 stride 2
    "pw": (16, 8, 1, 1, 1),  # pointwise 1x1
    "conv4": (16, 16, 3, 2, 1),
}
BN_STATS = ("bn1.mean", "bn1.var")  # not trained by SGD; measured after training


def load_digits_dataset(size: int = SIZE):
    """(x_train, y_train, x_test, y_test): float32 NCHW in [-1, 1], int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if size % 8:
        raise ValueError(f"size must be a multiple of 8, got {size}")
    digits = load_digits()
    f = size // 8
    # Nearest-neighbour upsampling: the model then has enough resolution for two
    # stride-2 stages without the feature maps collapsing to 1x1.
    img = digits.images.repeat(f, axis=1).repeat(f, axis=2)
    x = ((img / 16.0 - 0.5) / 0.5).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0)
    return x_tr, y_tr, x_te, y_te


# --------------------------------------------------------------------------- conv


def _conv(x, w, b, stride, groups):
    """Grouped 2-D conv with 'same'-style padding k//2; returns (y, cols) for backward."""
    n, c = x.shape[:2]
    o, cg, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    # im2col as a strided view: [N, C, Ho, Wo, k, k]
    cols = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = cols.shape[2:4]
    cols = cols.reshape(n, groups, cg, ho, wo, k, k)
    wg = w.reshape(groups, o // groups, cg, k, k)
    y = np.einsum("ngchwij,gocij->ngohw", cols, wg, optimize=True).reshape(n, o, ho, wo)
    if b is not None:
        y = y + b[:, None, None]
    return y, cols


def _conv_backward(dy, cols, w, x_shape, stride, groups):
    """Gradients (dx, dw, db) of _conv."""
    n, o, ho, wo = dy.shape
    _, cg, k, _ = w.shape
    p = k // 2
    dyg = dy.reshape(n, groups, o // groups, ho, wo)
    wg = w.reshape(groups, o // groups, cg, k, k)
    dw = np.einsum("ngchwij,ngohw->gocij", cols, dyg, optimize=True).reshape(w.shape)
    dcols = np.einsum("ngohw,gocij->ngchwij", dyg, wg, optimize=True)
    dcols = dcols.reshape(n, x_shape[1], ho, wo, k, k)
    # col2im: scatter-add each of the k*k kernel taps back onto the padded input.
    dxp = np.zeros((n, x_shape[1], x_shape[2] + 2 * p, x_shape[3] + 2 * p), dy.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] += dcols[..., i, j]
    dx = dxp[:, :, p : p + x_shape[2], p : p + x_shape[3]]
    return dx, dw, dy.sum(axis=(0, 2, 3))


# ------------------------------------------------------------------------ network


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {}
    for name, (o, cg, k, _, _) in CONVS.items():
        fan_in = cg * k * k
        params[f"{name}.weight"] = rng.normal(0, np.sqrt(2 / fan_in), (o, cg, k, k))
        if name != "conv1":
            params[f"{name}.bias"] = np.zeros(o)
    params["bn1.scale"] = np.ones(8)
    params["bn1.bias"] = np.zeros(8)
    params["bn1.mean"] = np.zeros(8)
    params["bn1.var"] = np.ones(8)
    params["fc.weight"] = rng.normal(0, np.sqrt(1 / 16), (NUM_CLASSES, 16))  # Gemm transB=1
    params["fc.bias"] = np.zeros(NUM_CLASSES)
    return {k: v.astype(np.float32) for k, v in params.items()}


def _forward(params, x, train):
    """Returns (logits, cache). train=True normalises with batch statistics."""
    P = params
    cache = {"x": x}
    c1, cache["cols1"] = _conv(x, P["conv1.weight"], None, 1, 1)
    if train:
        mean, var = c1.mean(axis=(0, 2, 3)), c1.var(axis=(0, 2, 3))
    else:
        mean, var = P["bn1.mean"], P["bn1.var"]
    inv_std = 1.0 / np.sqrt(var + BN_EPS)
    xhat = (c1 - mean[:, None, None]) * inv_std[:, None, None]
    bn = xhat * P["bn1.scale"][:, None, None] + P["bn1.bias"][:, None, None]
    r1 = np.maximum(bn, 0)
    z2, cache["cols2"] = _conv(r1, P["dw.weight"], P["dw.bias"], 2, 8)
    r2 = np.clip(z2, 0, 6)  # ReLU6, exported as Clip(0, 6)
    z3, cache["cols3"] = _conv(r2, P["pw.weight"], P["pw.bias"], 1, 1)
    r3 = np.maximum(z3, 0)
    z4, cache["cols4"] = _conv(r3, P["conv4.weight"], P["conv4.bias"], 2, 1)
    r4 = np.maximum(z4, 0)
    g = r4.mean(axis=(2, 3))  # GlobalAveragePool + Flatten
    logits = g @ P["fc.weight"].T + P["fc.bias"]
    cache.update(xhat=xhat, inv_std=inv_std, bn=bn, r1=r1, z2=z2, r2=r2, z3=z3, r3=r3, z4=z4, g=g)
    return logits, cache


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Inference forward (BatchNormalization uses the stored running statistics)."""
    return _forward(params, np.asarray(x, np.float32), train=False)[0]


def _loss_and_grads(params, x, y):
    P, n = params, len(x)
    logits, c = _forward(params, x, train=True)
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(n), y] + 1e-12).mean()

    grads = {}
    dlogits = prob
    dlogits[np.arange(n), y] -= 1
    dlogits /= n
    grads["fc.weight"] = dlogits.T @ c["g"]
    grads["fc.bias"] = dlogits.sum(axis=0)
    dz4 = (dlogits @ P["fc.weight"])[:, :, None, None] / (c["z4"].shape[2] * c["z4"].shape[3])
    dz4 = np.broadcast_to(dz4, c["z4"].shape) * (c["z4"] > 0)
    dr3, grads["conv4.weight"], grads["conv4.bias"] = _conv_backward(
        dz4, c["cols4"], P["conv4.weight"], c["r3"].shape, 2, 1)
    dz3 = dr3 * (c["z3"] > 0)
    dr2, grads["pw.weight"], grads["pw.bias"] = _conv_backward(
        dz3, c["cols3"], P["pw.weight"], c["r2"].shape, 1, 1)
    dz2 = dr2 * ((c["z2"] > 0) & (c["z2"] < 6))
    dr1, grads["dw.weight"], grads["dw.bias"] = _conv_backward(
        dz2, c["cols2"], P["dw.weight"], c["r1"].shape, 2, 8)
    dbn = dr1 * (c["bn"] > 0)
    # Batch-norm backward through the batch statistics.
    xhat, ax = c["xhat"], (0, 2, 3)
    grads["bn1.scale"] = (dbn * xhat).sum(axis=ax)
    grads["bn1.bias"] = dbn.sum(axis=ax)
    dxhat = dbn * P["bn1.scale"][:, None, None]
    dc1 = (dxhat - dxhat.mean(axis=ax, keepdims=True)
           - xhat * (dxhat * xhat).mean(axis=ax, keepdims=True)) * c["inv_std"][:, None, None]
    _, grads["conv1.weight"], _ = _conv_backward(dc1, c["cols1"], P["conv1.weight"], x.shape, 1, 1)
    return loss, grads


def train_digits_cnn(seed: int = 0, epochs: int = 20, batch_size: int = 32,
                     lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
                     data=None) -> dict[str, np.ndarray]:
    """SGD+momentum with a cosine learning-rate schedule; returns float32 params."""
    x, y = (data if data is not None else load_digits_dataset())[:2]
    rng = np.random.default_rng(seed)
    params = init_params(rng)
    trainable = [k for k in params if k not in BN_STATS]
    vel = {k: np.zeros_like(params[k]) for k in trainable}
    steps_per_epoch = -(-len(x) // batch_size)
    total, step = epochs * steps_per_epoch, 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), batch_size):
            idx = order[s : s + batch_size]
            _, grads = _loss_and_grads(params, x[idx], y[idx])
            lr_t = np.float32(lr * 0.5 * (1 + np.cos(np.pi * step / total)))
            for k in trainable:
                vel[k] = np.float32(momentum) * vel[k] - lr_t * (
                    grads[k] + np.float32(weight_decay) * params[k])
                params[k] = (params[k] + vel[k]).astype(np.float32)
            step += 1
    # Export-time BN statistics: population mean/var of the final conv1 over the
    # whole training set (more accurate than an exponential running average).
    c1, _ = _conv(x, params["conv1.weight"], None, 1, 1)
    params["bn1.mean"] = c1.mean(axis=(0, 2, 3)).astype(np.float32)
    params["bn1.var"] = c1.var(axis=(0, 2, 3)).astype(np.float32)
    return params


def accuracy(params, x, y) -> float:
    return float((forward(params, x).argmax(axis=1) == y).mean())


# ------------------------------------------------------------------------- export


def export_onnx(params: dict[str, np.ndarray], path) -> Path:
    """Write the ONNX model (opset 17, batch 1): input 'input' [1,1,16,16] -> 'logits' [1,10]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def conv(name, x, out, with_bias=True):
        o, _, k, s, g = CONVS[name]
        ins = [x, f"{name}.weight"] + ([f"{name}.bias"] if with_bias else [])
        return helper.make_node("Conv", ins, [out], name=name, kernel_shape=[k, k],
                                strides=[s, s], pads=[k // 2] * 4, group=g)

    nodes = [
        conv("conv1", "input", "conv1_out", with_bias=False),
        helper.make_node("BatchNormalization",
                         ["conv1_out", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"],
                         ["bn1_out"], name="bn1", epsilon=BN_EPS),
        helper.make_node("Relu", ["bn1_out"], ["relu1_out"], name="relu1"),
        conv("dw", "relu1_out", "dw_out"),
        helper.make_node("Clip", ["dw_out", "relu6.min", "relu6.max"], ["relu6_out"], name="relu6"),
        conv("pw", "relu6_out", "pw_out"),
        helper.make_node("Relu", ["pw_out"], ["relu3_out"], name="relu3"),
        conv("conv4", "relu3_out", "conv4_out"),
        helper.make_node("Relu", ["conv4_out"], ["relu4_out"], name="relu4"),
        helper.make_node("GlobalAveragePool", ["relu4_out"], ["gap_out"], name="gap"),
        helper.make_node("Flatten", ["gap_out"], ["flat_out"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat_out", "fc.weight", "fc.bias"], ["logits"],
                         name="fc", transB=1),
    ]
    consts = dict(params)
    consts["relu6.min"] = np.array(0, np.float32)
    consts["relu6.max"] = np.array(6, np.float32)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, NUM_CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="tinymlir.examples.digits")
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    onnx.save(model, path)
    return path


def make_example(outdir, seed: int = 0) -> dict:
    """Train, export and write calibration/test data into outdir; returns paths + accuracy."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    data = load_digits_dataset()
    x_tr, _, x_te, y_te = data
    t0 = time.perf_counter()
    params = train_digits_cnn(seed=seed, data=data)
    train_seconds = time.perf_counter() - t0
    paths = {
        "onnx": export_onnx(params, outdir / "digits_cnn.onnx"),
        "calib": outdir / "calib.npy",
        "test_x": outdir / "test_x.npy",
        "test_y": outdir / "test_y.npy",
    }
    np.save(paths["calib"], x_tr[:32])  # PTQ calibration images (training split)
    np.save(paths["test_x"], x_te)
    np.save(paths["test_y"], y_te)
    return {**paths, "accuracy": accuracy(params, x_te, y_te), "train_seconds": train_seconds}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", help="directory to write digits_cnn.onnx, calib.npy, test_x/y.npy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    r = make_example(args.outdir, seed=args.seed)
    print(f"onnx={r['onnx']} calib={r['calib']} test_x={r['test_x']} test_y={r['test_y']} "
          f"accuracy={r['accuracy']:.4f} train_seconds={r['train_seconds']:.1f}")


if __name__ == "__main__":
    main()
