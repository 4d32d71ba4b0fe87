"""Fine-tuning in the reference interpreter: fp32 vs int8 with and without QAS.

The issue's acceptance experiment for the int8 training path (Lin et al. 2022, sec. 2.2).

Task (a class-incremental shift, where fine-tuning matters): the digits CNN of
`tinymlir.examples.digits` is trained on the digits 0-4 only, exported to ONNX, then
`fold-batch-norm` and, for the int8 variants, `quantize-ptq` calibrated on 32 training
images of 0-4 (what the deployed model saw). On "the device" it is fine-tuned to all ten
digits: `autodiff{num-classes=10 trainable=...}` replaces the classifier by a new 10-way
one (the old one knows nothing of 5-9) and trains it with the last layers, batch 1, plain
SGD with a cosine learning-rate decay, a few epochs over 80% of the training split; the other 20% chooses learning rates;
accuracy is on the held-out test split (450 images, all ten digits).

Variants, same trainable set, same data order and classifier init per seed:
  fp32              float graph, SGD                         lr chosen on validation
  int8 no QAS       int8 graph, SGD on the integers (G_q = s G_W), nearest rounding,
                    the fp32 lr, and its own lr chosen on a wide grid
  int8 no QAS + SR  the same with stochastic rounding, the no-QAS lr
  int8 QAS          + `qas` (G_q s^-2), nearest rounding        the fp32 lr, untuned
  int8 QAS + SR     + `qas`, stochastic rounding                the fp32 lr, untuned

    python bench/digits_finetune.py [--epochs 3] [--seeds 0 1 2] [--trainable last:3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from tinymlir.context import make_context
from tinymlir.examples import digits
from tinymlir.frontend import import_onnx
from tinymlir.interpreter.train_impls import TrainState
from tinymlir.passes.autodiff import AutodiffPass
from tinymlir.passes.fold_batch_norm import FoldBatchNormPass
from tinymlir.passes.qas import QASPass
from tinymlir.passes.quantize_ptq import QuantizePTQPass

OLD_CLASSES = 5
FP32_LRS = (0.01, 0.03, 0.1, 0.3)
NO_QAS_LRS = (10.0, 100.0, 1000.0, 10000.0)  # the step on W is lr s^2 G: s^2 ~ 1e-5 .. 1e-4


def make_base_model(outdir: Path, epochs: int) -> dict:
    """The 'deployed' model: the digits CNN trained on 0-4 only; ONNX + calibration data."""
    x_tr, y_tr, x_te, y_te = digits.load_digits_dataset()
    old = y_tr < OLD_CLASSES
    params = digits.train_digits_cnn(seed=0, epochs=epochs, data=(x_tr[old], y_tr[old], x_te, y_te))
    path = digits.export_onnx(params, outdir / "digits_0to4.onnx")
    np.save(outdir / "calib.npy", x_tr[old][:32])
    old_te = y_te < OLD_CLASSES
    return {"onnx": path, "calib": outdir / "calib.npy",
            "base_acc_old": digits.accuracy(params, x_te[old_te], y_te[old_te]),
            "base_acc_all": digits.accuracy(params, x_te, y_te)}


def build(base: dict, int8: bool, qas: bool, rounding: str, trainable: str, seed: int):
    module = import_onnx(str(base["onnx"]))
    ctx = make_context()
    FoldBatchNormPass().apply(ctx, module)
    if int8:
        QuantizePTQPass(calibration=str(base["calib"])).apply(ctx, module)
    AutodiffPass(num_classes=10, trainable=trainable, seed=seed,
                 rounding=rounding if int8 else "nearest").apply(ctx, module)
    if qas:
        QASPass().apply(ctx, module)
    module.verify()
    return module


def accuracy(state: TrainState, x: np.ndarray, y: np.ndarray) -> float:
    pred = np.array([state.run("forward", [x[i : i + 1]])[0].argmax() for i in range(len(x))])
    return float((pred == y).mean())


def finetune(base, data, variant: dict, lr: float, seed: int, epochs: int, trainable: str,
             eval_on: str = "test") -> float:
    x, y, xv, yv, xt, yt = data
    state = TrainState(build(base, variant["int8"], variant["qas"], variant["rounding"], trainable, seed))
    order = np.random.default_rng(seed)
    total = epochs * len(x)
    for e in range(epochs):
        for j, i in enumerate(order.permutation(len(x))):
            lr_t = lr * 0.5 * (1 + np.cos(np.pi * (e * len(x) + j) / total))  # cosine decay to 0
            state.train_step(x[i : i + 1], np.int32(y[i]), np.float32(lr_t))
    return accuracy(state, *((xv, yv) if eval_on == "val" else (xt, yt)))


VARIANTS = {
    "fp32": dict(int8=False, qas=False, rounding="nearest", lr="fp32"),
    "int8 no QAS (fp32 lr)": dict(int8=True, qas=False, rounding="nearest", lr="fp32"),
    "int8 no QAS (tuned lr)": dict(int8=True, qas=False, rounding="nearest", lr="tuned"),
    "int8 no QAS + SR (tuned lr)": dict(int8=True, qas=False, rounding="stochastic", lr="tuned"),
    "int8 QAS": dict(int8=True, qas=True, rounding="nearest", lr="fp32"),
    "int8 QAS + SR": dict(int8=True, qas=True, rounding="stochastic", lr="fp32"),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    ap.add_argument("--base-epochs", type=int, default=10, help="epochs of the 0-4 base model")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trainable", default="last:3", help="autodiff's trainable= (same for every variant)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    with TemporaryDirectory() as tmp:
        base = make_base_model(Path(tmp), args.base_epochs)
        x_tr, y_tr, x_te, y_te = digits.load_digits_dataset()
        split = np.random.default_rng(1234).permutation(len(x_tr))
        fit, val = split[: int(0.8 * len(split))], split[int(0.8 * len(split)) :]
        data = (x_tr[fit], y_tr[fit], x_tr[val], y_tr[val], x_te, y_te)
        print(f"base model (digits 0-4, {args.base_epochs} epochs, fp32): test accuracy {base['base_acc_old']:.3f} "
              f"on 0-4, {base['base_acc_all']:.3f} on 0-9")
        int8_base = TrainState(build(base, True, False, "nearest", "none", 0))
        x_old, y_old = x_te[y_te < OLD_CLASSES], y_te[y_te < OLD_CLASSES]
        # The old classifier is gone after num-classes; measure PTQ on a fresh int8 import.
        module = import_onnx(str(base["onnx"]))
        FoldBatchNormPass().apply(make_context(), module)
        QuantizePTQPass(calibration=str(base["calib"])).apply(make_context(), module)
        ptq = TrainState(module)
        print(f"int8 PTQ of the base model: test accuracy {accuracy(ptq, x_old, y_old):.3f} on 0-4; "
              f"new 10-way head before fine-tuning: {accuracy(int8_base, x_te, y_te):.3f} on 0-9")

        common = dict(epochs=args.epochs, trainable=args.trainable)
        lrs: dict[str, float] = {}

        def choose(name: str, grid) -> float:
            scores = {lr: finetune(base, data, VARIANTS[name], lr, 0, eval_on="val", **common) for lr in grid}
            best = max(scores, key=lambda lr: (scores[lr], -lr))
            print(f"  lr for {name}: " + ", ".join(f"{lr:g}: {a:.3f}" for lr, a in scores.items())
                  + f" (validation) -> {best:g}")
            return best

        print(f"choosing learning rates on the validation split ({len(val)} images), seed 0:")
        lrs["fp32"] = choose("fp32", FP32_LRS)
        lrs["int8 no QAS (tuned lr)"] = choose("int8 no QAS (tuned lr)", NO_QAS_LRS)
        # The nearest-rounding choice, to save time (tuned on its own, the same grid chose 1000 too).
        lrs["int8 no QAS + SR (tuned lr)"] = lrs["int8 no QAS (tuned lr)"]

        results: dict[str, list[float]] = {}
        for name, v in VARIANTS.items():
            lr = lrs["fp32"] if v["lr"] == "fp32" else lrs[name]
            results[name] = [finetune(base, data, v, lr, seed, **common) for seed in args.seeds]

    print(f"\nfine-tuning to all 10 digits: trainable={args.trainable} + new classifier, batch 1, SGD (cosine decay), "
          f"{args.epochs} epochs over {len(fit)} images; test accuracy over seeds {args.seeds} (mean ± std)")
    print(f"| {'variant':28} | {'lr':>7} | {'accuracy':>15} | per seed")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 17}|{'-' * 24}")
    for name, accs in results.items():
        v = VARIANTS[name]
        lr = lrs["fp32"] if v["lr"] == "fp32" else lrs[name]
        a = np.array(accs) * 100
        print(f"| {name:28} | {lr:7g} | {a.mean():6.2f} ± {a.std():5.2f} | " + " ".join(f"{s:.2f}" for s in a))
    fp32 = np.mean(results["fp32"]) * 100
    best_qas = max(np.mean(results["int8 QAS"]), np.mean(results["int8 QAS + SR"])) * 100
    best_no = max(np.mean(results[k]) for k in results if "no QAS" in k) * 100
    print(f"\nbest int8+QAS {best_qas:.2f} vs best int8 without QAS {best_no:.2f} vs fp32 {fp32:.2f} "
          f"(gap to fp32 {fp32 - best_qas:+.2f} points); {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
