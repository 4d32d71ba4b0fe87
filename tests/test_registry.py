"""The registries: every key is the name of what it registers, and the tools see them all.

A pass getter imports its module; a pass module that is not written yet makes its test
fail here (on purpose: the registry promises a pass that does not exist).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from xdsl.ir import Dialect
from xdsl.passes import ModulePass
from xdsl.universe import Universe

from tinymlir.dialects import get_tinymlir_dialects
from tinymlir.passes import get_tinymlir_passes
from tinymlir.universe import TINYMLIR_UNIVERSE

OPT = [sys.executable, "-m", "tinymlir.tools.opt"]


@pytest.mark.parametrize("name", sorted(get_tinymlir_passes()))
def test_pass_key_is_the_pass_name(name):
    cls = get_tinymlir_passes()[name]()
    assert isinstance(cls, type) and issubclass(cls, ModulePass)
    assert cls.name == name


@pytest.mark.parametrize("name", sorted(get_tinymlir_dialects()))
def test_dialect_key_is_the_dialect_name(name):
    dialect = get_tinymlir_dialects()[name]()
    assert isinstance(dialect, Dialect)
    assert dialect.name == name
    for op in dialect.operations:
        assert op.name.startswith(name + "."), op.name
    for attr in dialect.attributes:
        assert attr.name.startswith(name + "."), attr.name


def test_universe_entry_point_holds_the_registries():
    assert set(TINYMLIR_UNIVERSE.all_dialects) == set(get_tinymlir_dialects())
    assert set(TINYMLIR_UNIVERSE.all_passes) == set(get_tinymlir_passes())
    # Installed: xDSL's multiverse finds our plugin, without name clashes.
    multiverse = Universe.get_multiverse()
    assert set(get_tinymlir_dialects()) <= set(multiverse.all_dialects)
    assert set(get_tinymlir_passes()) <= set(multiverse.all_passes)


def test_opt_tool_registers_everything_once():
    from tinymlir.tools.opt import TinyMLIROptMain

    tool = TinyMLIROptMain(args=[])  # would raise if a dialect were registered twice
    names = set(tool.ctx.registered_dialect_names)
    assert {"nn", "quant", "builtin", "func", "arith"} <= names
    assert set(get_tinymlir_passes()) | {"canonicalize", "cse", "dce"} <= set(tool.available_passes)
    assert {"mlir", "onnx"} <= set(tool.available_frontends)


def test_list_passes_lists_ours_and_xdsls():
    r = subprocess.run([*OPT, "--list-passes"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = r.stdout.split()
    assert listed == sorted(listed)
    for name in [*get_tinymlir_passes(), "canonicalize", "cse", "dce"]:
        assert name in listed


def test_list_dialects_lists_ours():
    r = subprocess.run([*OPT, "--list-dialects"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert {"nn", "quant", "builtin", "func"} <= set(r.stdout.split())


def test_help_shows_the_listing_flags_and_our_passes():
    r = subprocess.run([*OPT, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--list-passes" in r.stdout and "--list-dialects" in r.stdout
    flat = "".join(r.stdout.split())  # argparse wraps lines, even inside a pass name
    for name in get_tinymlir_passes():
        assert name in flat


def test_clashing_plugins_fall_back_to_xdsl_and_tinymlir(monkeypatch, capsys):
    from tinymlir.tools import opt

    def clash():
        raise ValueError("Duplicate definition of nn in ['other', 'tinymlir'].")

    monkeypatch.setattr(Universe, "get_multiverse", staticmethod(clash))
    opt._universe.cache_clear()
    try:
        passes, dialects = opt.available_passes(), opt.available_dialects()
    finally:
        opt._universe.cache_clear()
    assert "warning: ignoring xdsl.universe plugins: Duplicate definition of nn" in capsys.readouterr().err
    assert set(get_tinymlir_passes()) | {"canonicalize", "cse"} <= set(passes)
    assert set(get_tinymlir_dialects()) | {"builtin", "arith"} <= set(dialects)
