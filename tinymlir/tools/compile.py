"""`tinymlir compile`: an ONNX CNN to a C project for a Cortex-M (or the host), with its
inference and, with `--train`, its on-device training step.

    tinymlir compile                                  # the bundled digits example -> out/compile
    tinymlir compile model-int8.onnx --train --num-classes 10 \\
        --scheme schemes/mcunet-5fps-99kb.scheme --budget 256KB -o build/mcunet
    tinymlir compile model-fp32.onnx --calibration calib.npy -o build/net   # PTQ, inference only

Steps: import (an int8 QDQ model is raised with `fuse-qdq`; a float one is quantized with
`quantize-ptq` on `--calibration` samples), the training passes (`autodiff`, `qas`,
`sparse-update`, `prune-backward`, `reorder-update`), the lowering (`convert-train-to-tk`,
`convert-layout`, `convert-quant-to-cmsisnn`, `split-sparse-params`), then C. OUTDIR gets
`model.c`/`model.h`, the runtime sources they need (`runtime/`), a `Makefile` (host and
arm-none-eabi builds; `make CMSIS_NN_ROOT=/path/to/CMSIS-NN` links the real CMSIS-NN
instead of the bundled portable kernels, without touching the generated code), the
lowered IR `model.mlir`, `summary.txt` and `memory.png` (the arena plan). The summary
table gives the layers, MACs, parameter bytes in flash and SRAM, the arena peak, and, when
arm-none-eabi-gcc is installed, the library's flash and static SRAM for the target.

`--budget` bounds the SRAM of the step: arena + trained parameters + a stack allowance
(`--stack`, 2 KiB by default); over it, the command fails naming the op at the peak and
the tensors live there. `--scheme auto` searches the scheme first (`tinymlir search`,
tinymlir/tools/search.py) under `--update-budget` and/or `--budget` and writes it to
OUTDIR/auto.scheme. Errors are one line and exit code 1, like `tinymlir-opt`'s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import PassPipeline


from tinymlir.codegen.emit_c import CMSISNN_DIR, RUNTIME_DIR, TK_DIR, CInfo, emit_c_info
from tinymlir.context import make_context
from tinymlir.pipelines import quantize_nhwc
from tinymlir.tools.opt import ToolError, available_passes, one_line, one_line_usage_error, run_cli
from tinymlir.tools.search import add_search_arguments, make_search_parser, search_command

PROG = "tinymlir compile"
OPTIMIZERS = ("sgd", "sgdm", "adam")
TARGETS = {
    "host": [],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
}
DEFAULT_OUT = "out/compile"


def parse_bytes(text: str, flag: str = "--budget") -> int:
    """`100KB`, `100KiB`, `1MB`, `4096`: KB and KiB are 1024 bytes (as embedded datasheets)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|K|MB|MiB|M)?\s*", text, flags=re.IGNORECASE)
    if m is None:
        raise ToolError(f"{flag} {text!r}: expected a size such as 256KB, 100KiB or 65536")
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 1024, "KIB": 1024, "K": 1024, "MB": 1 << 20, "MIB": 1 << 20, "M": 1 << 20}[unit]
    return int(float(m.group(1)) * scale)


