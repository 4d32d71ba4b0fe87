"""C emission of an inference function lowered to the `cmsisnn` dialect (level 6).

`emit_c(module, prefix="model")` returns `{"model.h": ..., "model.c": ...}`:

* `model.h` declares `int model_infer(const float *in, float *out);` and the macros
  `MODEL_ARENA_BYTES`, `MODEL_INPUT_SIZE`, `MODEL_OUTPUT_SIZE` (element counts).
* `model.c` holds the weights, biases, multipliers and shifts as `static const` arrays
  (flash), one `static int8_t arena[N]` (SRAM) whose layout is the best-fit plan of
  `tinymlir.codegen.memory_plan.plan`, and `model_infer`, which makes one CMSIS-NN call
  per `cmsisnn` op. The graph's input is read from `in` and its (float) result written
  straight to `out`; neither is in the arena.

What the function may contain (anything else raises `EmitCError` naming the op):

* `arith.constant` / `quant.constant` operands of the kernels (emitted as flash arrays),
* the `cmsisnn` ops: CMSIS-NN calls, plus tinymlir's own `quantize_s8`, `dequantize_s8`
  and `requantize_s8` kernels (`tinymlir/runtime/tinymlir_rt.c`),
* `nn.transpose` of an int8 tensor of rank <= 4 (own kernel),
* `nn.flatten` / `nn.reshape`, which alias their input (no code),
* one `func.return` of one f32 tensor; the function takes one f32 tensor;
* in `@train_step`: the `tk` ops (one training-kernel call each; an update with momentum
  or Adam state calls the kernel's `*_opt` variant with a `tk_optimizer`) and
  `train.increment` of Adam's step counter (one statement). Every param an update writes
  (the parameter, its stochastic-rounding counter, its optimizer state) is an SRAM
  array and counts in `MODEL_TRAINABLE_BYTES`.

Kernel scratch memory (`cmsis_nn_context.buf`): each call that needs some gets an extra
arena buffer live during that call only, sized for both CMSIS-NN's pure C and its DSP
build (the `*_get_buffer_size` and `*_get_buffer_size_dsp` values), so the same arena
suits the portable kernels in `tinymlir/runtime/cmsisnn/` and the real library.

Every arena buffer is rounded up to 16 bytes, so all offsets are 16-byte aligned
(the arena itself is `aligned(16)`). The output is deterministic: same IR, same bytes.

`model_infer` returns 0, or the (negative) `arm_cmsis_nn_status` of the first failing
CMSIS-NN call.

Build: `model.c`, `tinymlir/runtime/tinymlir_rt.c` and the CMSIS-NN sources, with
`tinymlir/runtime` and the CMSIS-NN `Include` directory on the include path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from typing import Any

from xdsl.dialects.builtin import (
    Float32Type,
    IntegerType,
    ModuleOp,
    Signedness,
    StringAttr,
    SymbolRefAttr,
    TensorType,
)
from xdsl.dialects.func import FuncOp
from xdsl.ir import Operation, SSAValue

from tinymlir.codegen.memory_plan import Buffer, plan, tensor_bytes
from tinymlir.dialects import cmsisnn, tk, train
from tinymlir.dialects.cmsisnn import ints

__all__ = ["ArenaPeak", "CInfo", "EmitCError", "RUNTIME_DIR", "CMSISNN_DIR", "TK_DIR", "emit_c", "emit_c_info",
           "runtime_sources", "include_dirs"]

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
CMSISNN_DIR = RUNTIME_DIR / "cmsisnn"
TK_DIR = RUNTIME_DIR / "tk"
ALIGN = 16
CONSTANT_OPS = frozenset({"arith.constant", "quant.constant"})
ALIAS_OPS = frozenset({"nn.flatten", "nn.reshape"})


class EmitCError(Exception):
    """The function cannot be emitted as C (one line, naming the op)."""


def runtime_sources() -> list[Path]:
    """The C files to compile next to the generated `model.c`: tinymlir's runtime and
    training kernels, and the portable CMSIS-NN."""
    return [RUNTIME_DIR / "tinymlir_rt.c", *sorted((TK_DIR / "src").glob("*.c")),
            *sorted((CMSISNN_DIR / "src").glob("*.c"))]


def include_dirs() -> list[Path]:
    return [RUNTIME_DIR, TK_DIR / "include", CMSISNN_DIR / "include"]


# --------------------------------------------------------------------------- helpers


def _shape(v: SSAValue) -> tuple[int, ...]:
    assert isinstance(v.type, TensorType)
    return tuple(int(d) for d in v.type.get_shape())


def _count(v: SSAValue) -> int:
    return int(np.prod(_shape(v), dtype=np.int64))


def _is_f32(v: SSAValue) -> bool:
    return isinstance(v.type, TensorType) and isinstance(v.type.element_type, Float32Type)


def _int_width(v: SSAValue) -> int | None:
    if isinstance(v.type, TensorType):
        et = v.type.element_type
        if isinstance(et, IntegerType):
            return et.width.data
        storage = getattr(et, "storage_type", None)  # quantized constants: storage width
        if isinstance(storage, IntegerType):
            return storage.width.data
    return None


def _v(attr) -> int:
    return int(attr.value.data)


def _c_int(x: int) -> str:
    x = int(x)
    return "(-2147483647 - 1)" if x == -(2**31) else str(x)


def _c_float(x: float) -> str:
    """An exact C99 float literal (hexadecimal) of the float32 value of x."""
    f = float(np.float32(x))
    if f == 0.0:
        return "0.0f"
    return f"{f.hex()}f"


def _array_body(values: np.ndarray, per_line: int = 24) -> str:
    vals = [_c_int(v) for v in np.asarray(values).reshape(-1).tolist()]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    return "    " + ",\n    ".join(lines)


def _dims(n: int, h: int, w: int, c: int) -> str:
    return f"{{{n}, {h}, {w}, {c}}}"  # cmsis_nn_dims {n, h, w, c}


def _tile(pair: tuple[int, ...]) -> str:
    return f"{{.w = {pair[1]}, .h = {pair[0]}}}"  # IR pairs are [h, w]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# --------------------------------------------------------------------------- scratch sizes


def _scratch_bytes(op: Operation) -> int:
    """Bytes of scratch memory the call needs: the op's `scratch_bytes()` (a CMSIS-NN
    op's `cmsis_nn_context.buf`, sized for both CMSIS-NN's pure C and its DSP build; a
    tk op's gradient buffer), 0 for ops without one."""
    return int(op.scratch_bytes()) if hasattr(op, "scratch_bytes") else 0


