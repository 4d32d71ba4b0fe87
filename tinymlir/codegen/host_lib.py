"""The generated C as a host shared library, driven from Python through ctypes.

The scheme search (`tinymlir.search`) and the accuracy benchmark fine-tune models with the
generated training step itself, so no Python runs inside a step:

    lib = build_training_library(module, Path("build/x"))   # level 4 -> LOWER_TRAIN -> C -> .so
    net = lib.load()                                         # fresh params each load
    loss = net.step(x_int8_nhwc, label=3, lr=1e-3)
    logits = net.infer(x_int8_nhwc)

A library's parameters are static storage, so `load()` copies the .so to a new file
before loading it: every load starts from the initial parameters, independent of others.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp


_LOADS = itertools.count()


@dataclass
class TrainingLibrary:
    """A compiled training step: the shared library and what the caller needs to feed it."""

    so: Path
    input_type: object  # the quantized type of the int8 NHWC input (for quantize_nhwc)
    num_classes: int
    arena_bytes: int
    trainable_bytes: int
    compile_s: float
    loads: list[Path] = field(default_factory=list)

    def load(self) -> "HostNet":
        """A new instance with the initial parameters (a fresh copy of the library)."""
        # a new file each time, never one a loaded library maps (rewriting that crashes it)
        copy = self.so.with_name(f"{self.so.stem}.{os.getpid()}.{next(_LOADS)}.so")
        copy.unlink(missing_ok=True)
        shutil.copyfile(self.so, copy)
        self.loads.append(copy)
        return HostNet(copy, self.input_type, self.num_classes)


def build_training_library(module: ModuleOp, outdir: Path, name: str = "libmodel.so") -> TrainingLibrary:
    """Lower a level-4 training module (`train_pipeline`'s output) with LOWER_TRAIN, emit
    C and build it for the host. `module` is changed in place."""
    from tinymlir.codegen.build import build_host
    from tinymlir.codegen.emit_c import emit_c_info
    from tinymlir.pipelines import LOWER_TRAIN, run_pipeline_reading_input_type

    t0 = time.perf_counter()
    num_classes = _num_classes(module)
    _, itype = run_pipeline_reading_input_type(module, LOWER_TRAIN)
    files, info = emit_c_info(module, prefix="model")
    outdir.mkdir(parents=True, exist_ok=True)
    for fname, text in files.items():
        (outdir / fname).write_text(text)
    so = build_host(outdir, [outdir / "model.c"], name=name, shared=True)
    return TrainingLibrary(so, itype, num_classes, info.arena_bytes, info.trainable_bytes, time.perf_counter() - t0)


def _num_classes(module: ModuleOp) -> int:
    for op in module.ops:
        if getattr(op, "sym_name", None) is not None and op.sym_name.data == "forward":
            return int(np.prod(op.function_type.outputs.data[0].get_shape()))
    raise ValueError("the module has no @forward")


class HostNet:
    """ctypes view of one loaded `model_train_step` / `model_infer`."""

    def __init__(self, so: Path, input_type, num_classes: int) -> None:
        self.lib = ctypes.CDLL(str(so))
        self.lib.model_train_step.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_float,
                                              ctypes.POINTER(ctypes.c_float)]
        self.lib.model_train_step.restype = ctypes.c_int
        self.lib.model_infer.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.lib.model_infer.restype = ctypes.c_int
        self.input_type = input_type
        self._loss = ctypes.c_float()
        self._out = np.zeros(num_classes, np.int8)
        self.skipped = 0  # steps that returned 1 (some non-finite update elements skipped)

    def params(self) -> dict[str, np.ndarray]:
        """Every parameter's storage as a uint8 view (writable for the trained ones, which
        live in SRAM; writing a frozen one is undefined: it is `static const`)."""
        lib = self.lib
        lib.model_param_name.restype = ctypes.c_char_p
        lib.model_param_data.restype = ctypes.c_void_p
        out = {}
        for i in range(lib.model_param_count()):
            size = lib.model_param_bytes(i)
            out[lib.model_param_name(i).decode()] = np.ctypeslib.as_array(
                (ctypes.c_uint8 * size).from_address(lib.model_param_data(i)))
        return out

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float NCHW samples -> the int8 NHWC input (the model's input quantization)."""
        from tinymlir.pipelines import quantize_nhwc

        return quantize_nhwc(x, self.input_type)

    def step(self, x: np.ndarray, label: int, lr: float) -> float:
        """One training step on one int8 NHWC sample; returns the loss."""
        x = np.ascontiguousarray(x, np.int8)
        r = self.lib.model_train_step(x.ctypes.data, int(label), float(lr), ctypes.byref(self._loss))
        if r < 0:
            raise RuntimeError(f"model_train_step returned {r}")
        self.skipped += r == 1
        return self._loss.value

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The int8 logits of one int8 NHWC sample."""
        x = np.ascontiguousarray(x, np.int8)
        r = self.lib.model_infer(x.ctypes.data, self._out.ctypes.data)
        if r != 0:
            raise RuntimeError(f"model_infer returned {r}")
        return self._out.copy()

    def predict(self, xs: np.ndarray) -> np.ndarray:
        """Argmax class of each int8 NHWC sample of `xs` (first axis: samples)."""
        return np.array([int(np.argmax(self.infer(x[None]))) for x in xs])
