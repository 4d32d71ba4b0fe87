"""The Cortex-M toolchain check the tests share: skip (with the reason) when a tool or
picolibc is missing on a user's machine; fail when CI=true, where setup.sh installs them."""

from __future__ import annotations

import pytest

from tinymlir.codegen import build as B

M4_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")


def require_cortex_m_toolchain(*tools: str) -> None:
    try:
        for tool in tools or M4_TOOLS:
            B.find_tool(tool)
        B._check_picolibc(B.find_tool("arm-none-eabi-gcc"))
    except B.ToolchainMissing as e:
        if B.ci_requires_toolchain():
            pytest.fail(f"CI=true and the Cortex-M toolchain is missing: {e}")
        pytest.skip(str(e))
