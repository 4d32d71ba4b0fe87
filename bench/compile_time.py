"""Compile time of tinymlir, ONNX -> C: import, each pass, emit_c; then the C compile.

    python bench/compile_time.py                        # the three shared models
    python bench/compile_time.py --models mcunet-5fps --repeats 5 --json out.json

Per model and pipeline (the sparse training step of bench/speed.py, with the paper's scheme,
and the int8 inference pipeline `fuse-qdq,convert-layout,convert-quant-to-cmsisnn`):
`import_onnx`, every pass of the pipeline (timed with xDSL's PassPipeline callback),
`emit_c`; "ONNX -> C" is their sum (target: <= 5 s per model). Then the C compile of the
generated `model.c` alone (`gcc -O2 -c`, the flags of `build_host`) and the whole host
build (`build_host`: model.c + tinymlir runtime + portable CMSIS-NN, linked into a shared
library). Each figure is the median of `--repeats` runs in this process (the first run also
pays xDSL's and numpy's warm-up; it is reported separately as "first"). The Python start-up
(importing tinymlir, xDSL, onnx) happens once per process and is reported on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_PROCESS = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

T_IMPORT0 = time.perf_counter()
from xdsl.passes import PassPipeline  # noqa: E402

from tinymlir.codegen import build as B  # noqa: E402
from tinymlir.codegen.emit_c import emit_c, include_dirs  # noqa: E402
from tinymlir.context import make_context  # noqa: E402
from tinymlir.frontend.onnx_importer import import_onnx  # noqa: E402
from tinymlir.passes import get_tinymlir_passes  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T_IMPORT0

MODELS = {"mcunet-5fps": "mcunet-5fps-99kb.scheme", "mbv2-w0.35": "mbv2-w0.35-99kb.scheme",
          "proxyless-w0.3": "proxyless-w0.3-98kb.scheme"}
DEFAULT_DIR = Path(os.environ.get("TINYMLIR_MODELS", REPO.parent / "shared" / "models"))
from tinymlir.pipelines import LOWER_INFER, LOWER_TRAIN  # noqa: E402

TARGET_SECONDS = 5.0


def train_spec(scheme: Path) -> str:
    return (f'fuse-qdq,autodiff{{num-classes=10}},qas,sparse-update{{scheme="{scheme}"}},'
            f"prune-backward,reorder-update,{LOWER_TRAIN}")


INFER_SPEC = f"fuse-qdq,{LOWER_INFER}"


def compile_once(onnx_path: Path, spec: str, outdir: Path | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """One ONNX -> C run: {"import": s, "pass <name>": s (in pipeline order), "emit_c": s}
    and the emitted files (written to outdir if given)."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    module = import_onnx(str(onnx_path))
    times["import"] = time.perf_counter() - t0
    last = [time.perf_counter()]
    seen: dict[str, int] = {}

    def callback(prev, _module, _next) -> None:
        now = time.perf_counter()
        if prev is not None:
            name = prev.name
            seen[name] = seen.get(name, 0) + 1
            key = f"pass {name}" + (f" #{seen[name]}" if seen[name] > 1 else "")
            times[key] = now - last[0]
        last[0] = time.perf_counter()

    pipeline = PassPipeline.parse_spec(get_tinymlir_passes(), spec, callback=callback)
    pipeline.apply(make_context(), module)
    t0 = time.perf_counter()
    files = emit_c(module, prefix="model")
    times["emit_c"] = time.perf_counter() - t0
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (outdir / name).write_text(text)
    return times, files


def cc_model_only(outdir: Path, extra_flags: list[str] | None = None) -> float:
    """Seconds of `gcc -O2 -c model.c` with build_host's flags."""
    cmd = ["gcc", "-O2", *B.WARN, *B.FP_FLAGS, "-fPIC", *(extra_flags or []),
           *[f"-I{p}" for p in [*include_dirs(), outdir]], "-c", str(outdir / "model.c"), "-o", str(outdir / "model.o")]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise B.BuildError(f"{' '.join(cmd)}\n{r.stderr}")
    return time.perf_counter() - t0


def cc_full(outdir: Path) -> float:
    """Seconds of `build_host` (model.c + runtime + CMSIS-NN -> shared library)."""
    t0 = time.perf_counter()
    B.build_host(outdir, [outdir / "model.c"], name="libmodel.so")
    return time.perf_counter() - t0