# --------------------------------------------------------------------------- emitter


#: C type of a tensor element (storage integers for quantized / integer tensors).
def _ctype(t) -> str:
    et = t.element_type if isinstance(t, TensorType) else t
    if isinstance(et, Float32Type):
        return "float"
    width = getattr(getattr(et, "storage_type", None) or et, "width", None)
    if isinstance(et, IntegerType) and et.width.data == 1:
        return "uint8_t"
    if width is None:
        raise EmitCError(f"no C type for {t}")
    signed = not (isinstance(et, IntegerType) and et.signedness.data == Signedness.UNSIGNED)
    return f"{'' if signed else 'u'}int{width.data}_t"


@dataclass
class _Param:
    """A `train.param` as a C array: `static const` (flash) unless a function updates it."""

    cname: str
    ctype: str
    data: np.ndarray
    mutable: bool


class _Shared:
    """What the functions of one C file share: flash arrays and the parameter arrays."""

    def __init__(self, module: ModuleOp | None, prefix: str, funcs: list[FuncOp]):
        self.prefix = prefix
        self.flash: list[str] = []
        self.n_arrays = 0
        self.params: dict[str, _Param] = {}
        if module is None:
            return
        from tinymlir.interpreter.train_impls import initial_value

        updated = {ref.root_reference.data for f in funcs for op in f.walk()
                   for key in ("param", "rng", "velocity", "m", "v")
                   if isinstance(ref := op.properties.get(key), SymbolRefAttr) and op.name != "train.load"}
        for op in module.ops:
            if isinstance(op, train.ParamOp):
                name = op.sym_name.data
                cname = f"{prefix}_p_" + "".join(c if c.isalnum() else "_" for c in name)
                self.params[name] = _Param(cname, _ctype(op.type), initial_value(op), name in updated)

    def array(self, ctype: str, values, what: str) -> str:
        name = f"{self.prefix}_{what}{self.n_arrays}"
        self.n_arrays += 1
        values = np.asarray(values).reshape(-1)
        if ctype == "float":
            vals = [_c_float(v) for v in values.tolist()]
            body = "    " + ",\n    ".join(", ".join(vals[i:i + 8]) for i in range(0, len(vals), 8))
        else:
            body = _array_body(values)
        self.flash.append(f"static const {ctype} {name}[{max(values.size, 1)}] = {{\n"
                          f"{body if values.size else '    0'}\n}};")
        return name

    def param_definitions(self) -> list[str]:
        lines = []
        for name, p in self.params.items():
            kind = "SRAM, updated by training" if p.mutable else "flash"
            const = "" if p.mutable else "const "
            lines.append(f"/* @{name} {list(p.data.shape)} ({kind}) */")
            lines.append(f"static {const}{p.ctype} {p.cname}[{max(p.data.size, 1)}] = {{\n"
                         f"{_array_body(p.data.astype(np.int64)) if p.ctype != 'float' else _float_body(p.data)}\n}};")
        return lines


def _float_body(values: np.ndarray) -> str:
    vals = [_c_float(v) for v in np.asarray(values).reshape(-1).tolist()] or ["0.0f"]
    return "    " + ",\n    ".join(", ".join(vals[i:i + 8]) for i in range(0, len(vals), 8))


@dataclass(frozen=True)
class _Arg:
    """A function argument or result as a C parameter."""

    cname: str
    ctype: str  # element type
    tensor: bool


_SCALAR = "scalar"


