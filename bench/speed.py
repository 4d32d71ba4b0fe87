"""Speed of the generated C: host training step vs PyTorch, host inference vs onnxruntime,
and executed instructions on a Cortex-M4 (QEMU) of a sparse and a full training step.

    python bench/speed.py                                   # all three models, QEMU included
    python bench/speed.py --models mcunet-5fps --repeats 20 --no-qemu --json out.json
    python bench/speed.py --flags-experiment                # + (d) the C built with other gcc flags

Per model (../shared/models/<model>-int8.onnx, or $TINYMLIR_MODELS):

(a) host training step, batch 1, 128x128. C: the deployed step, i.e. the pipeline
    `fuse-qdq,autodiff{num-classes=10},qas,sparse-update{scheme=...},prune-backward,
    reorder-update` + `LOWER_TRAIN` (int8 NHWC input, partly trained weights split by
    `split-sparse-params`), `emit_c`, gcc -O3 (`build_host`, a shared library called
    through ctypes: `model_train_step`), single-threaded, fed the int8 quantization of the
    float input torch gets (quantized once, outside the timing: a camera delivers int8). PyTorch: the fp32 twin (`<model>-fp32.onnx`, converted by
    bench/onnx_to_torch.py) with a new 10-class classifier and the same trainable set (the
    scheme's biases and weights and the classifier; a weight the scheme trains on a subset
    of output channels requires grad as a whole tensor in torch, which computes its whole
    gradient), forward + cross-entropy + backward + SGD step, with 2 and with 1 intra-op
    threads (`--threads 2,1`; the brief's reference is 2). Row "full" (unless `--no-full`):
    every layer trained, the same pipeline without `sparse-update` (torch: every tensor).
(b) host inference: the C `model_infer` of `fuse-qdq` + `LOWER_INFER` (int8 NHWC in, int8
    logits out) vs onnxruntime (CPU provider, the same thread counts) on the int8 ONNX
    (float input, which it quantizes itself).
(c) (unless `--no-qemu`) QEMU `mps2-an386` Cortex-M4: instructions executed by the first
    training step of the harness (`runtime/cortex_m/main_train.c`, region markers), sparse
    and full update, and by one `model_infer` (from `model_infer` to the harness's first
    `printf`); SRAM of the ELF (data + bss, stack included). The linker script's SRAM is
    enlarged (`--ram-kib`, 4 MiB) so that programs which do not fit 320 KiB still run.
(d) (`--flags-experiment`) the same generated C (sparse step, inference) built with extra
    gcc flags, timed against each other, with a check that all builds compute the same bits.

Times: median (and min) of `--repeats` runs after warm-up; the C and the torch (or
onnxruntime) calls alternate, each after a short sleep so that the other's spinning thread
pool has gone idle, so both see the same machine load; only their ratio is meaningful.
Every input is a fixed pseudo-random tensor in [-1, 1]; the same label every step.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from xdsl.dialects.builtin import ModuleOp  # noqa: E402
from xdsl.passes import PassPipeline  # noqa: E402

from tinymlir.context import make_context  # noqa: E402
from tinymlir.passes import get_tinymlir_passes  # noqa: E402

MODELS = {"mcunet-5fps": "mcunet-5fps-99kb.scheme", "mbv2-w0.35": "mbv2-w0.35-99kb.scheme",
          "proxyless-w0.3": "proxyless-w0.3-98kb.scheme"}
DEFAULT_DIR = Path(os.environ.get("TINYMLIR_MODELS", REPO.parent / "shared" / "models"))
SCHEMES_DIR = REPO / "schemes"
from tinymlir.pipelines import LOWER_INFER, LOWER_TRAIN  # noqa: E402

LR = 0.01


# --------------------------------------------------------------------------- what to run


@dataclass
class Case:
    """One model: how to build its C training step(s) and inference, and its torch twin."""

    name: str
    train_onnx: Path              # imported for the training pipelines
    train_spec: str               # the (sparse) training pipeline, lowered to cmsisnn + tk
    infer_onnx: Path              # imported for the inference pipeline
    infer_spec: str
    torch_onnx: Path              # float twin for PyTorch
    ort_onnx: Path                # what onnxruntime runs
    torch_biases: list[int]       # layer indices whose bias torch trains (classifier included)
    torch_weights: list[int]      # layer indices whose weight torch trains (whole tensors)
    partial_weights: dict[int, float] = field(default_factory=dict)  # layer -> ratio < 1 (C only)
    full_spec: str | None = None  # every layer trained (None: no full-update row)
    num_classes: int = 10
    label: int = 3


def shared_case(model: str, models_dir: Path = DEFAULT_DIR, scheme: Path | None = None) -> Case:
    """The benchmark case of a shared model with its paper scheme (MODELS)."""
    from tinymlir.passes.scheme import load_scheme

    scheme = Path(scheme or SCHEMES_DIR / MODELS[model]).resolve()
    s = load_scheme(scheme)
    n_layers = count_layers(models_dir / f"{model}-fp32.onnx")
    cls = n_layers - 1
    ratios = s.ratios()
    biases = sorted(set(range(cls - s.bias_last, cls)) | {cls})
    weights = sorted({layer for layer, r in ratios.items() if r > 0} | {cls})
    head = "fuse-qdq,autodiff{num-classes=10},qas"
    tail = f"prune-backward,reorder-update,{LOWER_TRAIN}"
    return Case(name=model, train_onnx=models_dir / f"{model}-int8.onnx",
                train_spec=f'{head},sparse-update{{scheme="{scheme}"}},{tail}',
                full_spec=f"{head},{tail}",
                infer_onnx=models_dir / f"{model}-int8.onnx", infer_spec=f"fuse-qdq,{LOWER_INFER}",
                torch_onnx=models_dir / f"{model}-fp32.onnx", ort_onnx=models_dir / f"{model}-int8.onnx",
                torch_biases=biases, torch_weights=weights,
                partial_weights={layer: r for layer, r in ratios.items() if 0 < r < 1})


def count_layers(onnx_path: Path) -> int:
    """Conv / Gemm / MatMul nodes: tinymlir's layer numbering (autodiff, schemes)."""
    import onnx

    return sum(n.op_type in ("Conv", "Gemm", "MatMul") for n in onnx.load(str(onnx_path)).graph.node)