def bench_pipeline(model: str, kind: str, onnx_path: Path, spec: str, workdir: Path, repeats: int,
                   compile_c: bool = True) -> dict:
    """Median (and first) seconds of every stage over `repeats` runs, plus the C compiles."""
    runs = []
    files: dict[str, str] = {}
    for i in range(max(1, repeats)):
        times, files = compile_once(onnx_path, spec, workdir if i == 0 else None)
        runs.append(times)
    stages = list(runs[0])
    med = {k: statistics.median(r[k] for r in runs) for k in stages}
    totals = [sum(r.values()) for r in runs]
    row = {"model": model, "pipeline": kind, "spec": spec, "stages": med, "first": runs[0],
           "onnx_to_c": statistics.median(totals), "onnx_to_c_first": totals[0], "repeats": len(runs),
           "model_c_bytes": len(files.get("model.c", ""))}
    if compile_c:
        row["cc_model_c"] = statistics.median(cc_model_only(workdir) for _ in range(max(1, min(repeats, 3))))
        row["cc_build_host"] = cc_full(workdir)
    return row


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def summary_table(rows: list[dict]) -> str:
    head = ["model", "pipeline", "import", "passes", "emit_c", "ONNX -> C", "first run", "<= 5 s",
            "model.c MB", "gcc -c model.c", "build_host"]
    out = []
    for r in rows:
        st = r["stages"]
        passes = sum(v for k, v in st.items() if k.startswith("pass "))
        out.append([r["model"], r["pipeline"], f"{st['import']:.2f}", f"{passes:.2f}", f"{st['emit_c']:.2f}",
                    f"{r['onnx_to_c']:.2f}", f"{r['onnx_to_c_first']:.2f}",
                    "yes" if r["onnx_to_c"] <= TARGET_SECONDS else "NO",
                    f"{r['model_c_bytes'] / 1e6:.1f}",
                    f"{r['cc_model_c']:.2f}" if "cc_model_c" in r else "-",
                    f"{r['cc_build_host']:.2f}" if "cc_build_host" in r else "-"])
    return table(head, out)


def pass_table(rows: list[dict]) -> str:
    """Seconds per pass (columns: model/pipeline)."""
    cols = [f"{r['model']} {r['pipeline']}" for r in rows]
    names: list[str] = []
    for r in rows:
        for k in r["stages"]:
            if k.startswith("pass ") and k[5:] not in names:
                names.append(k[5:])
    body = [[n] + [f"{r['stages'][f'pass {n}']:.3f}" if f"pass {n}" in r["stages"] else "" for r in rows]
            for n in names]
    return table(["pass"] + cols, body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeats", type=int, default=3, help="runs per pipeline (median reported)")
    ap.add_argument("--no-infer", action="store_true", help="only the training pipeline")
    ap.add_argument("--no-cc", action="store_true", help="skip the C compiles")
    ap.add_argument("--json", type=Path, help="write every measurement to this file")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    t_start = time.perf_counter()
    load0 = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="tinymlir-compile-time-") as tmp:
        for model in models:
            onnx_path = args.models_dir / f"{model}-int8.onnx"
            if not onnx_path.exists():
                notes.append(f"{onnx_path}: not found")
                continue
            pipes = [("train (sparse)", train_spec((REPO / "schemes" / MODELS[model]).resolve()))]
            if not args.no_infer:
                pipes.append(("inference", INFER_SPEC))
            for kind, spec in pipes:
                d = Path(tmp) / model / kind.split()[0]
                row = bench_pipeline(model, kind, onnx_path, spec, d, args.repeats, compile_c=not args.no_cc)
                rows.append(row)
                print(f"[{model} {kind}] ONNX -> C {row['onnx_to_c']:.2f}s (first {row['onnx_to_c_first']:.2f}s)",
                      file=sys.stderr, flush=True)
    load1 = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"Python start-up: importing tinymlir + xDSL + their dependencies took {IMPORT_SECONDS:.2f}s "
          f"(once per process, not in the table); load average {load0} at start, {load1} at end")
    print(f"\nONNX -> C, seconds, median of {args.repeats} runs (first run separately); C compile with gcc -O2\n")
    print(summary_table(rows))
    print("\nper pass, seconds (median)\n")
    print(pass_table(rows))
    for note in notes:
        print(f"note: {note}")
    elapsed = time.perf_counter() - t_start
    print(f"({elapsed:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"python_import_seconds": IMPORT_SECONDS, "loadavg": [load0, load1],
                                         "rows": rows, "notes": notes, "seconds": elapsed}, indent=2))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