class _Emitter:
    """One function: its static storage plan and its body."""

    def __init__(self, func: FuncOp, shared: _Shared, c_name: str, guard_bytes: int = 0):
        self.guard = guard_bytes
        self.func = func
        self.shared = shared
        self.prefix = shared.prefix
        self.c_name = c_name
        self.consts: dict[SSAValue, str] = {}

    def _array(self, ctype: str, values, what: str) -> str:
        return self.shared.array(ctype, values, what)

    def _const(self, v: SSAValue, op: Operation, ctype: str, width: int) -> str:
        if v in self.consts:
            return self.consts[v]
        owner = v.owner
        if isinstance(owner, train.LoadOp):
            return self.shared.params[owner.param.root_reference.data].cname
        if not isinstance(owner, Operation) or owner.name not in CONSTANT_OPS:
            raise EmitCError(f"{op.name}: operand {v.name_hint or '?'} must be a constant or a parameter")
        if _int_width(v) != width:
            raise EmitCError(f"{op.name}: constant operand of type {v.type} is not i{width}")
        from tinymlir.interpreter.nn_impls import dense_to_numpy

        data = dense_to_numpy(owner.value)  # type: ignore[attr-defined]
        data = np.broadcast_to(data, _shape(v)).astype(np.int64)
        name = self._array(ctype, data, "w" if width == 8 else "b")
        self.consts[v] = name
        return name

    # -- signature ---------------------------------------------------------------
    def signature(self) -> str:
        params = [f"const {a.ctype} *{a.cname}" if a.tensor else f"{a.ctype} {a.cname}" for a in self.args.values()]
        params += [f"{a.ctype} *{a.cname}" for a in self.results.values()]
        return f"int {self.c_name}({', '.join(params) or 'void'})"

    def _interface(self) -> None:
        block = self.func.body.blocks[0]
        self.args: dict[SSAValue, _Arg] = {}
        used: set[str] = set()
        for k, a in enumerate(block.args):
            hint = a.name_hint or ""
            cname = hint if hint.isidentifier() and hint not in used and hint not in ("out", "arena") else f"arg{k}"
            cname = "in" if k == 0 and isinstance(a.type, TensorType) else cname
            used.add(cname)
            if isinstance(a.type, TensorType):
                if _ctype(a.type) not in ("float", "int8_t"):
                    raise EmitCError(f"@{self.func.sym_name.data}: argument {k} must be a float or i8 tensor")
                self.args[a] = _Arg(cname, _ctype(a.type), True)
            elif isinstance(a.type, (Float32Type, IntegerType)):
                self.args[a] = _Arg(cname, _ctype(a.type), False)
            else:
                raise EmitCError(f"@{self.func.sym_name.data}: argument {k} of type {a.type} has no C form")
        ret = self.ops[-1] if self.ops else None
        if ret is None or ret.name != "func.return":
            raise EmitCError(f"@{self.func.sym_name.data}: expected a func.return at the end")
        self.results: dict[SSAValue, _Arg] = {}
        for k, v in enumerate(ret.operands):
            name = "out" if isinstance(v.type, TensorType) else (v.name_hint if (v.name_hint or "").isidentifier()
                                                                 and v.name_hint not in used else f"res{k}")
            name = name if name not in used else f"res{k}"
            used.add(name)
            if v in self.results or v in self.args:
                raise EmitCError(f"@{self.func.sym_name.data}: result {k} must be computed by the function")
            self.results[v] = _Arg(name, _ctype(v.type), isinstance(v.type, TensorType))

    # -- storage -----------------------------------------------------------------
    def _roots(self, in_place: dict[int, SSAValue]) -> tuple[dict, dict, dict, list]:
        """Map every value to the value owning its storage (views and in-place results
        share their source's); first and last step of every owner."""
        root: dict[SSAValue, Any] = {a: a for a in self.args}
        first: dict[Any, int] = {a: 0 for a in self.copied}
        last: dict[Any, int] = {a: 0 for a in self.copied}
        order: list[SSAValue] = list(self.copied)
        for i, op in enumerate(self.ops):
            for v in op.operands:
                r = root.get(v)
                if r is not None and r in last:
                    last[r] = max(last[r], i)
            if op.name in CONSTANT_OPS or isinstance(op, train.LoadOp):
                for res in op.results:
                    root[res] = None
                continue
            if op.name in ALIAS_OPS or i in in_place:
                src = root.get(op.operands[0] if op.name in ALIAS_OPS else in_place[i])
                if src is None:
                    raise EmitCError(f"{op.name}: a view of a constant or parameter is not supported")
                root[op.results[0]] = src
                continue
            for res in op.results:
                if not isinstance(res.type, TensorType):
                    root[res] = _SCALAR
                    continue
                root[res] = res
                first[res] = last[res] = i
                order.append(res)
        return root, first, last, order

    def plan(self) -> None:
        func = self.func
        blocks = list(func.body.blocks)
        if len(blocks) != 1:
            raise EmitCError(f"@{func.sym_name.data}: expected a single block, got {len(blocks)}")
        self.ops = list(blocks[0].ops)
        self._interface()
        # int8 tensor arguments are copied into the arena (where they die after their last
        # use, like any activation); float ones are read where the caller has them
        self.copied = [a for a, c in self.args.items() if c.tensor and c.ctype == "int8_t"]
        root, _, last, _ = self._roots({})
        outs = {root.get(v) for v in self.results}
        in_place: dict[int, SSAValue] = {}
        for i, op in enumerate(self.ops):
            k = op.in_place_operand() if hasattr(op, "in_place_operand") else None
            if k is None:
                continue
            src = root.get(op.operands[k])
            if (isinstance(src, SSAValue) and src not in self.args and src not in outs and last.get(src) == i
                    and tensor_bytes(src.type) == tensor_bytes(op.results[0].type)):
                in_place[i] = op.operands[k]
        root, first, last, order = self._roots(in_place)
        self.root, self.in_place = root, in_place
        self.scratch = {i: size for i, op in enumerate(self.ops) if (size := _scratch_bytes(op))}
        self.out_roots = {root.get(v): a for v, a in self.results.items() if a.tensor}
        self.names: dict[SSAValue, str] = {}
        self.hints: dict[str, str] = {}
        self.raw: dict[str, int] = {}  # bytes of data in each buffer (before padding and guard)
        buffers: list[Buffer] = []
        for k, v in enumerate(order):
            if v in self.out_roots:
                continue
            name = f"v{k}"
            self.names[v] = name
            self.hints[name] = f"%{v.name_hint or name} {'x'.join(map(str, _shape(v)))}x{v.type.element_type}"
            self.raw[name] = tensor_bytes(v.type)
            buffers.append(Buffer(name, _align(self.raw[name] + self.guard), first[v], last[v]))
        for i, size in sorted(self.scratch.items()):
            self.raw[f"scratch@{i}"] = size
            buffers.append(Buffer(f"scratch@{i}", _align(size + self.guard), i, i))
        # the strategy `plan-memory` chose for this function, if it ran (best-fit otherwise)
        chosen = func.attributes.get("tinymlir.arena_strategy")
        self.plan_ = plan(buffers, chosen.data if isinstance(chosen, StringAttr) else "best-fit")
        self.arena_bytes = self.plan_.arena_size
        self.scalars = {v: f"s{k}" for k, v in enumerate(v for op in self.ops for v in op.results
                                                          if root.get(v) is _SCALAR)}

    def ptr(self, v: SSAValue, ctype: str = "int8_t") -> str:
        owner = v.owner
        if isinstance(owner, train.LoadOp):
            p = self.shared.params[owner.param.root_reference.data]
            return p.cname if p.ctype == ctype else f"(({ctype} *)(void *){p.cname})"
        r = self.root.get(v)
        if r is None:
            raise EmitCError(f"value {v.name_hint or '?'} has no storage")
        if r in self.args and r not in self.copied:
            a = self.args[r]
            return a.cname if a.ctype == ctype else f"(const {ctype} *)(const void *){a.cname}"
        if r in self.out_roots:
            a = self.out_roots[r]
            return a.cname if a.ctype == ctype else f"({ctype} *)(void *){a.cname}"
        off = self.plan_.offsets[self.names[r]]
        if ctype == "int8_t":
            return f"(arena + {off})"
        return f"(({ctype} *)(void *)(arena + {off}))"

    def scalar(self, v: SSAValue) -> str:
        if v in self.args:
            return self.args[v].cname
        if v in self.scalars:
            return self.scalars[v]
        raise EmitCError(f"scalar {v.name_hint or '?'} has no C variable")

    def scratch_ptr(self, i: int, ctype: str = "int8_t") -> str:
        if i not in self.scratch:
            return "NULL"
        off = self.plan_.offsets[f"scratch@{i}"]
        return f"(arena + {off})" if ctype == "int8_t" else f"(({ctype} *)(void *)(arena + {off}))"

    def ctx(self, i: int) -> str:
        size = self.scratch.get(i, 0)
        if size == 0:
            return "const cmsis_nn_context ctx = {NULL, 0};"
        off = self.plan_.offsets[f"scratch@{i}"]
        return f"const cmsis_nn_context ctx = {{arena + {off}, {size}}};"

    def _i8(self, op: Operation, v: SSAValue) -> None:
        if _int_width(v) != 8 or not isinstance(v.type, TensorType) or not isinstance(v.type.element_type, IntegerType):
            raise EmitCError(f"{op.name}: expected an i8 tensor, got {v.type}")

    # -- ops ---------------------------------------------------------------------
    def emit_op(self, i: int, op: Operation) -> list[str]:
        if op.name in CONSTANT_OPS or isinstance(op, train.LoadOp):
            return []
        if isinstance(op, train.IncrementOp):  # Adam's step counter (wraps at 2^32)
            p = self.shared.params[op.param.root_reference.data]
            if p.ctype != "int32_t":
                raise EmitCError(f"train.increment: {op.param} must be an i32 param, got {p.ctype}")
            return [f"/* train.increment {op.param} */",
                    f"{p.cname}[0] = (int32_t)(uint32_t)((uint32_t){p.cname}[0] + 1u);"]
        if op.name == "func.return":
            return self._return(op)
        res = op.results[0].name_hint if op.results else None
        head = f"/* {op.name}" + (f" -> %{res}" if res else "") + " */"
        if op.name in ALIAS_OPS:
            return [f"{head} /* alias of its input */"]
        if i in self.in_place:
            head = head[:-3] + ", in place */"
        body = self._body(i, op)
        return [head, "{", *("    " + line if line else "" for line in body), "}"]

    def _requant_arrays(self, op) -> tuple[str, str]:
        m = self._array("int32_t", np.array(ints(op.multipliers), np.int64), "mult")
        s = self._array("int32_t", np.array(ints(op.shifts), np.int64), "shift")
        return m, s

    def _bias(self, op) -> str:
        return self._const(op.bias, op, "int32_t", 32) if op.bias is not None else "NULL"

    @staticmethod
    def _check() -> list[str]:
        return ["if (st != ARM_CMSIS_NN_SUCCESS)", "{", "    return (int)st;", "}"]

    def _body(self, i: int, op: Operation) -> list[str]:
        if isinstance(op, cmsisnn.ConvolveWrapperS8Op):
            xs, ws, ys = _shape(op.input), _shape(op.filter), _shape(op.result)
            w = self._const(op.filter, op, "int8_t", 8)
            b = self._bias(op)
            m, s = self._requant_arrays(op)
            return [
                self.ctx(i),
                f"const cmsis_nn_conv_params params = {{{_v(op.input_offset)}, {_v(op.output_offset)}, "
                f"{_tile(ints(op.stride))}, {_tile(ints(op.padding))}, {_tile(ints(op.dilation))}, "
                f"{{{_v(op.act_min)}, {_v(op.act_max)}}}}};",
                f"const cmsis_nn_per_channel_quant_params quant = {{(int32_t *){m}, (int32_t *){s}}};",
                f"const cmsis_nn_dims input_dims = {_dims(*xs)};",
                f"const cmsis_nn_dims filter_dims = {_dims(*ws)};",
                f"const cmsis_nn_dims bias_dims = {_dims(1, 1, 1, ws[0])};",
                f"const cmsis_nn_dims output_dims = {_dims(*ys)};",
                f"const arm_cmsis_nn_status st = arm_convolve_wrapper_s8(&ctx, &params, &quant, &input_dims, "
                f"{self.ptr(op.input)}, &filter_dims, {w}, &bias_dims, {b}, &output_dims, {self.ptr(op.result)});",
                *self._check(),
            ]
        if isinstance(op, cmsisnn.DepthwiseConvWrapperS8Op):
            xs, ws, ys = _shape(op.input), _shape(op.filter), _shape(op.result)
            w = self._const(op.filter, op, "int8_t", 8)
            b = self._bias(op)
            m, s = self._requant_arrays(op)
            return [
                self.ctx(i),
                f"const cmsis_nn_dw_conv_params params = {{{_v(op.input_offset)}, {_v(op.output_offset)}, "
                f"{_v(op.ch_mult)}, {_tile(ints(op.stride))}, {_tile(ints(op.padding))}, "
                f"{_tile(ints(op.dilation))}, {{{_v(op.act_min)}, {_v(op.act_max)}}}}};",
                f"const cmsis_nn_per_channel_quant_params quant = {{(int32_t *){m}, (int32_t *){s}}};",
                f"const cmsis_nn_dims input_dims = {_dims(*xs)};",
                f"const cmsis_nn_dims filter_dims = {_dims(*ws)};",
                f"const cmsis_nn_dims bias_dims = {_dims(1, 1, 1, ws[3])};",
                f"const cmsis_nn_dims output_dims = {_dims(*ys)};",
                f"const arm_cmsis_nn_status st = arm_depthwise_conv_wrapper_s8(&ctx, &params, &quant, &input_dims, "
                f"{self.ptr(op.input)}, &filter_dims, {w}, &bias_dims, {b}, &output_dims, {self.ptr(op.result)});",
                *self._check(),
            ]
        if isinstance(op, cmsisnn.FullyConnectedS8Op):
            xs, ws, ys = _shape(op.input), _shape(op.filter), _shape(op.result)
            w = self._const(op.filter, op, "int8_t", 8)
            b = self._bias(op)
            mults, shifts = ints(op.multipliers), ints(op.shifts)
            lines = [
                self.ctx(i),
                f"const cmsis_nn_fc_params params = {{{_v(op.input_offset)}, {_v(op.filter_offset)}, "
                f"{_v(op.output_offset)}, {{{_v(op.act_min)}, {_v(op.act_max)}}}}};",
            ]
            if op.per_channel:
                m, s = self._requant_arrays(op)
                lines.append(f"const cmsis_nn_per_channel_quant_params quant = {{(int32_t *){m}, (int32_t *){s}}};")
                fn = "arm_fully_connected_per_channel_s8"
            else:
                lines.append(f"const cmsis_nn_per_tensor_quant_params quant = {{{mults[0]}, {shifts[0]}}};")
                fn = "arm_fully_connected_s8"
            return [
                *lines,
                f"const cmsis_nn_dims input_dims = {_dims(xs[0], 1, 1, xs[1])};",
                f"const cmsis_nn_dims filter_dims = {_dims(ws[1], 1, 1, ws[0])};",
                f"const cmsis_nn_dims bias_dims = {_dims(1, 1, 1, ws[0])};",
                f"const cmsis_nn_dims output_dims = {_dims(ys[0], 1, 1, ys[1])};",
                f"const arm_cmsis_nn_status st = {fn}(&ctx, &params, &quant, &input_dims, "
                f"{self.ptr(op.input)}, &filter_dims, {w}, &bias_dims, {b}, &output_dims, {self.ptr(op.result)});",
                *self._check(),
            ]
        if isinstance(op, cmsisnn.ElementwiseAddS8Op):
            return [
                f"const arm_cmsis_nn_status st = arm_elementwise_add_s8({self.ptr(op.input1)}, {self.ptr(op.input2)}, "
                f"{_v(op.input1_offset)}, {_v(op.input1_multiplier)}, {_v(op.input1_shift)}, "
                f"{_v(op.input2_offset)}, {_v(op.input2_multiplier)}, {_v(op.input2_shift)}, {_v(op.left_shift)}, "
                f"{self.ptr(op.result)}, {_v(op.output_offset)}, {_v(op.output_multiplier)}, {_v(op.output_shift)}, "
                f"{_v(op.act_min)}, {_v(op.act_max)}, {_count(op.result)});",
                *self._check(),
            ]
        if isinstance(op, (cmsisnn.AvgpoolS8Op, cmsisnn.MaxPoolS8Op)):
            xs, ys = _shape(op.input), _shape(op.result)
            kh, kw = ints(op.kernel)
            fn = "arm_avgpool_s8" if isinstance(op, cmsisnn.AvgpoolS8Op) else "arm_max_pool_s8"
            return [
                self.ctx(i),
                f"const cmsis_nn_pool_params params = {{{_tile(ints(op.stride))}, {_tile(ints(op.padding))}, "
                f"{{{_v(op.act_min)}, {_v(op.act_max)}}}}};",
                f"const cmsis_nn_dims input_dims = {_dims(*xs)};",
                f"const cmsis_nn_dims filter_dims = {_dims(1, kh, kw, 1)};",
                f"const cmsis_nn_dims output_dims = {_dims(*ys)};",
                f"const arm_cmsis_nn_status st = {fn}(&ctx, &params, &input_dims, {self.ptr(op.input)}, "
                f"&filter_dims, &output_dims, {self.ptr(op.result)});",
                *self._check(),
            ]
        if isinstance(op, cmsisnn.RequantizeS8Op):
            return [
                f"tmrt_requantize_s8({self.ptr(op.input)}, {self.ptr(op.result)}, {_count(op.result)}, "
                f"{_v(op.input_offset)}, {_v(op.output_offset)}, {_v(op.left_shift)}, {_v(op.multiplier)}, "
                f"{_v(op.shift)}, {_v(op.act_min)}, {_v(op.act_max)});"
            ]
        if isinstance(op, cmsisnn.QuantizeS8Op):
            return [
                f"tmrt_quantize_s8({self.ptr(op.input, 'float')}, {self.ptr(op.result)}, {_count(op.result)}, "
                f"{_c_float(op.scale.value.data)}, {_v(op.zero_point)});"
            ]
        if isinstance(op, cmsisnn.DequantizeS8Op):
            return [
                f"tmrt_dequantize_s8({self.ptr(op.input)}, {self.ptr(op.result, 'float')}, {_count(op.result)}, "
                f"{_c_float(op.scale.value.data)}, {_v(op.zero_point)});"
            ]
        if op.name == "nn.transpose":
            x, y = op.operands[0], op.results[0]
            self._i8(op, x)
            xs = _shape(x)
            perm = [int(p) for p in op.attributes["perm"].get_values()] if "perm" in op.attributes else \
                [int(p) for p in op.properties["perm"].get_values()]
            if len(xs) > 4 or sorted(perm) != list(range(len(xs))):
                raise EmitCError(f"nn.transpose: rank {len(xs)} or permutation {perm} is not supported")
            pad = 4 - len(xs)
            dims = [1] * pad + list(xs)
            perm4 = list(range(pad)) + [p + pad for p in perm]
            return [
                f"static const int32_t dims[4] = {{{', '.join(map(str, dims))}}};",
                f"static const int32_t perm[4] = {{{', '.join(map(str, perm4))}}};",
                f"tmrt_transpose_s8({self.ptr(x)}, {self.ptr(y)}, dims, perm);",
            ]
        if op.dialect_name() == "tk":
            return self._tk_body(i, op)
        raise EmitCError(f"{op.name}: op not supported by the C emitter")

    def _return(self, op: Operation) -> list[str]:
        lines = []
        for v, a in self.results.items():
            if not a.tensor:
                lines.append(f"*{a.cname} = {self.scalar(v)};")
        return lines

    def _geometry(self, op: Operation, x: tuple[int, ...], y: tuple[int, ...], k: tuple[int, int]) -> str:
        (sh, sw), (ph, pw), (dh, dw) = op.geometry()  # type: ignore[attr-defined]
        n, ih, iw, ic = tk.as_nhwc(x)
        _, oh, ow, oc = tk.as_nhwc(y)
        return (f"static const tk_conv_geometry g = {{{n}, {ih}, {iw}, {ic}, {oh}, {ow}, {oc}, {k[0]}, {k[1]}, "
                f"{sh}, {sw}, {ph}, {pw}, {dh}, {dw}}};")

    def _update_args(self, op: Operation) -> str:
        """channels, n_channels, factor, lr, rng of a tk `*_sgd` call."""
        ch = op.channel_list  # type: ignore[attr-defined]
        channels = "NULL, 0" if ch is None else f"{self._array('int32_t', np.array(ch, np.int64), 'ch')}, {len(ch)}"
        factor = self._array("float", tk.floats(op.factor), "factor")  # type: ignore[attr-defined]
        rng = "NULL"
        if op.rng is not None:  # type: ignore[attr-defined]
            p = self.shared.params[op.rng.root_reference.data]  # type: ignore[attr-defined]
            rng = f"(uint32_t *)(void *){p.cname}"
        return f"{channels}, {factor}, {self.scalar(op.lr)}, {rng}"  # type: ignore[attr-defined]

    def _param(self, op: Operation) -> str:
        return self.shared.params[op.param.root_reference.data].cname  # type: ignore[attr-defined]

    def _optimizer(self, op: Operation) -> tuple[list[str], str]:
        """The `tk_optimizer opt` definition of a tk update op with momentum or Adam and the
        argument that passes it (`&opt, `); nothing for plain SGD."""
        o: Any = op
        kind = o.optimizer
        if kind == "sgd":
            return [], ""

        def state(ref) -> str:
            return "NULL" if ref is None else self.shared.params[ref.root_reference.data].cname

        def num(attr) -> str:
            return "0.0f" if attr is None else _c_float(attr.value.data)

        step = "0" if o.step is None else f"{self.shared.params[o.step.root_reference.data].cname}[0]"
        kinds = {"sgdm": "TK_OPT_SGDM", "adam": "TK_OPT_ADAM"}
        return [f"const tk_optimizer opt = {{{kinds[kind]}, {num(o.momentum)}, {num(o.beta1)}, {num(o.beta2)}, "
                f"{num(o.eps)}, {step}, {state(o.velocity)}, {state(o.m)}, {state(o.v)}}};"], "&opt, "

    def _tk_body(self, i: int, op: Operation) -> list[str]:
        f = "float"
        if isinstance(op, tk.OutputMaskOp):
            return [f"tk_output_mask_s8({self.ptr(op.input)}, {_count(op.input)}, {_v(op.act_min)}, {_v(op.act_max)}, "
                    f"{self.ptr(op.result, 'uint8_t')});"]
        if isinstance(op, tk.MaskGradOp):
            return [f"tk_mask_grad_f32({self.ptr(op.grad, f)}, {self.ptr(op.mask, 'uint8_t')}, {_count(op.grad)}, "
                    f"{self.ptr(op.result, f)});"]
        if isinstance(op, tk.AddOp):
            return [f"tk_add_f32({self.ptr(op.lhs, f)}, {self.ptr(op.rhs, f)}, {_count(op.lhs)}, {self.ptr(op.result, f)});"]
        if isinstance(op, tk.SoftmaxXentOp):
            k = _shape(op.logits)[1]
            return [f"{self.scalar(op.loss)} = tk_softmax_xent_f32({self.ptr(op.logits, f)}, {k}, {self.scalar(op.label)}, "
                    f"{self.ptr(op.grad, f)});"]
        if isinstance(op, tk.GlobalAvgPoolGradOp):
            n, h, w, c = _shape(op.result)
            return [f"tk_global_avgpool_grad_f32({self.ptr(op.dy, f)}, {n}, {h}, {w}, {c}, {self.ptr(op.result, f)});"]
        if isinstance(op, (tk.ConvInputGradOp, tk.DepthwiseConvInputGradOp)):
            ws = tk.as_ohwi(_shape(op.weight))
            w = self._const(op.weight, op, "int8_t", 8)
            scale = self._array("float", tk.floats(op.w_scale), "wscale")
            fn = "tk_conv_input_grad_f32" if isinstance(op, tk.ConvInputGradOp) else "tk_depthwise_conv_input_grad_f32"
            return [self._geometry(op, _shape(op.result), _shape(op.dy), (ws[1], ws[2])),
                    f"{fn}(&g, {self.ptr(op.dy, f)}, {w}, {scale}, {self.ptr(op.result, f)});"]
        if isinstance(op, (tk.ConvWeightGradSGDOp, tk.DepthwiseConvWeightGradSGDOp)):
            ws = tk.as_ohwi(op.param_shape() or ())
            fn = ("tk_conv_weight_grad_sgd_s8" if isinstance(op, tk.ConvWeightGradSGDOp)
                  else "tk_depthwise_conv_weight_grad_sgd_s8")
            opt_lines, opt_arg = self._optimizer(op)
            if opt_lines:
                fn = fn.replace("_sgd_", "_opt_")
            return [self._geometry(op, _shape(op.input), _shape(op.dy), (ws[1], ws[2])), *opt_lines,
                    f"skipped += {fn}(&g, {self.ptr(op.dy, f)}, {self.ptr(op.input)}, {_v(op.x_offset)}, "
                    f"{_c_float(float(tk.floats(op.x_scale)[0]))}, {self._param(op)}, {self._update_args(op)}, "
                    f"{opt_arg}{self.scratch_ptr(i, f)});"]
        if isinstance(op, (tk.GatherChannelsOp, tk.MergeChannelsOp)):
            ch = ints(op.channels)
            chans = self._array("int32_t", np.array(ch, np.int64), "ch")
            ys = _shape(op.result)
            rows = _count(op.result) // ys[-1]
            size = tensor_bytes(op.result.type) // max(_count(op.result), 1)
            ct = _ctype(op.result.type)
            if isinstance(op, tk.GatherChannelsOp):
                return [f"tk_gather_channels({self.ptr(op.input, ct)}, {rows}, {_shape(op.input)[-1]}, {chans}, "
                        f"{len(ch)}, {size}, {self.ptr(op.result, ct)});"]
            return [f"tk_merge_channels({self.ptr(op.lhs, ct)}, {self.ptr(op.rhs, ct)}, {rows}, {len(ch)}, "
                    f"{_shape(op.rhs)[-1]}, {chans}, {size}, {self.ptr(op.result, ct)});"]
        if isinstance(op, tk.BiasGradSGDOp):
            ys = _shape(op.dy)
            c = ys[-1]
            opt_lines, opt_arg = self._optimizer(op)
            fn = "tk_bias_grad_opt_s32" if opt_lines else "tk_bias_grad_sgd_s32"
            return [*opt_lines, f"skipped += {fn}({self.ptr(op.dy, f)}, {_count(op.dy) // c}, {c}, {self._param(op)}, "
                    f"{self._update_args(op)}{', &opt' if opt_lines else ''});"]
        raise EmitCError(f"{op.name}: op not supported by the C emitter")

    # -- function ----------------------------------------------------------------
    def body(self) -> list[str]:
        self.plan()
        lines: list[str] = []
        for v, name in self.scalars.items():
            lines.append(f"    {_ctype(v.type)} {name} = 0;")
        updates = any(isinstance(op, tk.SGD_OPS) for op in self.ops)
        if updates:
            lines.append("    int32_t skipped = 0; /* update elements left alone: not finite */")
        for a in self.copied:
            lines.append(f"    memcpy({self.ptr(a)}, {self.args[a].cname}, {_count(a)}); /* the input, into the arena */")
        for i, op in enumerate(self.ops):
            body = self.emit_op(i, op)
            for line in [*self._guards(i, "fill"), *body, *(self._guards(i, "check") if body else [])]:
                lines.append("    " + line if line else "")
        lines.append("    return skipped ? 1 : 0;" if updates else "    return 0;")
        return [f"{self.signature()}", "{", *lines, "}"]

    def _guards(self, i: int, what: str) -> list[str]:
        """Debug build: fill the guards of the buffers born at step i, or check those of
        every buffer live at step i (returning -(1000 + i) when one is overwritten)."""
        if not self.guard:
            return []
        out = []
        for b in self.plan_.buffers:
            end = self.plan_.offsets[b.name] + self.raw[b.name]  # the guard follows the data at once
            if what == "fill" and b.first_op_index == i:
                out.append(f"tmrt_guard_fill(arena + {end}, {self.guard});")
            elif what == "check" and b.first_op_index <= i <= b.last_op_index:
                out.append(f"if (!tmrt_guard_ok(arena + {end}, {self.guard})) return -{1000 + i}; /* {b.name} */")
        return out

    def layout_comment(self) -> list[str]:
        rows = [f" *   {b.name:<12} {self.plan_.offsets[b.name]:>8} +{b.size_bytes:<8} steps "
                f"{b.first_op_index}..{b.last_op_index}"
                for b in sorted(self.plan_.buffers, key=lambda b: (self.plan_.offsets[b.name], b.name))]
        return [f"/* Arena layout of @{self.func.sym_name.data} ({self.plan_.strategy}, {self.plan_.arena_size} bytes):"
                " name offset +bytes live steps", *rows, " */"]


    def peak(self) -> "ArenaPeak":
        """The step whose live buffers make the arena's lower bound, and those buffers."""
        steps = max(len(self.ops), 1)
        live = [[b for b in self.plan_.buffers if b.first_op_index <= i <= b.last_op_index] for i in range(steps)]
        i = max(range(steps), key=lambda k: sum(b.size_bytes for b in live[k]))
        op = self.ops[i] if self.ops else None
        what = "(empty)" if op is None else op.name + (f" (%{op.results[0].name_hint})" if op.results
                                                          and op.results[0].name_hint else "")
        tensors = sorted(((self.hints.get(b.name, b.name), b.size_bytes) for b in live[i]), key=lambda t: -t[1])
        return ArenaPeak(self.c_name, self.plan_.arena_size, i, what, tensors)