def make_arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tinymlir", description="tinymlir's compiler driver")
    ap.error = lambda message: one_line_usage_error("tinymlir", message)  # type: ignore[method-assign]
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="ONNX -> a C project (inference, and the training step with --train)")
    c.error = lambda message: one_line_usage_error(PROG, message)  # type: ignore[method-assign]
    c.add_argument("model", nargs="?", help="ONNX model (default: the bundled digits example, built on the fly)")
    c.add_argument("-o", "--output", default=None, help=f"output directory (default {DEFAULT_OUT})")
    c.add_argument("--train", action="store_true", help="also compile the training step")
    c.add_argument("--scheme", help="sparse-update scheme file (schemes/*.scheme), or 'auto'")
    c.add_argument("--trainable", default="last:3", help="without --scheme: which layers train (all|last:N)")
    c.add_argument("--num-classes", type=int, help="replace the classifier by a new one with N classes")
    c.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="sgd (default), sgdm (momentum 0.9: +4 B of SRAM per trained element) or adam "
                        "(+8 B per element; its steps are ~lr in integer units, see docs/deploy.md)")
    c.add_argument("--rounding", choices=("nearest", "stochastic"), default="stochastic",
                   help="rounding of the int8 updates (default stochastic: small updates then still move "
                        "the weights on average; docs/benchmarks/accuracy.md)")
    c.add_argument("--budget", help="SRAM budget of the step, e.g. 256KB (arena + trained params + stack)")
    c.add_argument("--stack", default="2KiB", help="stack allowance counted in the budget (default 2KiB)")
    c.add_argument("--target", choices=tuple(TARGETS), default="cortex-m4")
    c.add_argument("--calibration", help="calibration inputs (.npy) to quantize a float model")
    c.add_argument("--prefix", default="model", help="C name prefix (default model)")
    c.add_argument("--float-io", action="store_true",
                   help="keep float inputs and outputs (default: int8, NHWC, as the sensor delivers them)")
    c.add_argument("--run", type=int, default=0, metavar="STEPS",
                   help="with --train: build the training harness and run STEPS steps on one input, on the host "
                        "and (for cortex-m4, if qemu-system-arm is installed) in QEMU")
    c.add_argument("--input", help="the input for --run (.npy of the model's input shape; default: a test image "
                                   "of the bundled example)")
    c.add_argument("--label", type=int, default=None, help="the label for --run")
    c.add_argument("--lr", type=float, default=0.05, help="learning rate for --run (default 0.05)")
    add_search_arguments(c)
    make_search_parser(sub)
    return ap


def progress(k: int, n: int, what: str, t0: float) -> None:
    print(f"[{k}/{n}] {what} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)


def _is_qdq(path: Path) -> bool:
    import onnx

    if not path.is_file():
        raise ToolError(f"{path}: no such file")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX model
        raise ToolError(f"cannot read ONNX model '{path}': {type(e).__name__}: {one_line(str(e))}") from None
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in graph.node)


def front_pipeline(model: Path, calibration: str | None) -> str:
    """The passes that make the int8 level: `fuse-qdq` for a QDQ model, PTQ for a float one."""
    if _is_qdq(model):
        return "fuse-qdq"
    if calibration is None:
        raise ToolError(f"{model}: a float model needs --calibration samples.npy to be quantized to int8")
    return f'fold-batch-norm,quantize-ptq{{calibration="{Path(calibration).resolve()}"}}'


def pipelines(args: argparse.Namespace, model: Path, calibration: str | None) -> list[tuple[str, str]]:
    """(stage, pass pipeline) in order."""
    stages = [("quantize", front_pipeline(model, calibration))]
    lower = "convert-layout,convert-quant-to-cmsisnn"
    if args.train:
        options = [f"rounding={args.rounding}"]
        if args.optimizer != "sgd":
            options.append(f"optimizer={args.optimizer}")
        if args.num_classes is not None:
            options.append(f"num-classes={args.num_classes}")
        if args.scheme is None:
            options.append(f'trainable="{args.trainable}"')
        train = f"autodiff{{{' '.join(options)}}},qas"
        if args.scheme is not None:
            scheme = Path(args.scheme)
            if not scheme.is_file():
                raise ToolError(f"--scheme {args.scheme}: no such file")
            train += f',sparse-update{{scheme="{scheme.resolve()}"}}'
        stages.append(("training step", train + ",prune-backward,reorder-update"))
        lower = "convert-train-to-tk," + lower + ",split-sparse-params"
    if not args.float_io:
        lower = "int8-io," + lower
    stages.append(("lowering to cmsisnn + tk", lower))
    return stages


