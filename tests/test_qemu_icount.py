"""Executed-instruction counts under QEMU (`tinymlir.codegen.qemu_icount`, the TCG plugin
`tinymlir/runtime/qemu_plugin/icount.c` and the markers `tinymlir/runtime/cortex_m/region.c`).

The test program runs a loop with a fixed inline-asm body of 5 instructions, so the region
count is known exactly (5 N + 2, see LOOP_PROGRAM), and a straight-line/loop block with
labels in the middle of a translation block. The counts are cross-checked against an
independent oracle: QEMU itself, running one instruction per translation block and
logging every executed block (`-d exec,nochain`), and by additivity over the whole program.

Without the toolchain the tests skip, except when CI=true, where they fail."""

from __future__ import annotations

import re
import subprocess

import pytest

from tinymlir.codegen import build as B
from tinymlir.codegen import qemu_icount as Q

TOOLS = ["gcc", "arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm"]
BODY = 5  # instructions per loop iteration in LOOP_PROGRAM

LOOP_PROGRAM = r"""
#include <stdio.h>
#include "region.h"

volatile unsigned test_iters = ITERS;  /* data, so the ELFs differ only in it */

/* A marker that is never executed (main calls it only if test_iters == 0). */
__attribute__((noinline)) void test_never_called(void) { __asm__ volatile("" ::: "memory"); }

/* The region, all in asm: begin's `bx lr` (1) + ITERS * 5 + the `bl tinymlir_region_end` (1). */
static __attribute__((noinline)) void loop(unsigned n)
{
    __asm__ volatile(
        "mov r4, %0\n\t"
        "bl tinymlir_region_begin\n\t"
        "1:\n\t"
        "nop\n\t"
        "adds r5, r5, #3\n\t"
        "eors r5, r5, r4\n\t"
        "subs r4, r4, #1\n\t"
        "bne 1b\n\t"
        "bl tinymlir_region_end\n\t"
        : : "r"(n) : "r0", "r1", "r2", "r3", "r4", "r5", "r12", "lr", "cc", "memory");
}

/* Labels in the middle of a translation block: the first time through, the block starts at
 * the function entry; afterwards at 1:. mid_a -> mid_b is 3 instructions; mid_b -> (the next)
 * mid_a is 4 (nop, subs, bne, nop). */
static __attribute__((noinline)) void mid_block(void)
{
    __asm__ volatile(
        "movs r4, #4\n\t"
        "1:\n\t"
        "nop\n\t"
        ".global test_mid_a\n"
        "test_mid_a:\n\t"
        "nop\n\t"
        "nop\n\t"
        "nop\n\t"
        ".global test_mid_b\n"
        "test_mid_b:\n\t"
        "nop\n\t"
        "subs r4, r4, #1\n\t"
        "bne 1b\n\t"
        : : : "r4", "cc");
}

int main(void)
{
    mid_block();
    loop(test_iters);
    if (test_iters == 0)
        test_never_called();
    printf("icount test done\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def toolchain():
    """Skip (with the reason) when the toolchain is missing, unless CI=true: then fail."""
    try:
        for tool in TOOLS:
            B.find_tool(tool) if tool != "arm-none-eabi-nm" else Q._nm()
        B._check_picolibc(B.find_tool("arm-none-eabi-gcc"))
    except B.ToolchainMissing as e:
        if B.ci_requires_toolchain():
            pytest.fail(f"CI=true and the QEMU/Cortex-M toolchain is missing: {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def plugin(toolchain, tmp_path_factory):
    return Q.build_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module")
def elfs(toolchain, tmp_path_factory):
    """{iterations: ELF} for the loop program."""
    d = tmp_path_factory.mktemp("icount")
    src = d / "loop.c"
    src.write_text(LOOP_PROGRAM)
    return {n: B.build_cortex_m4(d, [src, Q.REGION_SOURCE], name=f"loop{n}.elf", include=[Q.REGION_INCLUDE],
                                 extra_flags=[f"-DITERS={n}"], with_runtime=False)
            for n in (1000, 2000)}


def one_insn_per_tb() -> list[str]:
    """QEMU options for translation blocks of one instruction (renamed in QEMU 8.1)."""
    out = subprocess.run([B.find_tool("qemu-system-arm"), "--version"], capture_output=True, text=True).stdout
    major, minor = map(int, re.search(r"version (\d+)\.(\d+)", out).groups())
    return ["-singlestep"] if (major, minor) < (8, 1) else ["-accel", "tcg,one-insn-per-tb=on"]


def oracle_count(elf, begin: str, end: str, tmp_path) -> int:
    """The count by QEMU alone: one instruction per block, every executed block logged."""
    log = tmp_path / f"{elf.stem}-{begin}-{end}.log"
    cmd = [B.find_tool("qemu-system-arm"), "-M", "mps2-an386", "-nographic", "-semihosting", "-monitor", "none",
           "-serial", "none", "-kernel", str(elf), *one_insn_per_tb(), "-d", "exec,nochain", "-D", str(log)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    pcs = [int(m, 16) for m in re.findall(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/", log.read_text(), re.M)]
    b = pcs.index(Q.symbol_address(elf, begin))
    e = pcs.index(Q.symbol_address(elf, end), b + 1)
    return e - b


def test_loop_count_is_exact(elfs, plugin):
    counts = {n: Q.count_instructions(elf, plugin=plugin) for n, elf in elfs.items()}
    print(f"\nregion counts: {counts}")
    assert counts[2000] - counts[1000] == 1000 * BODY
    for n, c in counts.items():
        assert c == BODY * n + 2, (n, c)


def test_deterministic(elfs, plugin):
    elf = elfs[1000]
    assert Q.count_instructions(elf, plugin=plugin) == Q.count_instructions(elf, plugin=plugin)
    whole = [Q.count_instructions(elf, "_start", "_exit", plugin=plugin) for _ in range(2)]
    assert whole[0] == whole[1] > 0


def test_region_is_whole_minus_outside_and_matches_qemu_trace(elfs, plugin, tmp_path):
    elf = elfs[1000]
    region = Q.count_instructions(elf, plugin=plugin)
    before = Q.count_instructions(elf, "_start", Q.BEGIN_SYMBOL, plugin=plugin)
    after = Q.count_instructions(elf, Q.END_SYMBOL, "_exit", plugin=plugin)
    whole = Q.count_instructions(elf, "_start", "_exit", plugin=plugin)
    print(f"\nwhole {whole} = before {before} + region {region} + after {after}")
    assert before > 0 and after > 0 and region == BODY * 1000 + 2
    assert whole == before + region + after
    # The independent oracle, for the region and for the whole program.
    assert oracle_count(elf, Q.BEGIN_SYMBOL, Q.END_SYMBOL, tmp_path) == region
    assert oracle_count(elf, "_start", "_exit", tmp_path) == whole


@pytest.mark.parametrize("begin, end, expected", [("test_mid_a", "test_mid_b", 3), ("test_mid_b", "test_mid_a", 4)])
def test_markers_mid_block(elfs, plugin, tmp_path, begin, end, expected):
    elf = elfs[1000]
    assert Q.count_instructions(elf, begin, end, plugin=plugin) == expected
    # The same with one instruction per block (every marker at a block start).
    assert Q.count_instructions(elf, begin, end, plugin=plugin, qemu_args=one_insn_per_tb()) == expected
    assert oracle_count(elf, begin, end, tmp_path) == expected


def test_one_insn_per_tb_agrees(elfs, plugin):
    elf = elfs[2000]
    for begin, end in [(Q.BEGIN_SYMBOL, Q.END_SYMBOL), ("_start", "_exit")]:
        assert (Q.count_instructions(elf, begin, end, plugin=plugin)
                == Q.count_instructions(elf, begin, end, plugin=plugin, qemu_args=one_insn_per_tb()))


def test_default_plugin_and_addresses(elfs):
    elf = elfs[1000]
    b, e = Q.symbol_address(elf, Q.BEGIN_SYMBOL), Q.symbol_address(elf, Q.END_SYMBOL)
    assert Q.count_instructions(elf, b | 1, e) == BODY * 1000 + 2  # plugin built next to the ELF
    res = Q.run_icount(elf)
    assert (res.count, res.begin_hit, res.end_hit, res.exit_code) == (BODY * 1000 + 2, True, True, 0)
    assert "icount test done" in res.output


def test_errors(elfs, plugin, tmp_path):
    elf = elfs[1000]
    with pytest.raises(Q.IcountError, match="begin marker 'test_never_called' was never executed"):
        Q.count_instructions(elf, "test_never_called", Q.END_SYMBOL, plugin=plugin)
    with pytest.raises(Q.IcountError, match="end marker 'test_never_called' was never executed"):
        Q.count_instructions(elf, Q.BEGIN_SYMBOL, "test_never_called", plugin=plugin)
    with pytest.raises(Q.IcountError, match="symbol 'no_such_symbol' not found"):
        Q.count_instructions(elf, "no_such_symbol", Q.END_SYMBOL, plugin=plugin)
    bogus = tmp_path / "not_a_plugin.so"
    bogus.write_text("not an ELF\n")
    with pytest.raises(Q.IcountError, match="reject the plugin"):
        Q.count_instructions(elf, plugin=bogus)