@dataclass(frozen=True)
class ArenaPeak:
    """Where a function's arena peaks: its size, the step, the op there and the tensors
    live there (name, bytes), largest first."""

    function: str
    arena_bytes: int
    step: int
    op: str
    live: list[tuple[str, int]]


@dataclass(frozen=True)
class CInfo:
    """What `emit_c_info` reports besides the sources: bytes of the shared arena, of the
    trained (SRAM) and frozen (flash) parameters, and each function's arena peak."""

    arena_bytes: int
    trainable_bytes: int
    frozen_bytes: int
    peaks: list[ArenaPeak]


def _c_function_name(prefix: str, func: FuncOp) -> str:
    name = func.sym_name.data
    return f"{prefix}_infer" if name == "forward" else f"{prefix}_{name}"


def _functions(module: ModuleOp | FuncOp, func_name: str | None) -> tuple[ModuleOp | None, list[FuncOp]]:
    if isinstance(module, FuncOp):
        return None, [module]
    funcs = [op for op in module.ops if isinstance(op, FuncOp)]
    if func_name is not None:
        funcs = [f for f in funcs if f.sym_name.data == func_name]
        if not funcs:
            raise EmitCError(f"no function @{func_name} in the module")
    if not funcs:
        raise EmitCError("the module has no function")
    return module, funcs


