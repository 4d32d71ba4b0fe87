"""Executed-instruction counts of a region of a Cortex-M program, measured in QEMU with
tinymlir's own TCG plugin (`tinymlir/runtime/qemu_plugin/icount.c`).

* `build_plugin(outdir)` -> path of the plugin shared library (host gcc, no glib needed).
* `count_instructions(elf, begin_symbol, end_symbol)` -> the number of guest instructions
  executed from the first execution of `begin_symbol`'s first instruction (included) to
  the first later execution of `end_symbol`'s (excluded).
* `run_icount(...)` is the same with the details: the count, whether each marker was
  reached, the program's exit code and its output.

The default markers are `tinymlir_region_begin`/`tinymlir_region_end` from
`tinymlir/runtime/cortex_m/region.{h,c}` (`REGION_SOURCE`, `REGION_INCLUDE`): build them
into the ELF and call them around the code to measure. Any two code symbols or addresses
work as markers, e.g. `model_infer` and `printf` in the inference harness. See
`docs/cortex-m.md`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tinymlir.codegen.build import CORTEX_M_DIR, BuildError, ToolchainMissing, find_tool
from tinymlir.codegen.emit_c import RUNTIME_DIR

__all__ = ["IcountError", "IcountResult", "PLUGIN_DIR", "PLUGIN_SOURCE", "REGION_SOURCE", "REGION_INCLUDE",
           "build_plugin", "symbol_address", "run_icount", "count_instructions"]

PLUGIN_DIR = RUNTIME_DIR / "qemu_plugin"
PLUGIN_SOURCE = PLUGIN_DIR / "icount.c"
PLUGIN_HEADER = PLUGIN_DIR / "tinymlir_qemu_plugin_api.h"
PLUGIN_NAME = "libtinymlir_icount.so"
REGION_SOURCE = CORTEX_M_DIR / "region.c"
REGION_INCLUDE = CORTEX_M_DIR
BEGIN_SYMBOL, END_SYMBOL = "tinymlir_region_begin", "tinymlir_region_end"

_RESULT = re.compile(r"tinymlir-icount: (\d+) begin=(hit|missed) end=(hit|missed)")
_built: dict[Path, Path] = {}  # outdir -> plugin built there by this process


class IcountError(BuildError):
    """The plugin could not run, QEMU rejected it, or a region marker was never reached."""


@dataclass(frozen=True)
class IcountResult:
    count: int          # instructions executed in the region (0 unless begin was hit)
    begin_hit: bool
    end_hit: bool
    exit_code: int      # the program's exit code (QEMU's, with semihosting)
    output: str         # QEMU's stderr + stdout: the program's semihosted stdout and the plugin line


def build_plugin(outdir: Path | str, timeout: float = 120) -> Path:
    """Compile the icount plugin with the host gcc into `outdir/libtinymlir_icount.so`.

    Uses tinymlir's own declaration of the QEMU plugin API (plugin API version 1, QEMU 7.x
    and 8.x; Debian ships no qemu-plugin.h). The library is written to a temporary name and
    renamed into place, so concurrent builds into the same directory are safe."""
    cc = find_tool("gcc")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / PLUGIN_NAME
    tmp = outdir / f".{PLUGIN_NAME}.{os.getpid()}.tmp"
    cmd = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "-fvisibility=hidden",
           f"-I{PLUGIN_DIR}", str(PLUGIN_SOURCE), "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    os.replace(tmp, out)
    _built[outdir.resolve()] = out
    return out


def _nm() -> str:
    path = shutil.which("arm-none-eabi-nm")
    if path is None:
        raise ToolchainMissing("arm-none-eabi-nm not found: install the Debian package binutils-arm-none-eabi "
                               "(apt-get install binutils-arm-none-eabi)")
    return path


def symbol_address(elf: Path | str, symbol: str) -> int:
    """The address of `symbol` in the ELF (arm-none-eabi-nm), with the Thumb bit cleared."""
    r = subprocess.run([_nm(), str(elf)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise IcountError(f"arm-none-eabi-nm {elf} failed: {r.stderr.strip()}")
    found = {f[2]: int(f[0], 16) for f in (ln.split() for ln in r.stdout.splitlines()) if len(f) == 3}
    if symbol not in found:
        hint = (f" (build {REGION_SOURCE.name} into the program and call the markers)"
                if symbol in (BEGIN_SYMBOL, END_SYMBOL) else "")
        raise IcountError(f"symbol {symbol!r} not found in {elf}{hint}")
    return found[symbol] & ~1


def _address(elf: Path | str, marker: str | int) -> int:
    if isinstance(marker, int):
        return marker & ~1
    return symbol_address(elf, marker)


def run_icount(elf: Path | str, begin: str | int = BEGIN_SYMBOL, end: str | int = END_SYMBOL, *,
               timeout: float = 60, plugin: Path | str | None = None, machine: str = "mps2-an386",
               qemu_args: Sequence[str] = ()) -> IcountResult:
    """Run the ELF in QEMU with the icount plugin between the markers `begin` and `end`
    (symbol names, or addresses as ints); raises IcountError if QEMU rejects the plugin or
    gives no count. Does not check the markers were reached (see `count_instructions`)."""
    qemu = find_tool("qemu-system-arm")
    elf = Path(elf)
    b, e = _address(elf, begin), _address(elf, end)
    if plugin is None:
        outdir = (elf.parent / "qemu_plugin").resolve()
        plugin = _built.get(outdir)
        if plugin is None or not plugin.is_file():
            plugin = build_plugin(outdir)
    plugin = Path(plugin).resolve()
    if "," in str(plugin):
        raise IcountError(f"the plugin path must not contain a comma (QEMU's option separator): {plugin}")
    cmd = [qemu, "-M", machine, "-nographic", "-semihosting", "-monitor", "none", "-serial", "none",
           "-kernel", str(elf), "-plugin", f"{plugin},begin={b:#x},end={e:#x}", "-d", "plugin", *qemu_args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise IcountError(f"QEMU did not finish within {timeout} s (the program never exits?): "
                          f"{' '.join(cmd)}") from None
    output = r.stderr + r.stdout
    matches = _RESULT.findall(output)
    if not matches:
        raise IcountError(f"no count from the icount plugin (QEMU exit code {r.returncode}; did QEMU "
                          f"reject the plugin?): {' '.join(cmd)}\n{output[-2000:]}")
    n, bh, eh = matches[-1]
    return IcountResult(int(n), bh == "hit", eh == "hit", r.returncode, output)


def count_instructions(elf: Path | str, begin_symbol: str | int = BEGIN_SYMBOL, end_symbol: str | int = END_SYMBOL,
                       *, timeout: float = 60, plugin: Path | str | None = None, machine: str = "mps2-an386",
                       qemu_args: Sequence[str] = (), check_exit: bool = True) -> int:
    """Instructions executed from the first execution of `begin_symbol` (included) to the
    first later execution of `end_symbol` (excluded), running the semihosted ELF in QEMU.

    Raises IcountError if a marker is never reached, QEMU rejects the plugin, or (with
    `check_exit`) the program exits with a non-zero code. `qemu_args` are appended to
    QEMU's command line (they must not redirect its log with -D: the count is read from
    stderr). Without `plugin`, the plugin is
    built into `<elf dir>/qemu_plugin/` once per process."""
    res = run_icount(elf, begin_symbol, end_symbol, timeout=timeout, plugin=plugin, machine=machine,
                     qemu_args=qemu_args)
    tail = res.output[-2000:]
    if not res.begin_hit:
        raise IcountError(f"the begin marker {begin_symbol!r} was never executed in {elf}\n{tail}")
    if not res.end_hit:
        raise IcountError(f"the end marker {end_symbol!r} was never executed after the begin marker "
                          f"{begin_symbol!r} in {elf}\n{tail}")
    if check_exit and res.exit_code != 0:
        raise IcountError(f"the program exited with code {res.exit_code}\n{tail}")
    return res.count
