"""Cortex-M4 builds (`tinymlir.codegen.build`): the generated C, cross-compiled with
arm-none-eabi-gcc + picolibc and run in QEMU (mps2-an386), prints outputs bit-identical
to the interpreter's on the same lowered IR; and the flash/SRAM footprint is reported.

Without the toolchain the QEMU tests skip, except when CI=true, where they fail."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tinymlir.codegen import build as B
from tinymlir.codegen.emit_c import emit_c
from tinymlir.frontend.onnx_importer import import_onnx
from tinymlir.interpreter import run_function

from shared_models import shared_model  # noqa: E402
from toolchain import require_cortex_m_toolchain  # noqa: E402
from test_emit_c import INT8_PIPELINE, digits, io_shapes, lower, random_inputs  # noqa: E402, F401 (digits is a fixture)

TOOLS = ["arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"]
FLASH_BYTES, SRAM_BYTES = 1 << 20, 320 << 10


@pytest.fixture(scope="module")
def toolchain():
    require_cortex_m_toolchain(*TOOLS)


def run_on_m4(module, x, d, timeout: float = 60) -> tuple[np.ndarray, dict[str, int]]:
    srcs = B.write_cortex_m_harness(d, emit_c(module, prefix="model"), x)
    elf = B.build_cortex_m4(d, srcs)
    code, out = B.run_qemu(elf, timeout=timeout)
    status, y = B.parse_harness_output(out)
    assert status == 0 and code == 0, out[-2000:]
    return y, B.size_report(elf)


def check_bit_exact_m4(module, inputs, tmp_path, label: str) -> dict[str, int]:
    _, out_shape = io_shapes(module)
    size = None
    for i, x in enumerate(inputs):
        x = np.ascontiguousarray(x, np.float32)
        y, size = run_on_m4(module, x, tmp_path / f"in{i}")
        ref = run_function(module, [x])[0].astype(np.float32).ravel()
        assert y.size == int(np.prod(out_shape)) == ref.size
        mism = np.flatnonzero(ref.view(np.uint32) != y.view(np.uint32))
        assert mism.size == 0, f"input {i}: {mism.size} of {y.size} outputs differ, first at {mism[0]}: {y[mism[0]]} vs {ref[mism[0]]}"
    input_bytes = 4 * int(np.prod(io_shapes(module)[0]))
    print(f"\n[{label}] Cortex-M4: flash {size['flash']} B (text {size['text']} + data {size['data']}; "
          f"incl. {input_bytes} B of float test input), SRAM {size['sram']} B "
          f"(data {size['data']} + bss {size['bss']}; incl. {size['stack']} B stack)")
    assert size["flash"] <= FLASH_BYTES and size["sram"] <= SRAM_BYTES
    return size


def test_digits_qemu_bit_exact(toolchain, digits, tmp_path):
    ex, module = digits
    in_shape, _ = io_shapes(module)
    test_x = np.load(ex["test_x"])[:2].astype(np.float32)
    xs = [xi.reshape(in_shape) for xi in test_x]
    xs += random_inputs(in_shape, 0, scale=float(np.abs(test_x).max()))[:1]  # one saturating input
    check_bit_exact_m4(module, xs, tmp_path, "digits")


@pytest.mark.parametrize("name", ["mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3"])
def test_int8_model_qemu_bit_exact(toolchain, tmp_path, name):
    module = lower(import_onnx(shared_model(f"{name}-int8.onnx")), INT8_PIPELINE)
    in_shape, _ = io_shapes(module)
    check_bit_exact_m4(module, random_inputs(in_shape, 1, seed=5)[:2], tmp_path, f"{name} int8")


def test_host_harness_matches_qemu(toolchain, digits, tmp_path):
    """The same harness built for the host prints the same bits as the Cortex-M4 build."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    _, module = digits
    in_shape, _ = io_shapes(module)
    x = np.random.default_rng(3).uniform(-2, 2, in_shape).astype(np.float32)
    srcs = B.write_cortex_m_harness(tmp_path, emit_c(module, prefix="model"), x)
    exe = B.build_host(tmp_path, srcs, name="host_infer", shared=False)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    _, host = B.parse_harness_output(r.stdout)
    m4, _ = run_on_m4(module, x, tmp_path / "m4")
    np.testing.assert_array_equal(host.view(np.uint32), m4.view(np.uint32))


def test_missing_toolchain_names_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(B.shutil, "which", lambda name: None)
    with pytest.raises(B.ToolchainMissing, match="gcc-arm-none-eabi"):
        B.build_cortex_m4(tmp_path, [])
    with pytest.raises(B.ToolchainMissing, match="qemu-system-arm"):
        B.run_qemu(tmp_path / "x.elf")
    with pytest.raises(B.ToolchainMissing, match="binutils-arm-none-eabi"):
        B.size_report(tmp_path / "x.elf")


def test_input_header_is_exact(tmp_path):
    x = np.array([0.1, -1e-40, 3.4e38, -0.0, 1.0 / 3.0], np.float32)
    text = B.write_input_header(tmp_path / "input_data.h", x).read_text()
    vals = text.split("{", 1)[1].split("}", 1)[0].replace(",", " ").split()
    got = np.array([float.fromhex(v.rstrip("f")) for v in vals], np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), x.view(np.uint32))