_DOCS = {
    "infer": "Runs the network on one input; writes the output. Returns 0, or the negative\n"
             " * arm_cmsis_nn_status of the first failing CMSIS-NN call.",
    "train_step": "One training step on one input and its label with learning rate `lr`: forward,\n"
                  " * backward and in-place update (SGD, momentum SGD or Adam) of the trainable\n"
                  " * parameters; writes the loss before the update. Returns 0; 1 if some update\n"
                  " * elements were skipped because they were not finite (the rest of the step was\n"
                  " * applied); or a negative arm_cmsis_nn_status.",
}


def emit_c(module: ModuleOp | FuncOp, prefix: str = "model", func_name: str | None = None,
           guard_bytes: int = 0) -> dict[str, str]:
    """C sources `{prefix}.h` and `{prefix}.c` of the functions of `module` lowered to
    `cmsisnn` and `tk` (all of them, or `func_name`): `@forward` becomes
    `{prefix}_infer`, `@train_step` `{prefix}_train_step`, any other `@f` `{prefix}_f`."""
    return emit_c_info(module, prefix, func_name, guard_bytes)[0]


def emit_c_info(module: ModuleOp | FuncOp, prefix: str = "model", func_name: str | None = None,
                guard_bytes: int = 0) -> tuple[dict[str, str], CInfo]:
    """`emit_c`, and the memory facts of the result (`CInfo`). `guard_bytes > 0` makes a
    debug build: every arena buffer is followed by that many guard bytes, filled when
    the buffer is born and checked after every op while it lives; a function returns
    -(1000 + step) at the first op that wrote past the end of a live buffer."""
    if guard_bytes % ALIGN:
        raise EmitCError(f"guard_bytes must be a multiple of {ALIGN}, got {guard_bytes}")
    if not prefix.isidentifier():
        raise EmitCError(f"prefix {prefix!r} is not a C identifier")
    mod, funcs = _functions(module, func_name)
    shared = _Shared(mod, prefix, funcs)
    names = [_c_function_name(prefix, f) if len(funcs) > 1 or mod is not None else f"{prefix}_infer" for f in funcs]
    emitters = [_Emitter(f, shared, n, guard_bytes) for f, n in zip(funcs, names)]
    bodies = [e.body() for e in emitters]
    P, p = prefix.upper(), prefix
    arena = max(max(e.arena_bytes for e in emitters), ALIGN)
    main = next((e for e in emitters if e.c_name == f"{p}_infer"), emitters[0])
    tensors_in = [v for v, a in main.args.items() if a.tensor]
    tensors_out = [v for v, a in main.results.items() if a.tensor]
    sizes = []
    if tensors_in:
        sizes += [f"/* elements read from `in` by {main.c_name}: {list(_shape(tensors_in[0]))} */",
                  f"#define {P}_INPUT_SIZE {_count(tensors_in[0])}"]
    if tensors_out:
        sizes += [f"/* elements written to `out` by {main.c_name}: {list(_shape(tensors_out[0]))} */",
                  f"#define {P}_OUTPUT_SIZE {_count(tensors_out[0])}"]
    protos = []
    for e in emitters:
        doc = _DOCS.get(e.c_name[len(p) + 1:], f"@{e.func.sym_name.data}. Returns 0, or a negative status.")
        protos += [f"/* {doc} Not reentrant (static arena). */", f"{e.signature()};", ""]
    guard = f"{P}_H"
    header = "\n".join([
        f"/* Generated by tinymlir (tinymlir/codegen/emit_c.py) from "
        f"{', '.join('@' + f.sym_name.data for f in funcs)}. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        "/* bytes of the static arena (SRAM) shared by the functions, kernel scratch included */",
        f"#define {P}_ARENA_BYTES {arena}",
        *sizes,
        "/* bytes of the parameters training updates (SRAM) and of the frozen ones (flash) */",
        f"#define {P}_TRAINABLE_BYTES {sum(q.data.nbytes for q in shared.params.values() if q.mutable)}",
        f"#define {P}_FROZEN_PARAM_BYTES {sum(q.data.nbytes for q in shared.params.values() if not q.mutable)}",
        "",
        *protos,
        "/* The parameters (train.param), by index: name, bytes, current data. */",
        f"int32_t {p}_param_count(void);",
        f"const char *{p}_param_name(int32_t i);",
        f"int32_t {p}_param_bytes(int32_t i);",
        f"const void *{p}_param_data(int32_t i);",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {guard} */",
        "",
    ])
    table = list(shared.params.items())
    param_fns = [
        f"int32_t {p}_param_count(void)", "{", f"    return {len(table)};", "}", "",
        f"const char *{p}_param_name(int32_t i)", "{",
        f"    static const char *const names[{max(len(table), 1)}] = {{"
        + (", ".join(f'"{n}"' for n, _ in table) or "0") + "};",
        f"    return (i >= 0 && i < {len(table)}) ? names[i] : NULL;", "}", "",
        f"int32_t {p}_param_bytes(int32_t i)", "{",
        f"    static const int32_t bytes[{max(len(table), 1)}] = {{"
        + (", ".join(str(q.data.nbytes) for _, q in table) or "0") + "};",
        f"    return (i >= 0 && i < {len(table)}) ? bytes[i] : 0;", "}", "",
        f"const void *{p}_param_data(int32_t i)", "{", "    switch (i)", "    {",
        *(f"    case {k}: return {q.cname};" for k, (_, q) in enumerate(table)),
        "    default: return NULL;", "    }", "}", "",
    ]
    source = "\n".join([
        "/* Generated by tinymlir (tinymlir/codegen/emit_c.py). */",
        f'#include "{p}.h"',
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "#include <string.h>",
        "",
        '#include "arm_nnfunctions.h"',
        '#include "tinymlir_rt.h"',
        '#include "tk.h"',
        '#include "tk_channels.h"',
        "",
        *(line for e in emitters for line in e.layout_comment()),
        f"static int8_t arena[{arena}] __attribute__((aligned(16)));",
        "",
        "/* Parameters: frozen ones in flash (const), trained ones in SRAM. */",
        *shared.param_definitions(),
        "",
        "/* Kernel constants: multipliers, shifts, scales, factors, channel lists (flash). */",
        *shared.flash,
        "",
        *param_fns,
        *(line for b in bodies for line in (*b, "")),
    ])
    info = CInfo(arena, sum(q.data.nbytes for q in shared.params.values() if q.mutable),
                 sum(q.data.nbytes for q in shared.params.values() if not q.mutable), [e.peak() for e in emitters])
    return {f"{p}.h": header, f"{p}.c": source}, info