def write_project(out: Path, files: dict[str, str], target: str, prefix: str) -> None:
    """model.c/.h, the runtime sources and a Makefile."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    rt = out / "runtime"
    if rt.exists():
        shutil.rmtree(rt)
    (rt / "cmsisnn").mkdir(parents=True)
    shutil.copy2(RUNTIME_DIR / "tinymlir_rt.c", rt)
    shutil.copy2(RUNTIME_DIR / "tinymlir_rt.h", rt)
    shutil.copytree(TK_DIR, rt / "tk")
    shutil.copytree(CMSISNN_DIR / "include", rt / "cmsisnn" / "include")
    shutil.copytree(CMSISNN_DIR / "src", rt / "cmsisnn" / "src")
    arch = " ".join(TARGETS["cortex-m4" if target == "host" else target])
    (out / "Makefile").write_text(MAKEFILE.format(prefix=prefix, arch=arch))


MAKEFILE = """\
# Generated by tinymlir compile. `make` builds lib{prefix}.a for the host,
# `make arm` for the Cortex-M ({arch}).
# `make CMSIS_NN_ROOT=/path/to/CMSIS-NN` uses the real CMSIS-NN instead of the bundled
# portable kernels (runtime/cmsisnn); the generated code is the same for both.
CC ?= gcc
ARM_CC ?= arm-none-eabi-gcc
ARM_AR ?= arm-none-eabi-ar
# the C library's headers (picolibc, as Debian's picolibc-arm-none-eabi); newlib: --specs=nano.specs
ARM_SPECS ?= --specs=picolibc.specs
CFLAGS ?= -O3
ARM_CFLAGS ?= -O2
WARN = -Wall -Wextra -Werror -std=c99 -ffp-contract=off
ARCH = {arch}
ifeq ($(CMSIS_NN_ROOT),)
NN_SRC = $(wildcard runtime/cmsisnn/src/*.c)
NN_INC = -Iruntime/cmsisnn/include
else
NN_SRC = $(wildcard $(CMSIS_NN_ROOT)/Source/*/*.c)
NN_INC = -I$(CMSIS_NN_ROOT)/Include -I$(CMSIS_NN_ROOT)
endif
SRC = {prefix}.c runtime/tinymlir_rt.c $(wildcard runtime/tk/src/*.c) $(NN_SRC)
INC = -I. -Iruntime -Iruntime/tk/include $(NN_INC)

all: build/host/lib{prefix}.a

build/host/lib{prefix}.a: $(SRC)
\t@mkdir -p build/host
\tcd build/host && $(CC) $(CFLAGS) $(WARN) $(addprefix -I../../,$(patsubst -I%,%,$(INC))) -c $(addprefix ../../,$(SRC))
\tar rcs $@ build/host/*.o

arm: build/arm/lib{prefix}.a

build/arm/lib{prefix}.a: $(SRC)
\t@mkdir -p build/arm
\tcd build/arm && $(ARM_CC) $(ARCH) $(ARM_SPECS) $(ARM_CFLAGS) $(WARN) -ffunction-sections -fdata-sections \\
\t\t$(addprefix -I../../,$(patsubst -I%,%,$(INC))) -c $(addprefix ../../,$(SRC))
\t$(ARM_AR) rcs $@ build/arm/*.o

clean:
\trm -rf build

.PHONY: all arm clean
"""


def target_footprint(out: Path, target: str) -> dict[str, int] | None:
    """text/data/bss of the compiled library objects for an Arm target (None without the
    toolchain or for the host)."""
    if target == "host" or shutil.which("arm-none-eabi-gcc") is None:
        return None
    r = subprocess.run(["make", "-s", "arm"], cwd=out, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise ToolError(f"building the C project for {target} failed: {r.stderr.strip().splitlines()[-1:]}")
    objs = sorted((out / "build" / "arm").glob("*.o"))
    r = subprocess.run(["arm-none-eabi-size", "-t", *map(str, objs)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in r.stdout.strip().splitlines()[-1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def summary(module: ModuleOp, info: CInfo, foot: dict[str, int] | None, stack: int) -> list[str]:
    from tinymlir.codegen.memory_plan import find_func
    from tinymlir.dialects import cmsisnn

    calls = (cmsisnn.ConvolveWrapperS8Op, cmsisnn.DepthwiseConvWrapperS8Op, cmsisnn.FullyConnectedS8Op)
    layers = sum(isinstance(op, calls) for op in find_func(module, "forward").walk())
    rows = [("conv + fc calls in model_infer", f"{layers}")]
    rows += [("parameters in flash", f"{info.frozen_bytes:,} B"),
             ("trained parameters (SRAM)", f"{info.trainable_bytes:,} B"),
             ("arena peak (SRAM)", f"{info.arena_bytes:,} B")]
    for p in info.peaks:
        live = ", ".join(f"{n} ({b:,} B)" for n, b in p.live[:3])
        rows.append((f"  {p.function} peak", f"step {p.op} [{p.step}]: {live}"))
    total = info.arena_bytes + info.trainable_bytes + stack
    rows.append(("SRAM of the step (arena + trained + stack allowance)", f"{total:,} B ({total / 1024:.1f} KiB)"))
    if foot is not None:
        rows.append(("library flash (text + data)", f"{foot['text'] + foot['data']:,} B"))
        rows.append(("library static SRAM (data + bss)", f"{foot['data'] + foot['bss']:,} B"))
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]


def macs_rows(module_before_lowering: ModuleOp, train: bool) -> list[str]:
    from tinymlir.passes.macs import format_macs, train_step_macs

    if not train:
        return []
    m = train_step_macs(module_before_lowering)
    return [f"MACs per training step: forward {format_macs(m.forward.macs)}, backward {format_macs(m.backward.macs)}"]


def _first_input_type(module: ModuleOp):
    for op in module.ops:
        if getattr(op, "sym_name", None) is not None and op.sym_name.data in ("train_step", "forward"):
            return op.function_type.inputs.data[0]
    return None


class Compiler:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.input_type = None  # the quantized input type int8-io gave the functions

    def run(self) -> None:
        args = self.args
        t0 = time.perf_counter()
        out = Path(args.output or DEFAULT_OUT)
        calibration = args.calibration
        example = None
        if args.model is None:
            from tinymlir.examples.digits import make_example

            progress(0, 5, "building the bundled digits example (trains a small CNN)", t0)
            ex = example = make_example(out / "example", seed=0)
            model, calibration = Path(ex["onnx"]), calibration or str(ex["calib"])
            if args.num_classes is None and args.train:
                args.num_classes = 10
        else:
            model = Path(args.model)
        if not args.prefix.isidentifier():
            raise ToolError(f"--prefix {args.prefix!r} is not a C identifier")
        budget = parse_bytes(args.budget) if args.budget else None
        stack = parse_bytes(args.stack, "--stack")
        search_lines = self._search(model, calibration, out, t0) if args.scheme == "auto" else []
        stages = pipelines(args, model, calibration)
        n = len(stages) + 3
        from tinymlir.frontend.onnx_importer import import_onnx

        module = import_onnx(str(model))
        progress(1, n, f"imported {model}", t0)
        passes = available_passes()
        before_lowering = None
        for k, (what, spec) in enumerate(stages, start=2):
            if what.startswith("lowering"):
                before_lowering = module.clone()
                if not args.float_io:
                    PassPipeline.parse_spec(passes, "int8-io").apply(make_context(), before_lowering)
                    self.input_type = _first_input_type(before_lowering)
            PassPipeline.parse_spec(passes, spec).apply(make_context(), module)
            module.verify()
            progress(k, n, what, t0)
        files, info = emit_c_info(module, prefix=args.prefix)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.mlir").write_text(str(module) + "\n")
        write_project(out, files, args.target, args.prefix)
        progress(n - 1, n, f"wrote C to {out}", t0)
        if budget is not None:
            total = info.arena_bytes + info.trainable_bytes + stack
            if total > budget:
                p = max(info.peaks, key=lambda q: q.arena_bytes)
                live = ", ".join(f"{name} {size:,} B" for name, size in p.live[:4])
                forward = p.function.endswith("_infer") or p.op.startswith("cmsisnn.")
                hint = ("that peak is the forward pass's own (inference needs it too), so only the "
                        f"{info.trainable_bytes:,} B of trained params can shrink: use a smaller scheme"
                        if forward else "train fewer layers or channels (a smaller scheme), or freeze the layers "
                        "whose gradients are live there")
                raise ToolError(
                    f"the step needs {total:,} B of SRAM (arena {info.arena_bytes:,} + trained params "
                    f"{info.trainable_bytes:,} + stack {stack:,}), over the budget {budget:,} B by {total - budget:,} B; "
                    f"the arena peaks in {p.function} at {p.op}, where {live} are live; {hint}")
        foot = target_footprint(out, args.target)
        lines = macs_rows(before_lowering, args.train) if before_lowering is not None else []
        lines += summary(module, info, foot, stack)
        lines += search_lines
        plot = self._plot(module, out)
        if plot:
            lines.append(f"memory plot: {plot}")
        if args.run:
            lines += self._run(module, out, example)
        (out / "summary.txt").write_text("\n".join(lines) + "\n")
        progress(n, n, "done", t0)
        print("\n".join(lines))

    def _search(self, model: Path, calibration: str | None, out: Path, t0: float) -> list[str]:
        """`--scheme auto`: search the scheme, write it to OUTDIR/auto.scheme and use it."""
        from tinymlir.tools.search import report, run_search

        args = self.args
        if not args.train:
            raise ToolError("--scheme auto needs --train (it searches what the training step updates)")
        if args.num_classes is None:
            raise ToolError("--scheme auto needs --num-classes N (the calibration task's classifier)")
        if not model.is_file():
            raise ToolError(f"{model}: no such file")
        progress(0, 5, "searching the sparse-update scheme (contribution analysis, then evolution)", t0)
        outcome = run_search(args, model, front_pipeline(model, calibration),
                             lambda s: print(f"  {s}", file=sys.stderr, flush=True))
        out.mkdir(parents=True, exist_ok=True)
        path = out / "auto.scheme"
        path.write_text(outcome.result.scheme)
        args.scheme = str(path)
        return ["", *report(outcome), f"scheme written to {path}"]

    def _run(self, module: ModuleOp, out: Path, example: dict | None) -> list[str]:
        """Run the training step `--run` times on one input: host, then QEMU (Cortex-M4)."""
        import numpy as np

        from tinymlir.codegen import build as B

        args = self.args
        if not args.train:
            raise ToolError("--run needs --train (it runs the training step)")
        if args.input is not None:
            x = np.load(args.input).astype(np.float32)
            if args.label is None:
                raise ToolError("--run with --input needs --label")
            label = args.label
        elif example is not None:
            x = np.load(example["test_x"])[:1].astype(np.float32)
            label = int(np.load(example["test_y"])[0]) if args.label is None else args.label
        else:
            raise ToolError("--run needs --input x.npy and --label k for this model")
        shape = _first_input_type(module).get_shape()
        if self.input_type is not None:  # int8 NHWC interface: quantize the float NCHW sample
            nhwc = self.input_type.get_shape()
            shape = [nhwc[0], nhwc[3], nhwc[1], nhwc[2]] if len(nhwc) == 4 else nhwc
        if x.size % int(np.prod(shape[1:])):
            raise ToolError(f"--input: {x.shape} does not hold inputs of shape {list(shape)}")
        x = x.reshape(-1, *shape[1:])[:1]  # the first sample
        if self.input_type is not None:
            x = quantize_nhwc(x, self.input_type)
        files = {f"model.{ext}": (out / f"{args.prefix}.{ext}").read_text() for ext in ("c", "h")}
        if args.prefix != "model":
            raise ToolError("--run needs --prefix model (the harness calls model_train_step)")
        lines = []
        d = out / "harness"
        srcs = B.write_train_harness(d, files, x, [label] * args.run, args.lr)
        exe = B.build_host(d / "host", srcs, name="train", shared=False, include=[d])
        r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise ToolError(f"the host training harness failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        run = B.parse_train_output(r.stdout)
        lines.append(f"host: {args.run} steps on label {label}, loss " + " -> ".join(f"{v:.4f}" for v in run.loss))
        if args.target == "cortex-m4" and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
            from tinymlir.codegen import qemu_icount as Q

            elf = B.build_cortex_m4(d / "m4", srcs, include=[d])
            res = Q.run_icount(elf, timeout=1200)
            m4 = B.parse_train_output(res.output)
            same = m4.loss == run.loss and m4.params == run.params
            size = B.size_report(elf)
            lines.append("cortex-m4 (QEMU mps2-an386): loss " + " -> ".join(f"{v:.4f}" for v in m4.loss)
                         + f"; {'bit-identical to the host' if same else 'DIFFERS from the host'}; "
                         f"{res.count:,} instructions for step 1; stack {m4.stack_bytes:,} B; "
                         f"flash {size['flash']:,} B, static SRAM {size['sram_static']:,} B (incl. the harness input)")
        return lines

    def _plot(self, module: ModuleOp, out: Path) -> Path | None:
        """The arena plan of the training step (or inference) as a picture, if matplotlib
        and the planner's plot are available."""
        try:
            from tinymlir.codegen.memory_plot import write_plot
            from tinymlir.passes.plan_memory import recording_plans
        except ImportError:  # matplotlib is missing
            return None
        path = out / "memory.png"
        with recording_plans() as reports:
            PassPipeline.parse_spec(available_passes(), "plan-memory").apply(make_context(), module.clone())
        write_plot(reports, path)
        return path


def main(argv: Sequence[str] | None = None) -> int:
    args = make_arg_parser().parse_args(argv)
    if args.command == "search":
        return run_cli("tinymlir search", lambda: search_command(args), lambda: {"input_name": args.model})
    return run_cli(PROG, Compiler(args).run, lambda: {"input_name": getattr(args, "model", "") or ""})


if __name__ == "__main__":
    sys.exit(main())
