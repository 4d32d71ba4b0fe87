"""Building generated C: for the host (gcc) and for a Cortex-M4 (arm-none-eabi-gcc + picolibc),
running the Cortex-M4 ELF in QEMU and reporting its flash/SRAM footprint.

* `build_host(outdir, sources, ...)` -> path of a shared library (default) or executable.
* `build_cortex_m4(outdir, sources, ...)` -> path of an ELF for a Cortex-M4F, linked with
  picolibc (semihosting crt0 and OS layer) and `tinymlir/runtime/cortex_m/cortex_m4.ld`
  (FLASH 1 MiB at 0x0, SRAM 320 KiB at 0x20000000, picolibc's section layout).
* `run_qemu(elf, timeout)` -> `(exit_code, stdout_text)` on QEMU's `mps2-an386` board
  (picolibc's semihosted stdout arrives on QEMU's stderr; the exit code is the program's).
* `size_report(elf)` -> text/data/bss and the derived flash (text+data) / SRAM (data+bss).
* `write_cortex_m_harness(outdir, files, x)` writes the emitted `model.h`/`model.c`, an
  `input_data.h` holding `x` and returns the sources to build with `main_infer.c`.
* `parse_harness_output(text)` -> the float32 outputs the harness printed (hex of their bits).

A missing tool raises `ToolchainMissing`, naming the Debian package that provides it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tinymlir.codegen.emit_c import RUNTIME_DIR, include_dirs, runtime_sources

__all__ = ["BuildError", "ToolchainMissing", "CORTEX_M_DIR", "LINKER_SCRIPT", "HARNESS", "M4_FLAGS",
           "find_tool", "write_input_header", "ci_requires_toolchain", "build_host", "build_cortex_m4", "run_qemu", "size_report",
           "write_cortex_m_harness", "parse_harness_output", "TRAIN_HARNESS", "write_train_harness",
           "parse_train_output", "TrainRun", "fnv1a"]

CORTEX_M_DIR = RUNTIME_DIR / "cortex_m"
LINKER_SCRIPT = CORTEX_M_DIR / "cortex_m4.ld"
TRAIN_HARNESS = CORTEX_M_DIR / "main_train.c"
HARNESS = CORTEX_M_DIR / "main_infer.c"
WARN = ["-Wall", "-Wextra", "-Werror", "-std=c99"]
# No fused multiply-add: the training kernels round every float32 product and sum, as the
# interpreter (tinymlir/interpreter/tk_math.py) does, so C and interpreter agree bit for bit.
FP_FLAGS = ["-ffp-contract=off"]
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]

PACKAGES = {  # tool -> Debian package
    "gcc": "gcc",
    "clang": "clang",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "picolibc": "picolibc-arm-none-eabi",
}


class BuildError(Exception):
    """A compile or link step failed (the message holds the command and the compiler's stderr)."""


class ToolchainMissing(BuildError):
    """A needed tool is not installed; the message names the Debian package."""


def find_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainMissing(f"{name} not found: install the Debian package {PACKAGES.get(name, name)} "
                               f"(apt-get install {PACKAGES.get(name, name)})")
    return path


def _check_picolibc(cc: str) -> None:
    r = subprocess.run([cc, "--specs=picolibc.specs", "-print-file-name=picolibc.specs"],
                       capture_output=True, text=True)
    if r.returncode != 0 or not Path(r.stdout.strip()).is_file():
        raise ToolchainMissing("picolibc.specs not found: install the Debian package picolibc-arm-none-eabi "
                               "(apt-get install picolibc-arm-none-eabi)")


def _run(cmd: Sequence[str], timeout: float) -> None:
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise BuildError(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr}")


def _includes(outdir: Path, extra: Iterable[Path | str]) -> list[str]:
    return [f"-I{p}" for p in [*include_dirs(), CORTEX_M_DIR, outdir, *extra]]


def build_host(outdir: Path | str, sources: Sequence[Path | str], *, name: str = "libmodel.so",
               shared: bool = True, include: Iterable[Path | str] = (), extra_flags: Sequence[str] = (),
               with_runtime: bool = True, compiler: str = "gcc", timeout: float = 300) -> Path:
    """`gcc -O3` (or `compiler`, e.g. clang) the sources (plus the tinymlir runtime and
    portable CMSIS-NN unless `with_runtime=False`) into `outdir/name`: a shared library,
    or an executable if not `shared`."""
    cc = find_tool(compiler)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / name
    srcs = [*sources, *(runtime_sources() if with_runtime else [])]
    kind = ["-fPIC", "-shared"] if shared else []
    # -O3: gcc 12 vectorizes the kernels' channel loops only there (1.4-2x faster on the
    # host, same bits: bench/speed.py --flags-experiment)
    _run([cc, "-O3", *WARN, *FP_FLAGS, *kind, *extra_flags, *_includes(outdir, include), *srcs, "-o", out, "-lm"], timeout)
    return out


def build_cortex_m4(outdir: Path | str, sources: Sequence[Path | str], *, name: str = "model.elf",
                    include: Iterable[Path | str] = (), extra_flags: Sequence[str] = (),
                    linker_script: Path | str = LINKER_SCRIPT, with_runtime: bool = True,
                    ram_kib: int | None = None, timeout: float = 300) -> Path:
    """Compile and link the sources (plus runtime and portable CMSIS-NN) for a Cortex-M4F
    with picolibc's semihosting crt0/OS layer; returns the ELF path. `ram_kib` overrides
    the SRAM size of the linker script (320 KiB), e.g. to run a program that does not fit
    yet while measuring how much it needs."""
    cc = find_tool("arm-none-eabi-gcc")
    _check_picolibc(cc)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if ram_kib is not None:
        text = Path(linker_script).read_text()
        text, n = re.subn(r"__ram_size\s*=\s*0x[0-9a-fA-F]+;", f"__ram_size   = {ram_kib * 1024:#x};", text)
        if n != 1:
            raise BuildError(f"{linker_script}: no __ram_size to override")
        linker_script = outdir / f"cortex_m4_{ram_kib}k.ld"
        linker_script.write_text(text)
    elf = outdir / name
    srcs = [*sources, *(runtime_sources() if with_runtime else [])]
    cmd = [cc, *M4_FLAGS, "-O2", *WARN, *FP_FLAGS, "--specs=picolibc.specs", "--crt0=semihost", "--oslib=semihost",
           "-ffunction-sections", "-fdata-sections", *extra_flags, *_includes(outdir, include),
           "-T", str(linker_script), f"-Wl,-Map={outdir / (elf.stem + '.map')}",
           *srcs, "-o", elf, "-lm"]
    _run(cmd, timeout)
    return elf


def run_qemu(elf: Path | str, timeout: float = 60, machine: str = "mps2-an386") -> tuple[int, str]:
    """Run a semihosted ELF in QEMU; returns (the program's exit code, its stdout text)."""
    qemu = find_tool("qemu-system-arm")
    cmd = [qemu, "-M", machine, "-nographic", "-semihosting", "-monitor", "none", "-serial", "none",
           "-kernel", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    # semihosted output goes to QEMU's stderr; keep stdout too (normally empty)
    return r.returncode, r.stderr + r.stdout


def size_report(elf: Path | str) -> dict[str, int]:
    """`arm-none-eabi-size` of the ELF: Berkeley text, data, bss; flash = text + data
    (initialised data is stored in flash too); sram = data + bss, which includes the
    linker script's stack reservation, given separately as `stack` (from `size -A`)."""
    size = find_tool("arm-none-eabi-size")
    r = subprocess.run([size, "-B", str(elf)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise BuildError(f"arm-none-eabi-size failed: {r.stderr}")
    head, vals = (ln.split() for ln in r.stdout.strip().splitlines()[:2])
    row = dict(zip(head, vals))
    text, data, bss = int(row["text"]), int(row["data"]), int(row["bss"])
    r = subprocess.run([size, "-A", str(elf)], capture_output=True, text=True, timeout=60)
    sections = {f[0]: int(f[1]) for f in (ln.split() for ln in r.stdout.splitlines())
                if len(f) == 3 and f[0].startswith(".") and f[1].isdigit()}
    stack = sections.get(".stack", 0)
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "sram": data + bss,
            "stack": stack, "sram_static": data + bss - stack}


# --------------------------------------------------------------------------- harness


def write_input_header(path: Path | str, x: np.ndarray, name: str = "tinymlir_input") -> Path:
    """A header with `static const float name[N]` holding x exactly (C99 hex float
    literals), or `static const int8_t name[N]` for an int8 x."""
    x = np.ascontiguousarray(x)
    if x.dtype == np.int8:
        ctype, vals = "int8_t", [str(int(v)) for v in x.ravel()]
    else:
        x = np.ascontiguousarray(x, np.float32)
        if not np.all(np.isfinite(x)):
            raise BuildError("the harness input must be finite")
        ctype, vals = "float", [float(v).hex() + "f" for v in x.ravel()]
    rows = ["    " + ", ".join(vals[i:i + 16]) + "," for i in range(0, len(vals), 16)]
    text = "\n".join([
        "/* generated by tinymlir.codegen.build: the harness input (exact values) */",
        f"#ifndef {name.upper()}_H", f"#define {name.upper()}_H", "",
        "#include <stdint.h>", "",
        f"#define {name.upper()}_COUNT {x.size}", "",
        f"static const {ctype} {name}[{max(x.size, 1)}] = {{", *rows, "};", "", "#endif", ""])
    path = Path(path)
    path.write_text(text)
    return path


def write_cortex_m_harness(outdir: Path | str, files: dict[str, str], x: np.ndarray) -> list[Path]:
    """Write `model.h`/`model.c` (emitted with prefix "model") and `input_data.h` into outdir;
    returns the C sources to pass to `build_cortex_m4` (model.c and the harness). A model
    with int8 outputs (`int8-io`) gets an int8 output buffer, printed as decimals."""
    if set(files) != {"model.h", "model.c"}:
        raise BuildError(f"the harness needs emit_c(..., prefix='model'), got {sorted(files)}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (outdir / name).write_text(text)
    header = write_input_header(outdir / "input_data.h", x)
    if "int8_t *out)" in files["model.h"]:  # int8-io: the harness prints int8 logits
        header.write_text(header.read_text().replace("#include <stdint.h>\n", "#include <stdint.h>\n\n"
                                                     "#define TINYMLIR_OUTPUT_INT8 1\n", 1))
    return [outdir / "model.c", HARNESS]


def fnv1a(data: bytes) -> int:
    """FNV-1a 32-bit hash (as the training harness prints per parameter)."""
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _c_float_literal(x: float) -> str:
    """An exact C float expression for x, NaN and infinities included."""
    x = float(np.float32(x))
    if np.isnan(x):
        return '__builtin_nanf("")'
    if np.isinf(x):
        return "__builtin_inff()" if x > 0 else "(-__builtin_inff())"
    return f"{x.hex()}f"


def write_train_harness(outdir: Path | str, files: dict[str, str], x: np.ndarray, labels: Sequence[int],
                        lr: float) -> list[Path]:
    """Write `model.h`/`model.c` (prefix "model") and `train_data.h` (the input, one label
    per step, the learning rate) into outdir; returns the sources of the training harness
    (`runtime/cortex_m/main_train.c`), which builds for the host and the Cortex-M4."""
    if set(files) != {"model.h", "model.c"}:
        raise BuildError(f"the harness needs emit_c(..., prefix='model'), got {sorted(files)}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (outdir / name).write_text(text)
    write_input_header(outdir / "train_input.h", x, name="train_input")
    (outdir / "train_data.h").write_text("\n".join([
        "/* generated by tinymlir.codegen.build: what the training harness runs */",
        "#ifndef TINYMLIR_TRAIN_DATA_H", "#define TINYMLIR_TRAIN_DATA_H", "",
        '#include "train_input.h"', "",
        f"#define TRAIN_STEPS {len(labels)}",
        f"#define TRAIN_LR {_c_float_literal(lr)}",
        f"static const int32_t train_labels[{max(len(labels), 1)}] = {{{', '.join(str(int(v)) for v in labels) or '0'}}};",
        "", "#endif", ""]))
    return [outdir / "model.c", TRAIN_HARNESS, CORTEX_M_DIR / "region.c"]


@dataclass
class TrainRun:
    """What the training harness printed: per step status and loss, per param its size
    and FNV-1a hash, and the measured stack bytes (-1 on the host)."""

    status: list[int]
    loss: list[float]
    params: dict[str, tuple[int, int]]
    stack_bytes: int


def parse_train_output(text: str) -> TrainRun:
    run = TrainRun([], [], {}, -1)
    try:
        for ln in (ln.strip() for ln in text.splitlines()):
            f = ln.split()
            if ln.startswith("STEP "):
                run.status.append(int(f[3]))
                run.loss.append(float(np.array([int(f[5], 16)], np.uint32).view(np.float32)[0]))
            elif ln.startswith("PARAM "):
                run.params[f[1]] = (int(f[2]), int(f[3], 16))
            elif ln.startswith("STACK "):
                run.stack_bytes = int(f[1])
            elif ln == "END":
                return run
    except (ValueError, IndexError) as e:
        raise BuildError(f"unexpected training harness output ({e}):\n{text[-2000:]}") from None
    raise BuildError(f"truncated training harness output:\n{text[-2000:]}")


def parse_harness_output(text: str) -> tuple[int, np.ndarray]:
    """(model_infer status, float32 outputs) from the harness's printout."""
    lines = [ln.strip() for ln in text.splitlines()]
    try:
        status = int(next(ln for ln in lines if ln.startswith("STATUS ")).split()[1])
        b = next(i for i, ln in enumerate(lines) if ln.startswith("BEGIN "))
        n = int(lines[b].split()[1])
        vals = lines[b + 1:b + 1 + n]
        if len(vals) != n or lines[b + 1 + n] != "END":
            raise ValueError("truncated output")
    except (StopIteration, ValueError, IndexError) as e:
        raise BuildError(f"unexpected harness output ({e}):\n{text[-2000:]}") from None
    return status, np.array([int(v, 16) for v in vals], np.uint32).view(np.float32)


def ci_requires_toolchain() -> bool:
    return os.environ.get("CI", "").lower() == "true"
