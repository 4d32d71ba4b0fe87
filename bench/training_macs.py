"""MACs of one training step of the shared models: forward, backward with every parameter
trained, and backward with the paper's sparse-update schemes, before and after pruning.

    python bench/training_macs.py                  # fp32 twins, and int8 where autodiff takes it
    python bench/training_macs.py --no-int8 --models-dir /path/to/models

Each model goes through `autodiff{num-classes=10}` (int8: `fuse-qdq,autodiff{...},qas`),
then per scheme of shared/models/README.md (tinymlir/passes/scheme.py: PAPER_SCHEMES)
`sparse-update{scheme=...}`, `prune-backward`, `reorder-update`. The counts come from the
IR's shapes (tinymlir/passes/macs.py): convolutions and matrix products, forward and
backward; element-wise ops count 0. "sparse" is after sparse-update alone (the frozen
parameters' gradients are still computed, only partially trained weights' gradients
shrink), "sparse+pruned" after prune-backward (reorder-update changes no MAC: it is
checked to be the same).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xdsl.dialects.builtin import ModuleOp  # noqa: E402
from xdsl.passes import PassPipeline  # noqa: E402

from tinymlir.context import make_context  # noqa: E402
from tinymlir.passes import get_tinymlir_passes  # noqa: E402
from tinymlir.passes.macs import format_macs, train_step_macs  # noqa: E402
from tinymlir.passes.scheme import PAPER_SCHEMES  # noqa: E402

MODELS = ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")
DEFAULT_DIR = Path(os.environ.get("TINYMLIR_MODELS", REPO.parent / "shared" / "models"))


def run(module: ModuleOp, spec: str) -> ModuleOp:
    PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
    return module


def training_module(path: Path, int8: bool) -> ModuleOp:
    from tinymlir.frontend import import_onnx

    module = import_onnx(str(path))
    return run(module, "fuse-qdq,autodiff{num-classes=10},qas" if int8 else "autodiff{num-classes=10}")


def rows_for(model: str, precision: str, module: ModuleOp, tmp: Path) -> list[list[str]]:
    full = train_step_macs(module)
    rows = [[model, precision, "full update", format_macs(full.forward.macs), format_macs(full.backward.macs),
             "", "", ""]]
    for scheme, text in PAPER_SCHEMES[model].items():
        path = tmp / f"{model}-{scheme}.scheme"
        path.write_text(f"# {model} {scheme} (shared/models/README.md)\n{text}")
        m = run(module.clone(), f'sparse-update{{scheme="{path}"}}')
        sparse = train_step_macs(m)
        run(m, "prune-backward")
        pruned = train_step_macs(m)
        run(m, "reorder-update")
        reordered = train_step_macs(m)
        assert reordered.backward.macs == pruned.backward.macs, (model, scheme)
        assert pruned.forward.macs == full.forward.macs, (model, scheme)
        rows.append([model, precision, scheme, format_macs(full.forward.macs), format_macs(full.backward.macs),
                     format_macs(sparse.backward.macs), format_macs(pruned.backward.macs),
                     f"{pruned.backward.macs / full.backward.macs:.1%}"])
    return rows


def table(rows: list[list[str]]) -> str:
    head = ["model", "weights", "scheme", "forward", "backward full", "backward sparse", "backward sparse+pruned",
            "pruned / full"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--no-int8", action="store_true", help="only the fp32 twins")
    args = ap.parse_args(argv)
    rows: list[list[str]] = []
    notes: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            for precision in ("fp32",) + (() if args.no_int8 else ("int8",)):
                path = args.models_dir / f"{model}-{precision}.onnx"
                if not path.exists():
                    notes.append(f"{path}: not found")
                    continue
                try:
                    module = training_module(path, precision == "int8")
                except Exception as e:  # the int8 path may not be there yet
                    notes.append(f"{model} {precision}: skipped ({type(e).__name__}: {str(e).splitlines()[0]})")
                    continue
                rows += rows_for(model, precision, module, Path(tmp))
    print(table(rows))
    for note in notes:
        print(f"note: {note}")
    print(f"({time.perf_counter() - t0:.1f}s; MACs of convolutions and matrix products only, batch 1, 128x128, "
          f"10-class classifier)")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
