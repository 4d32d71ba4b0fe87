"""C emission (`tinymlir.codegen.emit_c`): the generated `model_infer`, built with gcc and
the portable CMSIS-NN kernels, is bit-exact with the interpreter of the same lowered IR."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from tinymlir.codegen.emit_c import EmitCError, emit_c, include_dirs, runtime_sources
from tinymlir.frontend.onnx_importer import import_onnx
from tinymlir.interpreter import run_function
from tinymlir.tools.opt import available_passes, build_pipeline, make_full_context, parse_mlir

from shared_models import shared_model  # noqa: E402

CC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="gcc not installed")
WARN = ["-Wall", "-Wextra", "-Werror", "-std=c99"]
INT8_PIPELINE = "fuse-qdq,convert-layout,convert-quant-to-cmsisnn"


def lower(module: ModuleOp, spec: str) -> ModuleOp:
    build_pipeline(available_passes(), spec).apply(make_full_context(), module)
    module.verify()
    return module


def build(files: dict[str, str], d: Path, prefix: str):
    """Compile the generated files + runtime into a shared library; returns (lib, infer)."""
    for name, text in files.items():
        (d / name).write_text(text)
    so = d / f"lib{prefix}.so"
    cmd = [CC, "-O2", *WARN, "-fPIC", "-shared", *[f"-I{p}" for p in include_dirs()], f"-I{d}",
           str(d / f"{prefix}.c"), *map(str, runtime_sources()), "-o", str(so)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(so))
    infer = getattr(lib, f"{prefix}_infer")
    infer.restype = ctypes.c_int
    infer.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return lib, infer


def io_shapes(module: ModuleOp):
    func = next(op for op in module.ops if op.name == "func.func")
    ft = func.function_type
    return tuple(ft.inputs.data[0].get_shape()), tuple(ft.outputs.data[0].get_shape())


def check_bit_exact(module: ModuleOp, infer, inputs) -> None:
    _, out_shape = io_shapes(module)
    for x in inputs:
        x = np.ascontiguousarray(x, np.float32)
        out = np.full(out_shape, np.nan, np.float32)
        assert infer(x.ctypes.data, out.ctypes.data) == 0
        ref = run_function(module, [x])[0].astype(np.float32)
        assert ref.shape == out.shape
        mism = np.flatnonzero(ref.view(np.uint32) != out.view(np.uint32))
        assert mism.size == 0, f"{mism.size} of {out.size} outputs differ, first at {mism[0]}: {out.flat[mism[0]]} vs {ref.flat[mism[0]]}"


def random_inputs(shape, n: int, seed: int = 0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-scale, scale, shape).astype(np.float32) for _ in range(n)]
    xs.append(rng.uniform(-3 * scale, 3 * scale, shape).astype(np.float32))  # saturating inputs
    xs.append(np.zeros(shape, np.float32))
    return xs


# --------------------------------------------------------------------------- digits (own PTQ)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from tinymlir.examples.digits import make_example

    ex = make_example(tmp_path_factory.mktemp("digits"), seed=0)
    module = lower(import_onnx(ex["onnx"]),
                   f'fold-batch-norm,quantize-ptq{{calibration="{ex["calib"]}"}},convert-layout,convert-quant-to-cmsisnn')
    return ex, module


def test_digits_bit_exact(digits, tmp_path):
    ex, module = digits
    files = emit_c(module, prefix="digits")
    assert set(files) == {"digits.h", "digits.c"}
    _, infer = build(files, tmp_path, "digits")
    in_shape, _ = io_shapes(module)
    test_x = np.load(ex["test_x"])[:16].astype(np.float32)
    real = [xi.reshape(in_shape) for xi in test_x]
    check_bit_exact(module, infer, real + random_inputs(in_shape, 8, scale=float(np.abs(test_x).max())))


def test_header(digits):
    _, module = digits
    h = emit_c(module, prefix="net")["net.h"]
    assert "#ifndef NET_H" in h and "#include <stdint.h>" in h
    assert "int net_infer(const float *in, float *out);" in h
    assert "#define NET_INPUT_SIZE 256" in h and "#define NET_OUTPUT_SIZE 10" in h
    assert "#define NET_ARENA_BYTES" in h
    code = re.sub(r"/\*.*?\*/", "", h, flags=re.S)
    assert "static" not in code and "=" not in code and "{\n" not in code.replace('extern "C" {', "")  # declarations only


def test_werror_pedantic_build(digits, tmp_path):
    _, module = digits
    files = emit_c(module)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    srcs = [tmp_path / "model.c", runtime_sources()[0]]
    for src in srcs:
        r = subprocess.run([CC, "-O2", *WARN, "-pedantic", "-c", *[f"-I{p}" for p in include_dirs()], f"-I{tmp_path}",
                            str(src), "-o", str(tmp_path / (Path(src).stem + ".o"))],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    assert "malloc" not in files["model.c"]
    assert "__attribute__((aligned(16)))" in files["model.c"]


def test_deterministic(digits):
    _, module = digits
    a = emit_c(module)
    assert emit_c(module) == a
    reparsed = parse_mlir(make_full_context(), str(module), "digits.mlir")
    assert emit_c(reparsed) == a


def test_unsupported_op_is_a_one_line_error(digits, tmp_path):
    ex, _ = digits
    quantized = lower(import_onnx(ex["onnx"]), f'fold-batch-norm,quantize-ptq{{calibration="{ex["calib"]}"}}')
    with pytest.raises(EmitCError) as e:
        emit_c(quantized)
    msg = str(e.value)
    assert "\n" not in msg and "not supported" in msg and msg.split(":")[0].startswith(("quant.", "nn."))


# --------------------------------------------------------------------------- own kernels


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    so = d / "librt.so"
    r = subprocess.run([CC, "-O2", *WARN, "-fPIC", "-shared", *[f"-I{p}" for p in include_dirs()],
                        str(runtime_sources()[0]), "-o", str(so)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(so))


def test_quantize_rounds_half_to_even_and_saturates(rt):
    from tinymlir.interpreter.kernels import round_saturate

    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, 126.5, 127.5, -128.5, -129.5,
                  1e30, -1e30, 3e9, -3e9, 8388609.0, 0.0, -0.0, 1e-30], np.float32)
    rng = np.random.default_rng(1)
    for scale, zp in [(1.0, 0), (1.0, -3), (0.0078125, 5), (0.1, -128), (0.037, 127)]:
        xs = np.concatenate([x, rng.uniform(-200, 200, 2000).astype(np.float32) * np.float32(scale)])
        out = np.zeros(xs.shape, np.int8)
        rt.tmrt_quantize_s8(xs.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                            ctypes.c_int32(xs.size), ctypes.c_float(scale), ctypes.c_int32(zp))
        ref = round_saturate(xs / np.float32(scale), zp, -128, 127, np.int8)
        np.testing.assert_array_equal(out, ref)


def test_transpose_kernel(rt):
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (2, 3, 4, 5)).astype(np.int8)
    for perm in [(0, 2, 3, 1), (0, 3, 1, 2), (3, 2, 1, 0), (0, 1, 2, 3)]:
        out = np.zeros(np.transpose(x, perm).shape, np.int8)
        dims = np.array(x.shape, np.int32)
        p = np.array(perm, np.int32)
        rt.tmrt_transpose_s8(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                             dims.ctypes.data_as(ctypes.c_void_p), p.ctypes.data_as(ctypes.c_void_p))
        np.testing.assert_array_equal(out, np.transpose(x, perm))


# --------------------------------------------------------------------------- shared int8 models


@pytest.mark.parametrize("name", ["mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3"])
def test_shared_int8_model_bit_exact(name, tmp_path):
    module = lower(import_onnx(shared_model(f"{name}-int8.onnx")), INT8_PIPELINE)
    prefix = "m_" + name.replace("-", "_").replace(".", "_")
    files = emit_c(module, prefix=prefix)
    c = files[f"{prefix}.c"]
    arena = int(c.split("static int8_t arena[")[1].split("]")[0])
    assert f"#define {prefix.upper()}_ARENA_BYTES {arena}" in files[f"{prefix}.h"]
    assert c.count("arm_convolve_wrapper_s8(") == str(module).count("cmsisnn.convolve_wrapper_s8 ")
    _, infer = build(files, tmp_path, prefix)
    in_shape, _ = io_shapes(module)
    check_bit_exact(module, infer, random_inputs(in_shape, 2, seed=len(name)))


def test_cortex_m_cross_build(digits, tmp_path):
    """The generated code and the runtime compile for a Cortex-M4 (when the toolchain is installed)."""
    arm = shutil.which("arm-none-eabi-gcc")
    if arm is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    _, module = digits
    for name, text in emit_c(module).items():
        (tmp_path / name).write_text(text)
    srcs = [tmp_path / "model.c", *runtime_sources()]
    libc = ["--specs=picolibc.specs"]  # the C library's headers (string.h)
    probe = subprocess.run([arm, *libc, "-E", "-x", "c", "-"], input="#include <string.h>\n", capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip("picolibc-arm-none-eabi not installed (no C library headers for arm-none-eabi-gcc)")
    for src in srcs:
        r = subprocess.run([arm, *libc, "-mcpu=cortex-m4", "-mthumb", "-O2", *WARN, "-c",
                            *[f"-I{p}" for p in include_dirs()], f"-I{tmp_path}", str(src),
                            "-o", str(tmp_path / (Path(src).stem + ".o"))], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