# --------------------------------------------------------------------------- compile


def lower(module: ModuleOp, spec: str) -> ModuleOp:
    PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
    module.verify()
    return module


def lowered(onnx_path: Path, spec: str) -> tuple[ModuleOp, object]:
    """The module of `spec` and the quantized type of its int8 input (read right after
    `int8-io`, before `convert-quant-to-cmsisnn` retypes it)."""
    from tinymlir.frontend.onnx_importer import import_onnx
    from tinymlir.pipelines import run_pipeline_reading_input_type

    return run_pipeline_reading_input_type(import_onnx(str(onnx_path)), spec)


def int8_input(x: np.ndarray, itype) -> np.ndarray:
    from tinymlir.pipelines import quantize_nhwc

    return quantize_nhwc(x, itype)


class CModel:
    """A generated model built as a shared library: `train_step(x, label, lr) -> (status, loss)`
    (if the module has @train_step) and `infer(x, out) -> status`."""

    def __init__(self, module: ModuleOp, outdir: Path, extra_flags: Sequence[str] = ()):
        from tinymlir.codegen import build as B
        from tinymlir.codegen.emit_c import emit_c

        outdir.mkdir(parents=True, exist_ok=True)
        files = emit_c(module, prefix="model")
        for name, text in files.items():
            (outdir / name).write_text(text)
        self.header = files["model.h"]
        t0 = time.perf_counter()
        self.so = B.build_host(outdir, [outdir / "model.c"], name="libmodel.so", extra_flags=list(extra_flags))
        self.compile_seconds = time.perf_counter() - t0
        self.lib = ctypes.CDLL(str(self.so))
        self.macros = {ln.split()[1]: int(ln.split()[2]) for ln in self.header.splitlines()
                       if ln.startswith("#define ") and len(ln.split()) == 3 and ln.split()[2].isdigit()}
        self._infer = self.lib.model_infer
        self._infer.restype = ctypes.c_int
        self._infer.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.has_train = "model_train_step" in self.header
        if self.has_train:
            self._train = self.lib.model_train_step
            self._train.restype = ctypes.c_int
            self._train.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_float, ctypes.POINTER(ctypes.c_float)]
        self._loss = ctypes.c_float()

    def train_step(self, x: np.ndarray, label: int, lr: float) -> tuple[int, float]:
        status = self._train(x.ctypes.data, label, lr, ctypes.byref(self._loss))
        return status, self._loss.value

    def infer(self, x: np.ndarray, out: np.ndarray) -> int:
        return self._infer(x.ctypes.data, out.ctypes.data)


