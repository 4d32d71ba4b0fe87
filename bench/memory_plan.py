"""Activation-arena peaks of the shared int8 models, inference and training step, by the
static memory planner (tinymlir/codegen/memory_plan.py).

    python bench/memory_plan.py [--models-dir DIR] [--json out.json] [--no-input]

Inference: `fuse-qdq`, function @forward. Training: `fuse-qdq,autodiff{num-classes=10},qas,
sparse-update{scheme=schemes/<model>-<99|98>kb.scheme}` ("sparse"), then `prune-backward`
("+prune"), then `reorder-update` ("+reorder"), function @train_step. For each: arena bytes
by greedy-by-size (TFLite Micro), first-fit (TinyEngine style) and best-fit (several
orderings, the smallest kept), the lower bound (largest bytes live at one op) and the
trainable bytes (train.param symbols marked trainable + optimizer state).

The numbers are the IR-level activation arena at the training level (NCHW quant ops, fp32
gradients, 1-bit masks), before NHWC lowering and without kernel scratch buffers: not yet
the Cortex-M binary's SRAM. By default the function's fp32 input image (1x3x128x128xf32,
192 KB) counts as an arena buffer; `--no-input` leaves it out (the int8 image it is
quantized into still counts), which is closer to a deployment feeding int8 pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xdsl.dialects.builtin import ModuleOp  # noqa: E402
from xdsl.passes import PassPipeline  # noqa: E402

from tinymlir.codegen.memory_plan import STRATEGIES, find_func, memory_report  # noqa: E402
from tinymlir.context import make_context  # noqa: E402
from tinymlir.passes import get_tinymlir_passes  # noqa: E402

DEFAULT_DIR = Path(os.environ.get("TINYMLIR_MODELS", REPO.parent / "shared" / "models"))
# model -> (scheme file, the paper's peak memory for sparse update + operator reordering)
MODELS = {
    "mcunet-5fps": ("mcunet-5fps-99kb.scheme", "173 KB"),
    "mbv2-w0.35": ("mbv2-w0.35-99kb.scheme", "141 KB"),
    "proxyless-w0.3": ("proxyless-w0.3-98kb.scheme", "135 KB"),
}
SHORT = {"greedy-by-size": "greedy", "first-fit": "first-fit", "best-fit": "best-fit"}


def run(module: ModuleOp, spec: str) -> ModuleOp:
    PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
    return module


def kb(n: int) -> str:
    return f"{n / 1024:.1f}"


def model_rows(name: str, models_dir: Path, include_args: bool) -> tuple[list[list[str]], list[dict]]:
    from tinymlir.frontend import import_onnx

    scheme, paper = MODELS[name]
    module = run(import_onnx(str(models_dir / f"{name}-int8.onnx")), "fuse-qdq")
    stages = [("inference", module.clone(), "forward")]
    run(module, f'autodiff{{num-classes=10}},qas,sparse-update{{scheme="{REPO / "schemes" / scheme}"}}')
    stages.append(("train: sparse", module.clone(), "train_step"))
    run(module, "prune-backward")
    stages.append(("train: sparse+prune", module.clone(), "train_step"))
    run(module, "reorder-update")
    stages.append(("train: sparse+prune+reorder", module, "train_step"))
    rows, reports = [], []
    for label, m, fn in stages:
        r = memory_report(find_func(m, fn), include_args=include_args)
        r.update(model=name, stage=label, scheme=scheme if fn == "train_step" else None)
        reports.append(r)
        rows.append([name, label, *(kb(r["arena_bytes"][s]) for s in STRATEGIES), kb(r["lower_bound"]),
                     f"{r['peak_op_index']} {r['peak_op']}", kb(r["trainable_bytes"]) if fn == "train_step" else "-",
                     paper if label.endswith("reorder") else ""])
    return rows, reports


def table(rows: list[list[str]]) -> str:
    head = ["model", "stage", *(f"{SHORT[s]} KB" for s in STRATEGIES), "lower bound KB", "peak at op",
            "trainable KB", "paper (sparse+reorder)"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--json", type=Path, help="also write every report (with the peak's live buffers) here")
    ap.add_argument("--no-input", action="store_true", help="leave the fp32 input image out of the arena")
    args = ap.parse_args()
    start = time.time()
    rows, reports = [], []
    for name in MODELS:
        path = args.models_dir / f"{name}-int8.onnx"
        if not path.exists():
            print(f"skipping {name}: {path} not found", file=sys.stderr)
            continue
        r, rep = model_rows(name, args.models_dir, not args.no_input)
        rows += r
        reports += rep
    print("IR-level activation arena (training level: NCHW quant ops, fp32 gradients, 1-bit masks; before NHWC"
          " lowering and kernel scratch - not yet the Cortex-M binary's SRAM). "
          + ("fp32 input image excluded." if args.no_input else "fp32 input image (192 KB) included.")
          + " KB = 1024 bytes; trainable = trainable params + optimizer state, kept outside the arena.\n")
    print(table(rows))
    print(f"\n({time.time() - start:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
