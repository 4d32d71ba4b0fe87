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
* one `func.return` of one f32 tensor; the function takes one f32 tensor.

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
from xdsl.dialects.builtin import Float32Type, IntegerType, ModuleOp, TensorType
from xdsl.dialects.func import FuncOp
from xdsl.ir import Operation, SSAValue

from tinymlir.codegen.memory_plan import Buffer, find_func, plan, tensor_bytes
from tinymlir.dialects import cmsisnn
from tinymlir.dialects.cmsisnn import ints

__all__ = ["EmitCError", "RUNTIME_DIR", "CMSISNN_DIR", "emit_c", "runtime_sources", "include_dirs"]

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
CMSISNN_DIR = RUNTIME_DIR / "cmsisnn"
ALIGN = 16
CONSTANT_OPS = frozenset({"arith.constant", "quant.constant"})
ALIAS_OPS = frozenset({"nn.flatten", "nn.reshape"})


class EmitCError(Exception):
    """The function cannot be emitted as C (one line, naming the op)."""


def runtime_sources() -> list[Path]:
    """The C files to compile next to the generated `model.c` (portable CMSIS-NN)."""
    return [RUNTIME_DIR / "tinymlir_rt.c", *sorted((CMSISNN_DIR / "src").glob("*.c"))]


def include_dirs() -> list[Path]:
    return [RUNTIME_DIR, CMSISNN_DIR / "include"]


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


def _align4(n: int) -> int:
    return (n + 3) & ~3


# --------------------------------------------------------------------------- scratch sizes


def _scratch_bytes(op: Operation) -> int:
    """Bytes of `cmsis_nn_context.buf` the call needs: max of CMSIS-NN's pure C and DSP
    `*_get_buffer_size` values (the formulas of `tinymlir/runtime/cmsisnn/src`)."""
    if isinstance(op, cmsisnn.ConvolveWrapperS8Op):
        xs, ws = _shape(op.input), _shape(op.filter)
        pad, dil = ints(op.padding), ints(op.dilation)
        if pad == (0, 0) and ws[1] == ws[2] == 1 and dil == (1, 1) and ws[3] == xs[3]:
            return 0
        return 2 * _align4(ws[1] * ws[2] * xs[3]) * 2
    if isinstance(op, cmsisnn.DepthwiseConvWrapperS8Op):
        xs, ws, ys = _shape(op.input), _shape(op.filter), _shape(op.result)
        pad, dil = ints(op.padding), ints(op.dilation)
        if xs[3] == ys[3] and xs[0] == 1 and dil == (1, 1):
            if ws[1] == ws[2] == 3 and pad[0] <= 1 and pad[1] <= 1:
                return 0
            return xs[3] * ws[1] * ws[2] * 2
        return 0
    if isinstance(op, cmsisnn.AvgpoolS8Op):
        return _shape(op.input)[3] * 4
    return 0


# --------------------------------------------------------------------------- emitter


@dataclass
class _Storage:
    kind: str  # "arena", "in", "out"
    offset: int = 0


