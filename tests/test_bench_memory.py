"""Smoke test of bench/memory.py: its core function on MCUNet-5fps (99kb scheme), sparse
update (IR plan) and sparse + reordering (built for the Cortex-M4 when the toolchain is
there, not run in QEMU), without PyTorch. Skipped without the shared models."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from shared_models import shared_model

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "bench" / "memory.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_memory_bench_mcunet_no_qemu(tmp_path):
    path = shared_model("mcunet-5fps-int8.onnx")
    M = _bench()
    notes: list[str] = []
    rows = M.measure(["mcunet-5fps"], path.parent, qemu=False, torch_=False,
                     variants=["sparse update", "sparse + reorder"], workdir=tmp_path, notes=notes)
    assert [r.variant for r in rows] == ["sparse update", "sparse + reorder"], notes
    sparse, reorder = rows
    assert sparse.source == "IR plan"
    assert reorder.source in ("M4 build (not run)", "C (model.h)")
    for r in rows:
        assert r.arena > 0 and r.trainable > 0 and r.peak >= r.arena + r.trainable
        assert r.paper_kb > 0 and r.ratio > 0
    assert (sparse.paper_kb, reorder.paper_kb) == (560, 173)
    assert round(reorder.target_kb) == 138 and reorder.target_met in (True, False)
    # the same trainable set; reordering only shrinks the arena
    assert reorder.detail["trainable_params"] == sparse.detail["trainable_params"]
    assert reorder.detail["ir_plan"]["arena"] < sparse.arena
    if reorder.source == "M4 build (not run)":
        assert reorder.static_sram >= reorder.arena + reorder.trainable and reorder.flash > 0
        assert reorder.stack is None and reorder.instructions is None

    text = M.table(rows)
    lines = text.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == M.COLUMNS
    for want in ("arena KB", "trainable KB", "stack KB", "peak KB", "static SRAM KB", "flash KB", "instructions",
                 "fits 256 KB", "fits 320 KB", "paper KB", "ours/paper", "target KB", "target", "torch KB"):
        assert want in head
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert len(body) == 2
    for cells in body:
        row = dict(zip(head, cells))
        for col in ("arena KB", "trainable KB", "peak KB", "paper KB", "ours/paper"):
            assert float(row[col]) > 0, (col, row)