# --------------------------------------------------------------------------- torch / onnxruntime


def torch_train_setup(case: Case, threads: Sequence[int] = (2,)):
    """({threads: step function}, trainable tensor count, trainable elements) of the torch
    twin; each step function sets torch's intra-op thread count before its step."""
    import torch

    from bench.onnx_to_torch import replace_classifier, set_trainable, torch_model_from_onnx

    model = torch_model_from_onnx(case.torch_onnx)
    replace_classifier(model, case.num_classes)
    params = set_trainable(model, biases=case.torch_biases, weights=case.torch_weights)
    opt = torch.optim.SGD(params, lr=LR)
    shape = tuple(model_input_shape(case.torch_onnx))
    x = torch.from_numpy(example_input(shape))
    y = torch.tensor([case.label])

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    def with_threads(n: int) -> Callable[[], float]:
        def run() -> float:
            torch.set_num_threads(n)
            return step()
        return run

    return {n: with_threads(n) for n in threads}, len(params), sum(p.numel() for p in params)


def torch_full_setup(case: Case, threads: Sequence[int] = (2,)):
    n = count_layers(case.torch_onnx)
    full = Case(**{**asdict(case), "torch_biases": list(range(n)), "torch_weights": list(range(n))})
    return torch_train_setup(full, threads)


def ort_setup(case: Case, threads: Sequence[int] = (2,)) -> dict[int, Callable[[], object]]:
    """{threads: run function} of onnxruntime (CPU provider) sessions on `case.ort_onnx`."""
    import onnxruntime as ort

    runs = {}
    for n in threads:
        so = ort.SessionOptions()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(case.ort_onnx), so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = example_input(tuple(d if isinstance(d, int) else 1 for d in inp.shape))
        runs[n] = (lambda s, name, v: lambda: s.run(None, {name: v}))(sess, inp.name, x)
    return runs


def model_input_shape(onnx_path: Path) -> list[int]:
    import onnx

    g = onnx.load(str(onnx_path)).graph
    inits = {t.name for t in g.initializer}
    inp = next(i for i in g.input if i.name not in inits)
    return [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]


