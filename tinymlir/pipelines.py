"""The pass pipelines tinymlir's tools, benchmarks and tests share, as strings for
`tinymlir-opt -p` / xDSL's `PassPipeline.parse_spec`, and the one helper they need to feed
the int8 interface.

    module = import_onnx("mcunet-5fps-int8.onnx")
    run_pipeline(module, train_pipeline(scheme="schemes/mcunet-5fps-99kb.scheme") + "," + LOWER_TRAIN)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from xdsl.dialects.builtin import ModuleOp

#: Inference: the int8 level (QDQ raised) to CMSIS-NN calls, int8 NHWC in and out.
LOWER_INFER = "int8-io,convert-layout,convert-quant-to-cmsisnn"
#: The training step (after `reorder-update`) to CMSIS-NN + tk calls, int8 NHWC input,
#: partly trained weights split so only their trained rows are in SRAM.
LOWER_TRAIN = "int8-io,convert-train-to-tk,convert-layout,convert-quant-to-cmsisnn,split-sparse-params"


def train_pipeline(scheme: str | Path | None = None, num_classes: int | None = 10, trainable: str = "last:3",
                   rounding: str = "nearest", front: str = "fuse-qdq", optimizer: str = "sgd",
                   seed: int | None = None) -> str:
    """Import-level int8 model -> the fused, pruned, reordered training step (level 4).
    `optimizer`: autodiff's `sgd`, `sgdm` (momentum 0.9) or `adam` (torch's defaults);
    `seed`: autodiff's (the new classifier's init, the rounding generators)."""
    opts = ([f"seed={seed}"] if seed is not None else []) + [f"rounding={rounding}"]
    opts += [f"num-classes={num_classes}"] if num_classes is not None else []
    if optimizer != "sgd":
        opts.append(f"optimizer={optimizer}")
    if scheme is None:
        opts.append(f'trainable="{trainable}"')
    spec = f"{front},autodiff{{{' '.join(opts)}}},qas"
    if scheme is not None:
        spec += f',sparse-update{{scheme="{Path(scheme).resolve()}"}}'
    return spec + ",prune-backward,reorder-update"


def run_pipeline(module: ModuleOp, spec: str) -> ModuleOp:
    """Apply the pipeline `spec` to `module` in place (and verify it); returns it."""
    from xdsl.passes import PassPipeline

    from tinymlir.context import make_context
    from tinymlir.passes import get_tinymlir_passes

    PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
    module.verify()
    return module


def run_pipeline_reading_input_type(module: ModuleOp, spec: str, name: str = "train_step"):
    """Apply `spec`, which contains `int8-io`, to `module`; returns (module, the quantized
    type of `@name`'s first argument right after `int8-io`). Read there because
    `convert-quant-to-cmsisnn` later retypes it to plain i8, and `quantize_nhwc` needs the
    scale and zero point."""
    m = re.search(r"(?:^|,)int8-io(?:\{[^}]*\})?(?=,|$)", spec)
    if m is None:
        raise ValueError(f"the pipeline has no int8-io pass: {spec}")
    run_pipeline(module, spec[:m.end()].lstrip(","))
    itype = input_type(module, name)
    rest = spec[m.end():].lstrip(",")
    return (run_pipeline(module, rest) if rest else module), itype


def input_type(module: ModuleOp, name: str = "train_step"):
    """The type of the first argument of `@name` (or of `@forward` if there is none)."""
    funcs = {op.sym_name.data: op for op in module.ops if getattr(op, "sym_name", None) is not None
             and hasattr(op, "function_type")}
    f = funcs.get(name) or funcs["forward"]
    return f.function_type.inputs.data[0]


def quantize_nhwc(x: np.ndarray, arg_type) -> np.ndarray:
    """A float NCHW sample as the int8 NHWC input `int8-io` makes the functions take: what
    the dropped `quant.quantize` computed (float32 division, half to even, saturated).
    `arg_type` is that argument's quantized type (read it before `convert-quant-to-cmsisnn`)."""
    qt = arg_type.element_type
    q = np.rint(np.asarray(x, np.float32) / np.float32(qt.scale)) + qt.zero_point
    q = np.clip(q, qt.storage_min, qt.storage_max).astype(np.int8)
    return np.ascontiguousarray(q.transpose(0, 2, 3, 1) if q.ndim == 4 else q)