class _Emitter:
    def __init__(self, func: FuncOp, prefix: str):
        self.func = func
        self.prefix = prefix
        self.P = prefix.upper()
        self.consts: dict[SSAValue, str] = {}  # constant value -> C array name
        self.flash: list[str] = []  # definitions of the static const arrays
        self.n_arrays = 0

    # -- constants ---------------------------------------------------------------
    def _array(self, ctype: str, values, what: str) -> str:
        name = f"{self.prefix}_{what}{self.n_arrays}"
        self.n_arrays += 1
        values = np.asarray(values).reshape(-1)
        self.flash.append(f"static const {ctype} {name}[{max(values.size, 1)}] = {{\n"
                          f"{_array_body(values) if values.size else '    0'}\n}};")
        return name

    def _const(self, v: SSAValue, op: Operation, ctype: str, width: int) -> str:
        if v in self.consts:
            return self.consts[v]
        owner = v.owner
        if not isinstance(owner, Operation) or owner.name not in CONSTANT_OPS:
            raise EmitCError(f"{op.name}: operand {v.name_hint or '?'} must be a constant (weights live in flash)")
        if _int_width(v) != width:
            raise EmitCError(f"{op.name}: constant operand of type {v.type} is not i{width}")
        from tinymlir.interpreter.nn_impls import dense_to_numpy

        data = dense_to_numpy(owner.value)  # type: ignore[attr-defined]
        data = np.broadcast_to(data, _shape(v)).astype(np.int64)
        name = self._array(ctype, data, "w" if width == 8 else "b")
        self.consts[v] = name
        return name

    # -- storage -----------------------------------------------------------------
    def plan(self) -> None:
        func = self.func
        blocks = list(func.body.blocks)
        if len(blocks) != 1:
            raise EmitCError(f"@{func.sym_name.data}: expected a single block, got {len(blocks)}")
        self.ops = list(blocks[0].ops)
        args = blocks[0].args
        if len(args) != 1 or not _is_f32(args[0]):
            raise EmitCError(f"@{func.sym_name.data}: expected one f32 tensor argument (float in/out interface)")
        ret = self.ops[-1] if self.ops else None
        if ret is None or ret.name != "func.return" or len(ret.operands) != 1 or not _is_f32(ret.operands[0]):
            raise EmitCError(f"@{func.sym_name.data}: expected to return one f32 tensor (float in/out interface)")
        self.input, self.output = args[0], ret.operands[0]

        root: dict[SSAValue, SSAValue | None] = {self.input: self.input}
        first: dict[SSAValue, int] = {}
        last: dict[SSAValue, int] = {}
        order: list[SSAValue] = []
        self.scratch: dict[int, int] = {}
        for i, op in enumerate(self.ops):
            for v in op.operands:
                r = root.get(v)
                if r is not None and r in last:
                    last[r] = max(last[r], i)
            if op.name in CONSTANT_OPS:
                for res in op.results:
                    root[res] = None
                continue
            if op.name in ALIAS_OPS:
                src = root.get(op.operands[0])
                if src is None:
                    raise EmitCError(f"{op.name}: a view of a constant is not supported")
                root[op.results[0]] = src
                continue
            for res in op.results:
                if not isinstance(res.type, TensorType):
                    raise EmitCError(f"{op.name}: non-tensor result {res.type} is not supported")
                root[res] = res
                first[res] = last[res] = i
                order.append(res)
            size = _scratch_bytes(op)
            if size:
                self.scratch[i] = size
        self.root = root

        out_root = root.get(self.output)
        if out_root is None or out_root is self.input:
            raise EmitCError("func.return: the result must be computed by the function")
        self.names: dict[SSAValue, str] = {}
        buffers: list[Buffer] = []
        for k, v in enumerate(order):
            if v is out_root:
                continue
            name = f"v{k}"
            self.names[v] = name
            buffers.append(Buffer(name, _align(tensor_bytes(v.type)), first[v], last[v]))
        for i, size in sorted(self.scratch.items()):
            buffers.append(Buffer(f"scratch@{i}", _align(size), i, i))
        self.plan_ = plan(buffers, "best-fit")
        self.arena_bytes = self.plan_.arena_size
        self.out_root = out_root

    def ptr(self, v: SSAValue, ctype: str = "int8_t") -> str:
        r = self.root.get(v)
        if r is None:
            raise EmitCError(f"value {v.name_hint or '?'} has no storage")
        if r is self.input:
            return "in" if ctype == "float" else f"(const {ctype} *)(const void *)in"
        if r is self.out_root:
            return "out" if ctype == "float" else f"({ctype} *)(void *)out"
        off = self.plan_.offsets[self.names[r]]
        if ctype == "int8_t":
            return f"(arena + {off})"
        return f"(({ctype} *)(void *)(arena + {off}))"

    def ctx(self, i: int) -> str:
        size = self.scratch.get(i, 0)
        if size == 0:
            return "const cmsis_nn_context ctx = {NULL, 0};"
        off = self.plan_.offsets[f"scratch@{i}"]
        return f"const cmsis_nn_context ctx = {{arena + {off}, {_align(size)}}};"

    def _i8(self, op: Operation, v: SSAValue) -> None:
        if _int_width(v) != 8 or not isinstance(v.type, TensorType) or not isinstance(v.type.element_type, IntegerType):
            raise EmitCError(f"{op.name}: expected an i8 tensor, got {v.type}")

    # -- ops ---------------------------------------------------------------------
    def emit_op(self, i: int, op: Operation) -> list[str]:
        if op.name in CONSTANT_OPS or op.name == "func.return":
            return []
        res = op.results[0].name_hint if op.results else None
        head = f"/* {op.name}" + (f" -> %{res}" if res else "") + " */"
        if op.name in ALIAS_OPS:
            return [f"{head} /* alias of its input */"]
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
        raise EmitCError(f"{op.name}: op not supported by the C emitter")

    # -- files -------------------------------------------------------------------
    def emit(self) -> dict[str, str]:
        self.plan()
        body: list[str] = []
        for i, op in enumerate(self.ops):
            for line in self.emit_op(i, op):
                body.append("    " + line if line else "")
        P, p = self.P, self.prefix
        arena = max(self.arena_bytes, ALIGN)
        n_in, n_out = _count(self.input), _count(self.output)
        guard = f"{P}_H"
        header = "\n".join([
            f"/* Generated by tinymlir (tinymlir/codegen/emit_c.py) from @{self.func.sym_name.data}. */",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            "#include <stdint.h>",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            "/* bytes of the static activation arena (SRAM), kernel scratch included */",
            f"#define {P}_ARENA_BYTES {arena}",
            f"/* float elements read from `in`: {list(_shape(self.input))} */",
            f"#define {P}_INPUT_SIZE {n_in}",
            f"/* float elements written to `out`: {list(_shape(self.output))} */",
            f"#define {P}_OUTPUT_SIZE {n_out}",
            "",
            f"/* Runs the network on {P}_INPUT_SIZE floats; writes {P}_OUTPUT_SIZE floats. Returns 0, or the",
            " * negative arm_cmsis_nn_status of the first failing CMSIS-NN call. Not reentrant (static arena). */",
            f"int {p}_infer(const float *in, float *out);",
            "",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            "",
            f"#endif /* {guard} */",
            "",
        ])
        layout = [f" *   {b.name:<12} {self.plan_.offsets[b.name]:>8} +{b.size_bytes:<8} steps {b.first_op_index}..{b.last_op_index}"
                  for b in sorted(self.plan_.buffers, key=lambda b: (self.plan_.offsets[b.name], b.name))]
        source = "\n".join([
            f"/* Generated by tinymlir (tinymlir/codegen/emit_c.py) from @{self.func.sym_name.data}. */",
            f'#include "{p}.h"',
            "",
            "#include <stddef.h>",
            "#include <stdint.h>",
            "",
            '#include "arm_nnfunctions.h"',
            '#include "tinymlir_rt.h"',
            "",
            f"/* Arena layout ({self.plan_.strategy}, {self.plan_.order or 'empty'}): name offset +bytes live steps",
            *layout,
            " */",
            f"static int8_t arena[{arena}] __attribute__((aligned(16)));",
            "",
            "/* Weights, biases, multipliers and shifts (flash). */",
            *self.flash,
            "",
            f"int {p}_infer(const float *in, float *out)",
            "{",
            *body,
            "    return 0;",
            "}",
            "",
        ])
        return {f"{p}.h": header, f"{p}.c": source}


def emit_c(module: ModuleOp | FuncOp, prefix: str = "model", func_name: str | None = None) -> dict[str, str]:
    """C sources `{prefix}.h` and `{prefix}.c` of the inference function of `module`
    (its only function, or `func_name`), lowered to `cmsisnn`."""
    if not prefix.isidentifier():
        raise EmitCError(f"prefix {prefix!r} is not a C identifier")
    try:
        func = find_func(module, func_name)
    except Exception as e:
        if func_name is None and isinstance(module, ModuleOp):
            funcs = [op for op in module.ops if isinstance(op, FuncOp) and op.sym_name.data == "forward"]
            if len(funcs) != 1:
                raise EmitCError(str(e)) from e
            func = funcs[0]
        else:
            raise EmitCError(str(e)) from e
    return _Emitter(func, prefix).emit()