def example_input(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """A deterministic input in [-1, 1] (the models' input range)."""
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


# --------------------------------------------------------------------------- timing


def measure(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3,
            warmup_seconds: float = 1.0, settle: float = 0.02) -> dict[str, list[float]]:
    """Wall seconds of each function, called round-robin (so all see the same load): first
    `warmup` rounds (and at least `warmup_seconds`) untimed, then `repeats` timed rounds.
    Each timed call is preceded by a `settle`-second sleep: the thread pools of torch
    (OpenMP) and onnxruntime keep spinning for a while after a call, and would otherwise
    steal the CPU from the next (single-threaded C) call."""
    t_end = time.perf_counter() + warmup_seconds
    done = 0
    while done < warmup or time.perf_counter() < t_end:
        for fn in fns.values():
            fn()
        done += 1
        if done >= 50:
            break
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if settle > 0:
                time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def median_ms(ts: Sequence[float]) -> float:
    return statistics.median(ts) * 1e3


# --------------------------------------------------------------------------- QEMU


def qemu_train(module: ModuleOp, x: np.ndarray, label: int, outdir: Path, ram_kib: int,
               timeout: float = 1800) -> dict:
    """Instructions of one training step on the Cortex-M4 (QEMU) and the ELF's size."""
    from tinymlir.codegen import build as B
    from tinymlir.codegen import qemu_icount as Q
    from tinymlir.codegen.emit_c import emit_c

    srcs = B.write_train_harness(outdir, emit_c(module, prefix="model"), x, [label], LR)
    elf = B.build_cortex_m4(outdir, srcs, ram_kib=ram_kib)
    t0 = time.perf_counter()
    res = Q.run_icount(elf, timeout=timeout)
    if res.exit_code != 0 or not (res.begin_hit and res.end_hit):
        raise RuntimeError(f"QEMU run failed (exit {res.exit_code}, begin {res.begin_hit}, end {res.end_hit}): "
                           f"{res.output[-500:]}")
    run = B.parse_train_output(res.output)
    return {"instructions": res.count, "qemu_seconds": time.perf_counter() - t0, "stack": run.stack_bytes,
            **B.size_report(elf)}


def qemu_infer(module: ModuleOp, x: np.ndarray, outdir: Path, ram_kib: int, timeout: float = 1800) -> dict:
    """Instructions of one `model_infer` on the Cortex-M4 (QEMU, from `model_infer` to the
    harness's first `printf`) and the ELF's size."""
    from tinymlir.codegen import build as B
    from tinymlir.codegen import qemu_icount as Q
    from tinymlir.codegen.emit_c import emit_c

    srcs = B.write_cortex_m_harness(outdir, emit_c(module, prefix="model"), x)
    elf = B.build_cortex_m4(outdir, srcs, ram_kib=ram_kib)
    t0 = time.perf_counter()
    res = Q.run_icount(elf, "model_infer", "printf", timeout=timeout)
    if res.exit_code != 0 or not (res.begin_hit and res.end_hit):
        raise RuntimeError(f"QEMU run failed (exit {res.exit_code}): {res.output[-500:]}")
    return {"instructions": res.count, "qemu_seconds": time.perf_counter() - t0, **B.size_report(elf)}


# --------------------------------------------------------------------------- per model


def bench_case(case: Case, workdir: Path, *, repeats: int = 10, threads: Sequence[int] = (2, 1),
               full: bool = True, qemu: bool = True, ram_kib: int = 4096, cflags: Sequence[str] = (),
               warmup_seconds: float = 1.0, log: Callable[[str], None] = print) -> dict:
    """Run (a), (b) and (c) for one case. `threads`: the torch / onnxruntime thread counts
    to compare with (the first one is the headline ratio). Returns {"model", "train": [rows],
    "infer": row, "qemu": row or None, "notes": [...]}; times in ms, ratios C / reference."""
    out: dict = {"model": case.name, "train": [], "infer": None, "qemu": None, "notes": []}
    t0 = time.perf_counter()
    sparse_mod, itype = lowered(case.train_onnx, case.train_spec)
    log(f"[{case.name}] sparse training pipeline: {time.perf_counter() - t0:.1f}s")
    x = int8_input(example_input(model_input_shape(case.torch_onnx)), itype)
    variants = [("sparse", sparse_mod, torch_train_setup)]
    full_mod = None
    if full and case.full_spec:
        try:
            t0 = time.perf_counter()
            full_mod, _ = lowered(case.train_onnx, case.full_spec)
            log(f"[{case.name}] full training pipeline: {time.perf_counter() - t0:.1f}s")
            variants.append(("full", full_mod, torch_full_setup))
        except Exception as e:  # report, do not stop the benchmark
            out["notes"].append(f"{case.name}: full update does not build: {type(e).__name__}: {str(e).splitlines()[0]}")

    # (a) host training step
    for kind, module, setup in variants:
        c = CModel(module, workdir / f"host-train-{kind}", cflags)
        steps, n_tensors, n_elems = setup(case, threads)
        status, loss0 = c.train_step(x, case.label, LR)
        if status not in (0, 1):
            raise RuntimeError(f"{case.name} {kind}: model_train_step returned {status}")
        fns = {"c": lambda: c.train_step(x, case.label, LR), **{f"torch{n}": f for n, f in steps.items()}}
        times = measure(fns, repeats, warmup_seconds=warmup_seconds)
        c_ms = median_ms(times["c"])
        ref = {str(n): median_ms(times[f"torch{n}"]) for n in threads}
        out["train"].append({
            "model": case.name, "update": kind, "c_ms": c_ms, "torch_ms": ref,
            "ratio": {n: c_ms / v for n, v in ref.items()},
            "c_min_ms": min(times["c"]) * 1e3,
            "torch_min_ms": {str(n): min(times[f"torch{n}"]) * 1e3 for n in threads},
            "c_trainable_bytes": c.macros.get("MODEL_TRAINABLE_BYTES", 0),
            "torch_trainable_tensors": n_tensors, "torch_trainable_elements": n_elems,
            "c_first_loss": loss0, "repeats": repeats})
        log(f"[{case.name}] train {kind}: C {c_ms:.1f} ms, " +
            ", ".join(f"torch {n} thr {v:.1f} ms (C/torch {c_ms / v:.2f})" for n, v in ref.items()))

    # (b) host inference
    t0 = time.perf_counter()
    infer_mod, itype_i = lowered(case.infer_onnx, case.infer_spec)
    log(f"[{case.name}] inference pipeline: {time.perf_counter() - t0:.1f}s")
    ci = CModel(infer_mod, workdir / "host-infer", cflags)
    xi = int8_input(example_input(model_input_shape(case.ort_onnx)), itype_i)
    y = np.zeros(ci.macros["MODEL_OUTPUT_SIZE"], np.int8)
    if ci.infer(xi, y) != 0:
        raise RuntimeError(f"{case.name}: model_infer failed")
    runs = ort_setup(case, threads)
    times = measure({"c": lambda: ci.infer(xi, y), **{f"ort{n}": f for n, f in runs.items()}}, repeats,
                    warmup_seconds=warmup_seconds)
    c_ms = median_ms(times["c"])
    ref = {str(n): median_ms(times[f"ort{n}"]) for n in threads}
    out["infer"] = {"model": case.name, "c_ms": c_ms, "ort_ms": ref, "ratio": {n: c_ms / v for n, v in ref.items()},
                    "c_min_ms": min(times["c"]) * 1e3,
                    "ort_min_ms": {str(n): min(times[f"ort{n}"]) * 1e3 for n in threads}, "repeats": repeats}
    log(f"[{case.name}] infer: C {c_ms:.2f} ms, " +
        ", ".join(f"onnxruntime {n} thr {v:.2f} ms (C/ORT {c_ms / v:.2f})" for n, v in ref.items()))

    # (c) QEMU instruction counts
    if qemu:
        row: dict = {"model": case.name}
        try:
            from tinymlir.codegen import build as B

            for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"):
                B.find_tool(tool)
            B._check_picolibc(B.find_tool("arm-none-eabi-gcc"))
        except Exception as e:
            out["notes"].append(f"{case.name}: QEMU skipped: {e}")
            return out
        for kind, module in (("sparse", sparse_mod), ("full", full_mod)):
            if module is None:
                row[kind] = None
                continue
            try:
                t0 = time.perf_counter()
                row[kind] = qemu_train(module, x, case.label, workdir / f"m4-train-{kind}", ram_kib)
                log(f"[{case.name}] QEMU train {kind}: {row[kind]['instructions']:,} instructions, "
                    f"SRAM {row[kind]['sram'] / 1024:.0f} KiB ({time.perf_counter() - t0:.0f}s)")
            except Exception as e:
                row[kind] = None
                out["notes"].append(f"{case.name}: QEMU {kind} training step failed: {type(e).__name__}: "
                                    f"{str(e).strip().splitlines()[0][:300]}")
        try:
            t0 = time.perf_counter()
            row["infer"] = qemu_infer(infer_mod, xi, workdir / "m4-infer", ram_kib)
            log(f"[{case.name}] QEMU infer: {row['infer']['instructions']:,} instructions "
                f"({time.perf_counter() - t0:.0f}s)")
        except Exception as e:
            row["infer"] = None
            out["notes"].append(f"{case.name}: QEMU inference failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        out["qemu"] = row
    return out


FLAG_VARIANTS = {"-O3 (build_host)": [], "-O3 -fvect-cost-model=dynamic": ["-fvect-cost-model=dynamic"],
                 "-O2": ["-O2"], "-O3 -march=native": ["-march=native"]}


def flags_experiment(case: Case, workdir: Path, repeats: int = 10, variants: dict[str, list[str]] | None = None,
                     log: Callable[[str], None] = print) -> list[dict]:
    """The same generated C (sparse training step, inference) built with each set of extra
    gcc flags (after build_host's -O3 -ffp-contract=off), timed round-robin; rows of
    {"model", "function", "flags", "ms", "vs_default"}."""
    variants = variants or FLAG_VARIANTS
    rows = []
    for function, spec, onnx_path in (("train_step", case.train_spec, case.train_onnx),
                                      ("infer", case.infer_spec, case.infer_onnx)):
        module, itype = lowered(onnx_path, spec)
        x = int8_input(example_input(model_input_shape(onnx_path)), itype)
        libs = {name: CModel(module, workdir / f"flags-{function}-{i}", flags)
                for i, (name, flags) in enumerate(variants.items())}
        first = next(iter(libs.values()))
        y = np.zeros(first.macros["MODEL_OUTPUT_SIZE"], np.int8)
        fns = {name: ((lambda c: lambda: c.train_step(x, case.label, LR))(c) if function == "train_step"
                      else (lambda c: lambda: c.infer(x, y))(c)) for name, c in libs.items()}
        times = measure(fns, repeats)
        # every build has run the same calls from the same state: their next results must agree
        results = {}
        for name, c in libs.items():
            if function == "train_step":
                results[name] = np.float32(c.train_step(x, case.label, LR)[1]).tobytes()
            else:
                c.infer(x, y)
                results[name] = y.tobytes()
        base = median_ms(next(iter(times.values())))
        ref = next(iter(results.values()))
        for name, ts in times.items():
            rows.append({"model": case.name, "function": function, "flags": name, "ms": median_ms(ts),
                         "vs_default": median_ms(ts) / base, "same_result": results[name] == ref})
            log(f"[{case.name}] {function} {name}: {median_ms(ts):.1f} ms ({median_ms(ts) / base:.2f} x build_host)")
    return rows


# --------------------------------------------------------------------------- tables


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} M"


def _ms(median: float, best: float) -> str:
    f = lambda v: f"{v:.1f}" if v >= 10 else f"{v:.2f}"  # noqa: E731
    return f"{f(median)} ({f(best)})"


def _ratio(median: float, best: float) -> str:
    return f"{median:.2f} ({best:.2f})"


def tables(results: list[dict]) -> dict[str, str]:
    """Markdown tables of `bench_case` results: "train", "infer" and (if any) "qemu"."""
    out = {}
    train = [r for res in results for r in res["train"]]
    if train:
        ths = list(train[0]["torch_ms"])
        head = ["model", "update", "C trainable", "torch trainable tensors / elements", "C step ms"]
        head += [f"torch {n} thr ms" for n in ths] + [f"C / torch {n} thr" for n in ths]
        rows = [[r["model"], r["update"], f"{r['c_trainable_bytes'] / 1024:.0f} KiB",
                 f"{r['torch_trainable_tensors']} / {r['torch_trainable_elements']:,}",
                 _ms(r["c_ms"], r["c_min_ms"])]
                + [_ms(r["torch_ms"][n], r["torch_min_ms"][n]) for n in ths]
                + [_ratio(r["ratio"][n], r["c_min_ms"] / r["torch_min_ms"][n]) for n in ths] for r in train]
        out["train"] = table(head, rows)
    infer = [res["infer"] for res in results if res.get("infer")]
    if infer:
        ths = list(infer[0]["ort_ms"])
        head = ["model", "C model_infer ms"] + [f"onnxruntime {n} thr ms" for n in ths] + \
               [f"C / onnxruntime {n} thr" for n in ths]
        rows = [[r["model"], _ms(r["c_ms"], r["c_min_ms"])] + [_ms(r["ort_ms"][n], r["ort_min_ms"][n]) for n in ths]
                + [_ratio(r["ratio"][n], r["c_min_ms"] / r["ort_min_ms"][n]) for n in ths] for r in infer]
        out["infer"] = table(head, rows)
    qrows = []
    for res in results:
        q = res.get("qemu")
        if not q:
            continue
        s, f, i = q.get("sparse"), q.get("full"), q.get("infer")
        ratio = f"{f['instructions'] / s['instructions']:.2f}" if s and f else "-"
        # beyond the forward: (train step - inference); approximate (the training forward has a
        # 10-class head and saves clamp masks, model_infer has the 1000-class head)
        beyond = (f"{(f['instructions'] - i['instructions']) / (s['instructions'] - i['instructions']):.2f}"
                  if s and f and i and s["instructions"] > i["instructions"] else "-")
        qrows.append([q["model"], _count(s and s["instructions"]), _count(f and f["instructions"]), ratio,
                      _count(i and i["instructions"]), beyond,
                      f"{s['sram'] / 1024:.0f}" if s else "-", f"{f['sram'] / 1024:.0f}" if f else "-"])
    if qrows:
        out["qemu"] = table(["model", "train step sparse", "train step full", "full / sparse", "inference",
                             "full / sparse beyond inference (approx.)", "SRAM sparse KiB", "SRAM full KiB"], qrows)
    flags = [r for res in results for r in res.get("flags", [])]
    if flags:
        out["flags"] = table(["model", "function", "extra gcc flags", "ms", "vs build_host", "bit-identical result"],
                             [[r["model"], r["function"], r["flags"], f"{r['ms']:.1f}", f"{r['vs_default']:.2f}",
                               "yes" if r["same_result"] else "NO"] for r in flags])
    return out


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"uname": " ".join(platform.uname()), "nproc": os.cpu_count(), "cpu": cpu,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version()}
    try:
        info["loadavg"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        pass
    for mod in ("torch", "onnxruntime"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    info["gcc"] = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median reported)")
    ap.add_argument("--threads", default="2,1",
                    help="torch / onnxruntime intra-op thread counts to compare with, comma-separated "
                         "(default 2,1; the first is the headline)")
    ap.add_argument("--cflags", default="", help='extra gcc flags for the host C, e.g. "-O3 -march=native" '
                    "(default: build_host's -O3)")
    ap.add_argument("--no-qemu", action="store_true", help="skip the Cortex-M4 instruction counts")
    ap.add_argument("--no-full", action="store_true", help="skip the full-update builds")
    ap.add_argument("--ram-kib", type=int, default=4096, help="SRAM of the Cortex-M4 link (QEMU runs)")
    ap.add_argument("--flags-experiment", action="store_true",
                    help="also time the sparse training step and inference built with other gcc flags "
                         f"({'; '.join(FLAG_VARIANTS)})")
    ap.add_argument("--json", type=Path, help="write every measurement to this file")
    ap.add_argument("--workdir", type=Path, help="keep the generated C and builds here (default: a temp dir)")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    if not threads or min(threads) < 1:
        ap.error("--threads needs positive integers")
    t_start = time.perf_counter()
    info = machine()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    results, notes = [], []
    with tempfile.TemporaryDirectory(prefix="tinymlir-speed-") as tmp:
        root = args.workdir or Path(tmp)
        for model in models:
            if not (args.models_dir / f"{model}-int8.onnx").exists():
                notes.append(f"{model}: {args.models_dir / f'{model}-int8.onnx'} not found")
                continue
            case = shared_case(model, args.models_dir)
            res = bench_case(case, root / model, repeats=args.repeats, threads=threads,
                             full=not args.no_full, qemu=not args.no_qemu, ram_kib=args.ram_kib,
                             cflags=args.cflags.split(), log=log)
            if args.flags_experiment:
                res["flags"] = flags_experiment(case, root / model, args.repeats, log=log)
            results.append(res)
            notes += res["notes"]
    tabs = tables(results)
    info["loadavg_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    cc = f"gcc {info['gcc']} -O3 {args.cflags}".strip()
    print(f"machine: {info['cpu']}, {info['nproc']} CPUs, load average {info.get('loadavg', '?')} at start, "
          f"{info['loadavg_end']} at end; torch {info.get('torch')}, onnxruntime {info.get('onnxruntime')}, "
          f"C: {cc}; {info['date']}")
    if "train" in tabs:
        print(f"\n(a) host training step, batch 1, 128x128, ms: median of {args.repeats} (min); ratios: of the "
              f"medians (of the mins); C single-threaded\n")
        print(tabs["train"])
    if "infer" in tabs:
        print(f"\n(b) host inference, ms: median of {args.repeats} (min); ratios: of the medians (of the mins); "
              f"C single-threaded\n")
        print(tabs["infer"])
    if "qemu" in tabs:
        print("\n(c) Cortex-M4 (QEMU mps2-an386) executed instructions; SRAM = data + bss of the ELF\n")
        print(tabs["qemu"])
    if "flags" in tabs:
        print(f"\n(d) the same C built with other gcc flags (-ffp-contract=off kept), median of {args.repeats} (ms)\n")
        print(tabs["flags"])
    for note in notes:
        print(f"note: {note}")
    elapsed = time.perf_counter() - t_start
    print(f"({elapsed:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results, "notes": notes, "seconds": elapsed},
                                        indent=2, default=str))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
