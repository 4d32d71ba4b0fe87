"""The numpy reference interpreter: runs IR at any level, the oracle of every pass.

    outs = run_function(module, [x], name="forward")

Float tensors are float32 arrays; quantized tensors are their integer storage.
Built on xDSL's `Interpreter`, with one `InterpreterFunctions` class per dialect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.dialects.func import FuncOp
from xdsl.interpreter import Interpreter
from xdsl.interpreters.func import FuncFunctions


class InterpreterError(Exception):
    """Bad inputs for a function, or an op the interpreter cannot run."""


def expected_dtype(t) -> np.dtype:
    from tinymlir.dialects.quant import UniformQuantizedType

    et = t.element_type
    if isinstance(et, UniformQuantizedType):
        return et.storage_dtype
    name = type(et).__name__
    if "Float" in name:
        return np.dtype(f"float{et.bitwidth}")
    return np.dtype(f"int{et.width.data}")


def make_interpreter(module: ModuleOp) -> Interpreter:
    from tinymlir.interpreter.cmsisnn_impls import CmsisNNFunctions
    from tinymlir.interpreter.nn_impls import NNFunctions
    from tinymlir.interpreter.quant_impls import QuantFunctions
    from tinymlir.interpreter.tk_impls import TkFunctions
    from tinymlir.interpreter.train_impls import TrainFunctions

    interp = Interpreter(module)
    interp.register_implementations(FuncFunctions())
    interp.register_implementations(NNFunctions())
    interp.register_implementations(QuantFunctions())
    interp.register_implementations(TrainFunctions())
    interp.register_implementations(CmsisNNFunctions())
    interp.register_implementations(TkFunctions())
    return interp


def find_function(module: ModuleOp, name: str) -> FuncOp:
    for op in module.walk():
        if isinstance(op, FuncOp) and op.sym_name.data == name:
            return op
    raise InterpreterError(f"no function @{name} in the module")


def check_inputs(func: FuncOp, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    types = func.function_type.inputs.data
    if len(inputs) != len(types):
        raise InterpreterError(f"@{func.sym_name.data} takes {len(types)} inputs, got {len(inputs)}")
    out = []
    for i, (x, t) in enumerate(zip(inputs, types)):
        x = np.asarray(x)
        if isinstance(t, TensorType):
            want_shape, want_dtype = tuple(t.get_shape()), expected_dtype(t)
            if x.shape != want_shape:
                raise InterpreterError(f"input {i} of @{func.sym_name.data}: expected shape {list(want_shape)}, got {list(x.shape)}")
            if x.dtype != want_dtype:
                if not np.can_cast(x.dtype, want_dtype, "same_kind"):
                    raise InterpreterError(f"input {i} of @{func.sym_name.data}: expected {want_dtype}, got {x.dtype}")
                x = x.astype(want_dtype)
        out.append(x)
    return out


def run_function(module: ModuleOp, inputs: Sequence[np.ndarray], name: str = "forward") -> list[np.ndarray]:
    """Run function `name` of `module` on numpy inputs; returns its results."""
    func = find_function(module, name)
    args = check_inputs(func, inputs)
    try:
        results = make_interpreter(module).call_op(name, tuple(args))
    except InterpreterError:
        raise
    except Exception as e:  # an op without an implementation, or a numeric failure
        raise InterpreterError(f"cannot run @{name}: {e}") from e
    return [np.asarray(r) for r in results]
