"""`tinymlir-run`: run a function of an IR file (or an ONNX model) in the numpy interpreter.

    tinymlir-run model.mlir --input x.npy
    tinymlir-run model.onnx -p 'fold-batch-norm,quantize-ptq{calibration="calib.npy"}' \\
        --input x.npy --output logits.npy --print

Each input is a `.npy` file, one per function argument, in order; its shape and dtype
must be exactly the argument's (a quantized tensor takes its integer storage: int8 for
`!quant.uniform<i8:...>`). For each result it prints the shape and dtype, and the
argmax of a [1, K] result (the predicted class). Errors are one line on stderr
(`tinymlir-run: error: ...`, exit 1), like tinymlir-opt's.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import IndexType, IntegerType, ModuleOp, Signedness, TensorType
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute
from xdsl.passes import ModulePass

from tinymlir.tools.opt import (
    ToolError,
    available_passes,
    build_pipeline,
    make_full_context,
    one_line_usage_error,
    parse_mlir,
    parse_onnx,
    run_cli,
)

PROG = "tinymlir-run"


def make_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run a function of a .mlir or .onnx file in tinymlir's "
                                               "numpy reference interpreter.")
    p.error = functools.partial(one_line_usage_error, PROG)  # type: ignore[method-assign]
    p.add_argument("input_file", help="a .mlir file or an .onnx model")
    p.add_argument("--input", "-i", action="append", default=[], metavar="X.npy",
                   help="a .npy file for the next function argument (repeat, in order)")
    p.add_argument("-p", "--passes", default="", metavar="PIPELINE",
                   help="a pass pipeline to apply first, as for tinymlir-opt (e.g. 'fold-batch-norm,cse')")
    p.add_argument("--function", default="forward", help="the function to run (default: forward)")
    p.add_argument("--output", "-o", metavar="OUT.npy",
                   help="save the results: OUT.npy, or OUT_0.npy, OUT_1.npy, ... for several")
    p.add_argument("--print", action="store_true", help="print the values of the results")
    return p


class Runner:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.module: ModuleOp | None = None
        self.stage = ""

    def error_context(self) -> dict[str, Any]:
        return {"input_name": self.args.input_file, "module": self.module, "stage": self.stage}

    # -- steps ---------------------------------------------------------------------------
    def load_module(self) -> ModuleOp:
        path = self.args.input_file
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".mlir", ".onnx"):
            raise ToolError(f"{path}: unknown input kind '{ext}' (expected .mlir or .onnx)")
        with open(path, "rb") as f:
            if ext == ".onnx":
                module = parse_onnx(f, path)
            else:
                module = parse_mlir(make_full_context(), f.read(), path)
        self.module = module
        self.stage = ""
        module.verify()
        return module

    def apply_passes(self, module: ModuleOp) -> None:
        if not self.args.passes:
            return

        def track(previous: ModulePass | None, op: ModuleOp, following: ModulePass | None) -> None:
            self.stage = f"after pass '{previous.name}'" if previous is not None else ""
            op.verify()
            self.stage = f"in pass '{following.name}'" if following is not None else ""

        pipeline = build_pipeline(available_passes(), self.args.passes, track)
        pipeline.apply(make_full_context(), module)
        self.stage = ""

    def find_function(self, module: ModuleOp) -> FuncOp:
        funcs = [op for op in module.walk() if isinstance(op, FuncOp)]
        for f in funcs:
            if f.sym_name.data == self.args.function:
                if f.is_declaration:
                    raise ToolError(f"{self.args.input_file}: @{self.args.function} is only a declaration")
                return f
        names = ", ".join(f"@{f.sym_name.data}" for f in funcs) or "none"
        raise ToolError(f"{self.args.input_file}: no function @{self.args.function} (functions: {names}; "
                        f"choose one with --function)")

    def load_inputs(self, func: FuncOp) -> list[np.ndarray]:
        types = func.function_type.inputs.data
        paths: list[str] = self.args.input
        name = f"@{func.sym_name.data}"
        if len(paths) != len(types):
            raise ToolError(f"{name} takes {len(types)} argument(s), got {len(paths)} --input file(s)")
        arrays = []
        for i, (path, t) in enumerate(zip(paths, types)):
            what = f"--input {path} (argument {i} of {name})"
            with open(path, "rb") as f:
                if f.read(6) != b"\x93NUMPY":
                    raise ToolError(f"{what}: not a .npy file (np.save writes one)")
            try:
                x = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise ToolError(f"{what}: not a .npy array file: {e}") from None
            if not isinstance(x, np.ndarray):
                raise ToolError(f"{what}: expected a .npy array file, got a .npz archive")
            shape, dtype = expected_shape_dtype(t)
            if shape is not None and (x.ndim != len(shape) or any(d not in (-1, g) for d, g in zip(shape, x.shape))):
                raise ToolError(f"{what}: expected shape {_fmt_shape(shape)}, got {_fmt_shape(x.shape)}")
            if dtype is not None and x.dtype != dtype:
                raise ToolError(f"{what}: expected dtype {dtype} (for {t}), got {x.dtype}")
            arrays.append(x)
        return arrays

    def run(self) -> None:
        module = self.load_module()
        self.apply_passes(module)
        func = self.find_function(module)
        inputs = self.load_inputs(func)
        from tinymlir import interpreter

        interpreter_error = getattr(interpreter, "InterpreterError", ToolError)
        try:
            outs = interpreter.run_function(module, inputs, name=self.args.function)
        except interpreter_error as e:
            raise ToolError(f"{self.args.input_file}: {e}") from e
        self.report(outs)

    def report(self, outs: Sequence[np.ndarray]) -> None:
        for i, y in enumerate(outs):
            y = np.asarray(y)
            line = f"output {i}: shape {_fmt_shape(y.shape)} dtype {y.dtype}"
            if y.ndim == 2 and y.shape[0] == 1 and y.shape[1] > 0:
                line += f" argmax {int(np.argmax(y[0]))}"
            print(line)
            if self.args.print:
                with np.printoptions(threshold=10_000):
                    print(y)
        if self.args.output:
            for path, y in zip(output_paths(self.args.output, len(outs)), outs):
                np.save(path, np.asarray(y))
                print(f"saved {path}")


def output_paths(path: str, n: int) -> list[str]:
    """`out.npy` for one result; `out_0.npy`, `out_1.npy`, ... for several."""
    base, ext = os.path.splitext(path)
    if ext != ".npy":
        base, ext = path, ".npy"
    if n == 1:
        return [base + ext]
    return [f"{base}_{i}{ext}" for i in range(n)]


def expected_shape_dtype(t: Attribute) -> tuple[tuple[int, ...] | None, np.dtype | None]:
    """The numpy shape (-1 = any size) and dtype a function argument of type `t` takes;
    None where tinymlir-run does not check."""
    from tinymlir.dialects.quant import UniformQuantizedType

    shape: tuple[int, ...] | None = ()
    et = t
    if isinstance(t, TensorType):
        shape = tuple(t.get_shape())
        et = t.element_type
    if isinstance(et, UniformQuantizedType):
        return shape, et.storage_dtype
    if isinstance(et, IntegerType):
        width = et.width.data
        if width == 1:
            return shape, np.dtype(bool)
        if width not in (8, 16, 32, 64):
            return shape, None
        signed = et.signedness.data != Signedness.UNSIGNED
        return shape, np.dtype(f"{'int' if signed else 'uint'}{width}")
    if isinstance(et, IndexType):
        return shape, np.dtype(np.int64)
    name = type(et).__name__
    bits = getattr(et, "bitwidth", None)
    if name in ("Float16Type", "Float32Type", "Float64Type") and bits:
        return shape, np.dtype(f"float{bits}")
    return shape, None


def _fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join("?" if d == -1 else str(d) for d in shape) + "]"


def main(argv: Sequence[str] | None = None) -> int:
    args = make_arg_parser().parse_args(argv)
    runner = Runner(args)
    return run_cli(PROG, runner.run, runner.error_context)


if __name__ == "__main__":
    sys.exit(main())
