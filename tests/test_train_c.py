"""The training step in C: `convert-train-to-tk` + `convert-layout` + `convert-quant-to-cmsisnn`
lower an int8 `@train_step` to `cmsisnn` and `tk` ops; `emit_c` writes `model_train_step`;
the training harness (`runtime/cortex_m/main_train.c`) runs a few steps and prints the loss
bits and an FNV-1a hash of every parameter. Each must equal the interpreter of the lowered
IR bit for bit: on the host (built with ASan + UBSan) and on the Cortex-M4 in QEMU.

Models: the bundled digits CNN (own PTQ, last 3 layers trained) and, when the shared models
are present, MCUNet-5fps int8 under the paper's 99kb sparse-update scheme, whose partly
trained weights `split-sparse-params` splits (trained rows in SRAM, the rest in flash).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from xdsl.passes import PassPipeline
from xdsl.utils.exceptions import PassFailedException

from tinymlir.codegen import build as B
from tinymlir.codegen.emit_c import emit_c
from tinymlir.context import make_context
from tinymlir.frontend.onnx_importer import import_onnx
from tinymlir.dialects import train
from tinymlir.interpreter.train_impls import TrainState
from tinymlir.passes import get_tinymlir_passes
from tinymlir.pipelines import input_type, quantize_nhwc, train_pipeline

from shared_models import sample_photos, shared_model  # noqa: E402
from toolchain import require_cortex_m_toolchain  # noqa: E402
from train_step_checks import assert_same, interpreter_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOWER = "convert-train-to-tk,convert-layout,convert-quant-to-cmsisnn,split-sparse-params"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]


def lower(module, spec: str):
    PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
    module.verify()
    return module


def run_host(module, x, labels, lr, d: Path, flags=SANITIZE, compiler: str = "gcc",
             ok_exit: tuple[int, ...] = (0,)) -> B.TrainRun:
    srcs = B.write_train_harness(d, emit_c(module, prefix="model"), x, labels, lr)
    exe = B.build_host(d, srcs, name="train", shared=False, extra_flags=flags, compiler=compiler)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode in ok_exit, r.stderr[-3000:]
    return B.parse_train_output(r.stdout)


@pytest.fixture(scope="module")
def toolchain():
    require_cortex_m_toolchain()


def run_m4(module, x, labels, lr, d: Path, ram_kib: int | None = None) -> tuple[B.TrainRun, dict[str, int], int]:
    from tinymlir.codegen import qemu_icount as Q

    srcs = B.write_train_harness(d, emit_c(module, prefix="model"), x, labels, lr)
    elf = B.build_cortex_m4(d, srcs, ram_kib=ram_kib)
    res = Q.run_icount(elf, timeout=600)
    assert res.exit_code == 0, res.output[-2000:]
    return B.parse_train_output(res.output), B.size_report(elf), res.count


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits_example(tmp_path_factory):
    from tinymlir.examples.digits import make_example

    return make_example(tmp_path_factory.mktemp("digits_train"), seed=0)


def digits_module(ex: dict, rounding: str = "nearest"):
    module = lower(import_onnx(ex["onnx"]),
                   f'fold-batch-norm,quantize-ptq{{calibration="{ex["calib"]}"}},'
                   f'autodiff{{num-classes=10 trainable="last:3" rounding={rounding}}},qas,prune-backward,'
                   f'reorder-update,{LOWER}')
    xs, ys = np.load(ex["test_x"]).astype(np.float32), np.load(ex["test_y"])
    return module, xs[:1], [int(ys[0])] * 2 + [int(ys[1])]


@pytest.fixture(scope="module")
def digits_train(digits_example):
    return digits_module(digits_example)


def test_digits_stochastic_rounding_train_step_bit_exact(digits_example, tmp_path):
    """Stochastic rounding: one generator per param (`@<param>.rng`), so reorder-update
    fuses every update and the step lowers to C; C and interpreter draw the same numbers."""
    module, x, labels = digits_module(digits_example, "stochastic")
    assert 'rounding "stochastic" rng @' in str(module)
    run = run_host(module, x, labels, 0.05, tmp_path)
    losses, params = interpreter_run(module, x, labels, 0.05)
    assert_same(run, losses, params)
    assert any(n.endswith(".rng") for n in params)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_digits_train_step_host_sanitized_bit_exact(digits_train, tmp_path, compiler):
    """gcc and clang, -Wall -Wextra -Werror -std=c99, ASan + UBSan."""
    module, x, labels = digits_train
    run = run_host(module, x, labels, 0.05, tmp_path, compiler=compiler)
    losses, params = interpreter_run(module, x, labels, 0.05)
    assert_same(run, losses, params)
    assert losses[1] < losses[0], "a second step on the same example must lower its loss"


def test_digits_train_step_cortex_m4_bit_exact(digits_train, toolchain, tmp_path):
    module, x, labels = digits_train
    run, size, count = run_m4(module, x, labels, 0.05, tmp_path)
    losses, params = interpreter_run(module, x, labels, 0.05)
    assert_same(run, losses, params)
    assert 0 < run.stack_bytes < size["stack"] and count > 0
    print(f"\ndigits train_step on the Cortex-M4: {count} instructions, stack {run.stack_bytes} B, {size}")


# --------------------------------------------------------------------------- MCUNet-5fps


def lowered_paper_model(name: str, scheme: str):
    """A shared int8 model with the paper's scheme and the int8 NHWC interface (`int8-io`),
    lowered to cmsisnn + tk; and a photo quantized for that interface."""
    module = lower(import_onnx(str(shared_model(f"{name}-int8.onnx"))),
                   train_pipeline(scheme=ROOT / "schemes" / f"{name}-{scheme}.scheme") + ",int8-io")
    x = quantize_nhwc(sample_photos()[0], input_type(module))
    return lower(module, LOWER), x


@pytest.fixture(scope="module")
def mcunet_train():
    return lowered_paper_model("mcunet-5fps", "99kb")


@pytest.mark.parametrize("name, scheme, compiler", [("mbv2-w0.35", "99kb", "gcc"), ("proxyless-w0.3", "98kb", "clang")])
def test_other_paper_models_train_step_host_sanitized_bit_exact(name, scheme, compiler, tmp_path):
    """ASan + UBSan; the training step runs every forward kernel too."""
    module, x = lowered_paper_model(name, scheme)
    labels = [1, 7]
    run = run_host(module, x, labels, 0.05, tmp_path, compiler=compiler)
    losses, params = interpreter_run(module, x, labels, 0.05)
    assert_same(run, losses, params)


def test_mcunet_99kb_train_step_host_bit_exact(mcunet_train, tmp_path):
    module, x = mcunet_train
    labels = [3, 5]
    run = run_host(module, x, labels, 0.05, tmp_path)
    losses, params = interpreter_run(module, x, labels, 0.05)
    assert_same(run, losses, params)


def test_mcunet_99kb_train_step_cortex_m4_bit_exact(mcunet_train, toolchain, tmp_path):
    module, x = mcunet_train
    labels = [3, 5]
    assert "int model_train_step(const int8_t *in, int32_t label, float lr, float *loss);" in \
        emit_c(module)["model.h"]
    run, size, count = run_m4(module, x, labels, 0.05, tmp_path)  # links only if it fits 320 KiB
    losses, params = interpreter_run(module, x, labels, 0.05)
    assert_same(run, losses, params)
    print(f"\nMCUNet-5fps 99kb train_step on the Cortex-M4: {count} instructions, stack {run.stack_bytes} B, {size}")


# --------------------------------------------------------------------------- errors


def test_float_training_is_rejected_with_the_op_named(tmp_path):
    from tinymlir.examples.digits import make_example

    ex = make_example(tmp_path, seed=0)
    module = lower(import_onnx(ex["onnx"]), 'fold-batch-norm,autodiff{num-classes=10 trainable="last:1"},reorder-update')
    with pytest.raises(PassFailedException, match=r"convert-train-to-tk: cannot lower '.*'.*int8"):
        lower(module, "convert-train-to-tk")


# --------------------------------------------------------------------------- debug build


def test_guarded_debug_build_runs_clean_and_catches_an_overflow(digits_train, tmp_path):
    """emit_c(guard_bytes=16): guard bytes after every arena buffer, checked after every
    op. The real program runs clean with the same numbers; a kernel call made to write
    one element too many is caught (status -(1000 + step))."""
    module, x, labels = digits_train
    files = emit_c(module, prefix="model", guard_bytes=16)
    srcs = B.write_train_harness(tmp_path / "ok", files, x, labels, 0.05)
    exe = B.build_host(tmp_path / "ok", srcs, name="train", shared=False, extra_flags=SANITIZE)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    losses, params = interpreter_run(module, x, labels, 0.05)
    assert_same(B.parse_train_output(r.stdout), losses, params)

    c = files["model.c"]
    body = c[c.index("int model_train_step("):]
    call = next(ln for ln in body.splitlines() if "tmrt_dequantize_s8(" in ln)  # the logits, not in place
    count = int(call.split(", ")[2])
    broken = c.replace(call, call.replace(f", {count}, ", f", {count + 1}, ", 1), 1)
    assert broken != c
    srcs = B.write_train_harness(tmp_path / "bad", {"model.h": files["model.h"], "model.c": broken}, x, labels, 0.05)
    exe = B.build_host(tmp_path / "bad", srcs, name="train", shared=False)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    status = B.parse_train_output(r.stdout).status[0]
    assert status <= -1000, r.stdout[-500:]


# --------------------------------------------------------------------------- training numerics


@pytest.mark.parametrize("lr, status", [(float("nan"), 1), (1e30, 0)])
def test_non_finite_updates_are_skipped_and_huge_ones_saturate(digits_train, tmp_path, lr, status):
    """lr = NaN: every update is non-finite, so every param stays as it was and each step
    returns status 1. lr = 1e30: updates are finite but huge: weights saturate to the
    symmetric int8 range [-127, 127], biases to +-(2^31 - 1), never wrap; status 0. The
    interpreter agrees bit for bit in both cases."""
    module, x, labels = digits_train
    run = run_host(module, x, labels, lr, tmp_path, flags=["-g"], ok_exit=(status,))
    assert run.status == [status] * len(labels)
    state = TrainState(module)
    before = {k: v.copy() for k, v in state.params.items()}
    for label in labels:
        state.train_step(x, np.int32(label), np.float32(lr))
    for name, a in state.params.items():
        assert run.params[name] == (a.nbytes, B.fnv1a(np.ascontiguousarray(a).tobytes())), name
    trained = [op.sym_name.data for op in module.ops if isinstance(op, train.ParamOp) and op.is_trainable]
    if status == 1:
        assert all(np.array_equal(state.params[n], before[n]) for n in trained)
    else:
        weights = [state.params[n] for n in trained if state.params[n].dtype == np.int8]
        assert weights and all(np.abs(w.astype(np.int16)).max() == 127 and w.min() >= -127 for w in weights)
        biases = [state.params[n] for n in trained if state.params[n].dtype == np.int32]
        assert biases and max(np.abs(b.astype(np.int64)).max() for b in biases) == 2**31 - 1


@pytest.mark.parametrize("strategy", ["first-fit", "greedy-by-size"])
def test_c_arena_follows_the_plan_memory_strategy(digits_train, strategy):
    """`plan-memory{strategy=S}` before emission: the C arena is laid out with S (its
    layout comment says so), and the plan never overlaps (checked by the planner)."""
    module, _, _ = digits_train
    planned = lower(module.clone(), f"plan-memory{{strategy={strategy}}}")
    c = emit_c(planned)["model.c"]
    assert f"Arena layout of @train_step ({strategy}," in c and f"Arena layout of @forward ({strategy}," in c
    assert "(best-fit," in emit_c(module)["model.c"]
