"""Static memory planning of a function's activation arena (a library; the `plan-memory`
pass, tinymlir/passes/plan_memory.py, applies it and records the plan in the IR).

A function's single block is read as a straight line of steps, one per op (an op with
regions counts as one step). Every tensor SSA value defined in the block (op results and
block arguments) that needs arena space becomes a `Buffer` live from the step that defines
it (block arguments: step 0) to its last use. Values that need no arena space:

* results of `arith.constant` / `quant.constant` (they live in flash),
* results of `train.load` (they alias the parameter, which has its own SRAM/flash region;
  the mutable ones are reported separately as "trainable bytes"),
* pure views (`nn.reshape`, `nn.flatten`): they alias their input, whose lifetime is
  extended to the view's last use instead.

Sizes are element count x element bits, rounded up to bytes per tensor: quantized
`!quant.uniform` elements count their storage width, `i1` masks one bit each.

Two extensions, for ops that declare them (the `cmsisnn` and `tk` kernel ops do):

* **scratch**: an op with a method `scratch_bytes(self) -> int` returning > 0 (a kernel's
  working memory, e.g. CMSIS-NN's im2col `cmsis_nn_context.buf`) gets an extra buffer
  named `<op name>#scratch@<step>`, live at its own step only (`scratch=False` leaves
  them out). Only the ops of the function's block count, not ops nested in their regions.
* **in place**: an op with a method `in_place_operand(self) -> int | None` returning k
  may write its (single) result into operand k's buffer. It does (`in_place=True`, the
  default) when that buffer's last use - through any value sharing it, views included -
  is this op, it has the result's byte size, and it is not a function argument (constants
  and parameter loads have no buffer at all). The result then shares the operand's buffer:
  one interval from the operand's definition to the result's last use.

Otherwise a step's inputs and its result are live together, so `lower_bound(buffers)` -
the largest sum of sizes live at one step - bounds every plan from below. The plans place
buffers at byte offsets; two buffers whose lifetimes overlap never overlap in address
(`check_no_overlap`).

A value's buffer is named as the printer names the value (`printed_names`: `x`, `q_12`,
`7`); a scratch buffer `<op name>#scratch@<step>`. Each buffer has a `kind` (for reports;
not compared): "mask" (an `i1` tensor), "scratch", and, in a function with a loss op
(`train.softmax_cross_entropy`, `train.mse`, `tk.softmax_xent`), "gradient" for values
defined at or after the loss, "saved" for values defined before it and still used after
it, "activation" for the rest (all of a function without a loss). `analyze_liveness`
returns the buffers together with which buffer holds each value, the scratch buffer of
each op and the in-place decisions.

At the training level (NCHW quant ops) this is the IR-level activation arena, without kernel
scratch; after lowering to `cmsisnn` / `tk` it includes the kernels' scratch memory.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from xdsl.dialects.builtin import (
    AnyFloat,
    IndexType,
    IntegerType,
    ModuleOp,
    SymbolRefAttr,
    TensorType,
)
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue

from tinymlir.dialects.quant import UniformQuantizedType

__all__ = [
    "ALIAS_OPS",
    "BUFFER_KINDS",
    "LOSS_OPS",
    "NO_ARENA_OPS",
    "STRATEGIES",
    "Buffer",
    "Liveness",
    "MemoryPlanError",
    "Plan",
    "aligned",
    "analyze_liveness",
    "arena_report",
    "check_no_overlap",
    "element_bits",
    "find_func",
    "live_intervals",
    "lower_bound",
    "memory_report",
    "peak",
    "plan",
    "printed_names",
    "report_json",
    "live_profile",
    "tensor_bytes",
    "trainable_bytes",
]

#: Ops whose results need no arena space: flash constants and parameter loads.
NO_ARENA_OPS = frozenset({"arith.constant", "quant.constant", "train.load"})
#: Pure views: the result aliases operand 0.
ALIAS_OPS = frozenset({"nn.reshape", "nn.flatten"})
STRATEGIES = ("greedy-by-size", "first-fit", "best-fit")
#: Loss ops: values defined at or after the first one are gradients (buffer kinds).
LOSS_OPS = frozenset({"train.softmax_cross_entropy", "train.mse", "tk.softmax_xent"})
BUFFER_KINDS = ("activation", "saved", "gradient", "mask", "scratch")


class MemoryPlanError(Exception):
    """A plan is invalid (two simultaneously live buffers share bytes, or one leaves the arena)."""


@dataclass(frozen=True)
class Buffer:
    """One arena buffer: `size_bytes` live over steps [first_op_index, last_op_index].
    `kind` (one of BUFFER_KINDS) is for reports and takes no part in comparisons."""

    name: str
    size_bytes: int
    first_op_index: int
    last_op_index: int
    kind: str = field(default="activation", compare=False)

    def __post_init__(self) -> None:
        if self.size_bytes < 0 or self.first_op_index > self.last_op_index:
            raise ValueError(f"bad buffer {self}")

    @property
    def length(self) -> int:
        return self.last_op_index - self.first_op_index + 1

    def live_at(self, step: int) -> bool:
        return self.first_op_index <= step <= self.last_op_index

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first_op_index <= other.last_op_index and other.first_op_index <= self.last_op_index


@dataclass
class Plan:
    """Byte offsets of buffers in one arena of `arena_size` bytes (the peak address used)."""

    strategy: str
    buffers: list[Buffer]
    offsets: dict[str, int]
    arena_size: int
    order: str = ""  # for best-fit: the ordering that won
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- sizes


def element_bits(element_type: Attribute) -> int:
    """Bits per element: quantized types use their storage width, i1 is one bit."""
    if isinstance(element_type, UniformQuantizedType):
        return element_type.storage.width.data
    if isinstance(element_type, IntegerType):
        return element_type.width.data
    if isinstance(element_type, AnyFloat):
        return element_type.bitwidth
    if isinstance(element_type, IndexType):
        return 64
    raise MemoryPlanError(f"unknown element type {element_type}")


def tensor_bytes(type_: Attribute) -> int:
    """Bytes of a tensor type: element count x element bits, rounded up to a byte."""
    if not isinstance(type_, TensorType):
        raise MemoryPlanError(f"not a tensor type: {type_}")
    count = 1
    for d in type_.get_shape():
        if d < 0:
            raise MemoryPlanError(f"dynamic shape {type_} cannot be planned statically")
        count *= d
    return (count * element_bits(type_.element_type) + 7) // 8


# --------------------------------------------------------------------------- liveness


def find_func(module: ModuleOp | FuncOp, name: str | None = None) -> FuncOp:
    """The function `name` of `module` (or its only function when `name` is None)."""
    if isinstance(module, FuncOp):
        return module
    funcs = [op for op in module.ops if isinstance(op, FuncOp)]
    if name is not None:
        funcs = [f for f in funcs if f.sym_name.data == name]
    if len(funcs) != 1:
        raise MemoryPlanError(f"expected one function{' @' + name if name else ''}, found {len(funcs)}")
    return funcs[0]


def _uses_of_step(op: Operation) -> Iterable[SSAValue]:
    """Values an op (and, if it has regions, everything nested in it) reads."""
    yield from op.operands
    if op.regions:
        for inner in op.walk():
            if inner is not op:
                yield from inner.operands


@dataclass
class Liveness:
    """The arena buffers of a function and which buffer holds what (`analyze_liveness`)."""

    func: FuncOp
    ops: list[Operation]  # the steps: the ops of the function's block
    buffers: list[Buffer]  # in order of definition (a scratch buffer right after its op's results)
    storage: dict[SSAValue, str]  # every value with arena space -> the name of its buffer
    scratch: dict[Operation, str]  # op -> the name of its scratch buffer
    in_place: dict[Operation, int]  # op -> the operand whose buffer its result reuses

    def buffer(self, name: str) -> Buffer:
        return next(b for b in self.buffers if b.name == name)


def printed_names(func: FuncOp) -> dict[SSAValue, str]:
    """The names (without `%`) xDSL's printer gives the SSA values of `func` when it prints
    it: the name hint, then `hint_1`, `hint_2`, ... for later values with the same hint;
    `0`, `1`, ... for values without one (in printing order: arguments, then each op's
    results before its regions)."""
    names: dict[SSAValue, str] = {}
    used: dict[str, int] = {}
    counter = [0]

    def name(v: SSAValue) -> None:
        if v.name_hint:
            k = used.get(v.name_hint, 0)
            names[v] = v.name_hint + (f"_{k}" if k else "")
            used[v.name_hint] = k + 1
        else:
            names[v] = str(counter[0])
            counter[0] += 1

    def visit_block(block) -> None:
        for a in block.args:
            name(a)
        for op in block.ops:
            for r in op.results:
                name(r)
            for region in op.regions:
                for b in region.blocks:
                    visit_block(b)

    for b in func.body.blocks:
        visit_block(b)
    return names


def _method_int(op: Operation, method: str) -> int | None:
    """`op.<method>()` if the op defines it and it returns an int, else None."""
    fn = getattr(op, method, None)
    if not callable(fn):
        return None
    value = fn()
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_mask(v: SSAValue) -> bool:
    t = v.type
    return isinstance(t, TensorType) and isinstance(t.element_type, IntegerType) and t.element_type.width.data == 1


def analyze_liveness(func: FuncOp, include_args: bool = True, *, in_place: bool = True,
                     scratch: bool = True) -> Liveness:
    """The arena buffers of `func` and where each value lives (see the module docstring).
    `include_args=False` leaves the tensor block arguments out (an input buffer the caller
    owns, e.g. the float image before `quant.quantize`)."""
    blocks = list(func.body.blocks)
    if len(blocks) != 1:
        raise MemoryPlanError(f"@{func.sym_name.data}: expected a single block, got {len(blocks)}")
    block = blocks[0]
    ops = list(block.ops)

    # 1. storage roots without in-place reuse: value -> the value owning its storage (None: no arena)
    root: dict[SSAValue, SSAValue | None] = {}
    first: dict[SSAValue, int] = {}
    last: dict[SSAValue, int] = {}
    defined: list[SSAValue] = []  # the roots, in order of definition
    scratch_size: dict[int, int] = {}

    for arg in block.args:
        if isinstance(arg.type, TensorType) and not include_args:
            root[arg] = None
        elif isinstance(arg.type, TensorType):
            root[arg] = arg
            first[arg] = last[arg] = 0
            defined.append(arg)

    for i, op in enumerate(ops):
        for v in _uses_of_step(op):
            r = root.get(v)
            if r is not None:
                last[r] = max(last[r], i)
        for res in op.results:
            if not isinstance(res.type, TensorType):
                continue
            if op.name in NO_ARENA_OPS:
                root[res] = None
            elif op.name in ALIAS_OPS and op.operands and op.operands[0] in root:
                root[res] = root[op.operands[0]]
                if root[res] is not None:
                    last[root[res]] = max(last[root[res]], i)
            else:
                root[res] = res
                first[res] = last[res] = i
                defined.append(res)
        if scratch:
            size = _method_int(op, "scratch_bytes")
            if size is not None and size > 0:
                scratch_size[i] = size

    # 2. in-place reuse, in program order: `shared[res] = r` merges res's buffer into r's
    shared: dict[SSAValue, SSAValue] = {}

    def find(r: SSAValue) -> SSAValue:
        while r in shared:
            r = shared[r]
        return r

    in_place_ops: dict[Operation, int] = {}
    if in_place:
        for i, op in enumerate(ops):
            k = _method_int(op, "in_place_operand")
            if k is None or not 0 <= k < len(op.operands) or len(op.results) != 1:
                continue
            res = op.results[0]
            src = root.get(op.operands[k])
            if root.get(res) is not res or src is None:
                continue
            r = find(src)
            if isinstance(r, BlockArgument) or last[r] != i or tensor_bytes(r.type) != tensor_bytes(res.type):
                continue
            shared[res] = r
            last[r] = max(last[r], last[res])
            in_place_ops[op] = k

    # 3. kinds, names and buffers
    loss = next((i for i, op in enumerate(ops) if op.name in LOSS_OPS), None)

    def kind(r: SSAValue) -> str:
        if _is_mask(r):
            return "mask"
        if loss is None:
            return "activation"
        if first[r] >= loss and not isinstance(r, BlockArgument):
            return "gradient"
        return "saved" if last[r] > loss else "activation"

    seen: set[str] = set()

    def unique(base: str) -> str:
        n, k = base, 1
        while n in seen:
            n, k = f"{base}#{k}", k + 1
        seen.add(n)
        return n

    printed = printed_names(func)
    names: dict[SSAValue, str] = {}
    buffers: list[Buffer] = []
    scratch_names: dict[Operation, str] = {}
    pending = sorted(scratch_size)  # steps with scratch, emitted after the step's results

    def flush_scratch(upto: int) -> None:
        while pending and pending[0] <= upto:
            i = pending.pop(0)
            name = unique(f"{ops[i].name}#scratch@{i}")
            scratch_names[ops[i]] = name
            buffers.append(Buffer(name, scratch_size[i], i, i, "scratch"))

    for r in defined:
        step = first[r] if not isinstance(r, BlockArgument) else -1
        flush_scratch(step - 1)
        if r in shared:
            continue
        names[r] = unique(printed[r])
        buffers.append(Buffer(names[r], tensor_bytes(r.type), first[r], last[r], kind(r)))
    flush_scratch(len(ops))

    storage = {v: names[find(r)] for v, r in root.items() if r is not None}
    return Liveness(func, ops, buffers, storage, scratch_names, in_place_ops)


def live_intervals(func: FuncOp, include_args: bool = True, *, in_place: bool = True,
                   scratch: bool = True) -> list[Buffer]:
    """The arena buffers of `func`, in order of definition (see the module docstring).
    `include_args=False` leaves the tensor block arguments out (an input buffer the caller
    owns, e.g. the float image before `quant.quantize`); `in_place=False` never reuses an
    operand's buffer for a result; `scratch=False` leaves out the kernels' scratch buffers."""
    return analyze_liveness(func, include_args, in_place=in_place, scratch=scratch).buffers


def aligned(buffers: Iterable[Buffer], align: int) -> list[Buffer]:
    """The buffers with their sizes rounded up to a multiple of `align` bytes: every offset
    a plan gives them is then a multiple of `align`."""
    if align < 1:
        raise MemoryPlanError(f"alignment must be >= 1, got {align}")
    return [replace(b, size_bytes=(b.size_bytes + align - 1) // align * align) for b in buffers]


def live_profile(buffers: Sequence[Buffer]) -> list[int]:
    """Bytes live at each step 0..max(last_op_index)."""
    if not buffers:
        return []
    steps = max(b.last_op_index for b in buffers) + 1
    delta = [0] * (steps + 1)
    for b in buffers:
        delta[b.first_op_index] += b.size_bytes
        delta[b.last_op_index + 1] -= b.size_bytes
    out, run = [], 0
    for s in range(steps):
        run += delta[s]
        out.append(run)
    return out


def peak(buffers: Sequence[Buffer]) -> tuple[int, int]:
    """(lower bound, first step at which it is reached); (0, -1) without buffers."""
    prof = live_profile(buffers)
    if not prof:
        return 0, -1
    best = max(prof)
    return best, prof.index(best)


def lower_bound(buffers: Sequence[Buffer]) -> int:
    """Max over steps of the bytes live at that step: no plan can use less."""
    return peak(buffers)[0]


# --------------------------------------------------------------------------- placement


def _place(ordered: Sequence[Buffer], fit: str = "lowest") -> tuple[dict[str, int], int]:
    """Place buffers in the given order, each at the lowest free offset (fit="lowest") or in
    the smallest free gap that holds it (fit="tightest"), among already placed buffers live
    at the same time."""
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[str, int] = {}
    arena = 0
    for b in ordered:
        if b.size_bytes == 0:
            offsets[b.name] = 0
            continue
        busy = sorted((o, o + p.size_bytes) for p, o in placed if p.overlaps_in_time(b))
        candidate, best_gap, cursor = None, None, 0
        for lo, hi in busy:
            gap = lo - cursor
            if gap >= b.size_bytes:
                if fit == "lowest":
                    candidate = cursor
                    break
                if best_gap is None or gap < best_gap:
                    candidate, best_gap = cursor, gap
            cursor = max(cursor, hi)
        if candidate is None:
            candidate = cursor
        offsets[b.name] = candidate
        placed.append((b, candidate))
        arena = max(arena, candidate + b.size_bytes)
    return offsets, arena


_ORDERS: dict[str, Callable[[Buffer], tuple]] = {
    "size": lambda b: (-b.size_bytes, b.first_op_index, b.name),
    "first-use": lambda b: (b.first_op_index, -b.size_bytes, b.name),
    "length": lambda b: (-b.length, -b.size_bytes, b.name),
    "size*length": lambda b: (-b.size_bytes * b.length, -b.size_bytes, b.name),
    "last-use": lambda b: (-b.last_op_index, -b.size_bytes, b.name),
}


def _conflict_order(buffers: Sequence[Buffer]) -> list[Buffer]:
    """Largest first by the total bytes of the buffers live with it (most constrained first)."""
    prof = live_profile(buffers)
    pressure = {b.name: max(prof[b.first_op_index : b.last_op_index + 1]) for b in buffers}
    return sorted(buffers, key=lambda b: (-pressure[b.name], -b.size_bytes, b.first_op_index, b.name))


def plan(buffers: Sequence[Buffer], strategy: str = "best-fit", *, random_tries: int = 8, seed: int = 0) -> Plan:
    """Offsets for `buffers` by `strategy`:

    * "greedy-by-size": largest first, lowest offset that overlaps no placed buffer live at
      the same time (TFLite Micro's GreedyMemoryPlanner);
    * "first-fit": in order of first use, lowest free offset (TinyEngine's style);
    * "best-fit": several orderings (size, first use, lifetime length, size x length, last
      use, interference, a few seeded shuffles of the size order) x two fits (lowest offset,
      tightest gap); keeps the smallest arena. It includes the two above, so it is never worse.
    """
    buffers = list(buffers)
    if len({b.name for b in buffers}) != len(buffers):
        raise MemoryPlanError("buffer names must be unique")
    if strategy == "greedy-by-size":
        offsets, arena = _place(sorted(buffers, key=_ORDERS["size"]))
        return Plan(strategy, buffers, offsets, arena, order="size/lowest")
    if strategy == "first-fit":
        offsets, arena = _place(sorted(buffers, key=_ORDERS["first-use"]))
        return Plan(strategy, buffers, offsets, arena, order="first-use/lowest")
    if strategy != "best-fit":
        raise MemoryPlanError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")

    bound = lower_bound(buffers)
    candidates: list[tuple[str, list[Buffer]]] = [(k, sorted(buffers, key=key)) for k, key in _ORDERS.items()]
    candidates.append(("interference", _conflict_order(buffers)))
    rng = random.Random(seed)
    by_size = candidates[0][1]
    for t in range(random_tries):
        # perturb the size order: swap neighbours with probability 1/4
        order = list(by_size)
        for j in range(len(order) - 1):
            if rng.random() < 0.25:
                order[j], order[j + 1] = order[j + 1], order[j]
        candidates.append((f"size~{t}", order))
    best: tuple[int, str, dict[str, int]] | None = None
    for label, order in candidates:
        for fit in ("lowest", "tightest"):
            offsets, arena = _place(order, fit)
            if best is None or arena < best[0]:
                best = (arena, f"{label}/{fit}", offsets)
            if best[0] == bound:
                break
        if best is not None and best[0] == bound:
            break
    assert best is not None or not buffers
    if best is None:
        return Plan(strategy, buffers, {}, 0, order="empty")
    return Plan(strategy, buffers, best[2], best[0], order=best[1])


def check_no_overlap(p: Plan) -> None:
    """Raise MemoryPlanError if two buffers live at the same step share a byte, or a buffer
    lies outside [0, arena_size)."""
    bs = [b for b in p.buffers if b.size_bytes > 0]
    missing = [b.name for b in p.buffers if b.name not in p.offsets]
    if missing:
        raise MemoryPlanError(f"{p.strategy}: buffers without offset: {missing[:5]}")
    for b in bs:
        o = p.offsets[b.name]
        if o < 0 or o + b.size_bytes > p.arena_size:
            raise MemoryPlanError(f"{p.strategy}: {b.name} [{o}, {o + b.size_bytes}) outside arena {p.arena_size}")
    # sweep by first use: compare each buffer with the still-live ones
    events = sorted(bs, key=lambda b: b.first_op_index)
    active: list[Buffer] = []
    for b in events:
        active = [a for a in active if a.last_op_index >= b.first_op_index]
        ob = p.offsets[b.name]
        for a in active:
            oa = p.offsets[a.name]
            if oa < ob + b.size_bytes and ob < oa + a.size_bytes:
                raise MemoryPlanError(
                    f"{p.strategy}: {a.name} [{oa}, {oa + a.size_bytes}) steps {a.first_op_index}-{a.last_op_index}"
                    f" overlaps {b.name} [{ob}, {ob + b.size_bytes}) steps {b.first_op_index}-{b.last_op_index}"
                )
        active.append(b)


# --------------------------------------------------------------------------- parameters


def trainable_bytes(module: ModuleOp) -> dict[str, int]:
    """Bytes of the mutable training state: `train.param` symbols marked trainable, and the
    optimizer state they name (SGD velocity, Adam m/v/step, rounding generators, counters)."""
    from tinymlir.dialects.train import ParamOp

    params = {op.sym_name.data: op for op in module.walk() if isinstance(op, ParamOp)}
    state: set[str] = set()
    for op in module.walk():
        if not op.name.startswith("train.") or op.name in ("train.load", "train.param"):
            continue
        for key, attr in op.properties.items():
            if isinstance(attr, SymbolRefAttr) and (key != "param" or op.name == "train.increment"):
                state.add(attr.root_reference.data)
    trainable = sum(tensor_bytes(p.type) for p in params.values() if p.is_trainable)
    opt = sum(tensor_bytes(params[s].type) for s in state if s in params and not params[s].is_trainable)
    return {"trainable_param_bytes": trainable, "optimizer_state_bytes": opt, "trainable_bytes": trainable + opt}


# --------------------------------------------------------------------------- report


def _module_of(func: FuncOp) -> ModuleOp | None:
    parent = func.parent_op()
    return parent if isinstance(parent, ModuleOp) else None


def _trainable(module: ModuleOp | None) -> dict[str, int]:
    return (trainable_bytes(module) if module is not None else
            {"trainable_param_bytes": 0, "optimizer_state_bytes": 0, "trainable_bytes": 0})


def memory_report(func: FuncOp, module: ModuleOp | None = None,
                  strategies: Sequence[str] = STRATEGIES, check: bool = True, include_args: bool = True,
                  *, in_place: bool = True, scratch: bool = True) -> dict:
    """A JSON-able dict: arena bytes per strategy, the lower bound, the step at the peak and
    the buffers live there, and the trainable bytes of `module` (default: func's module)."""
    buffers = live_intervals(func, include_args, in_place=in_place, scratch=scratch)
    bound, step = peak(buffers)
    ops = list(func.body.block.ops)
    arenas, orders = {}, {}
    for s in strategies:
        p = plan(buffers, s)
        if check:
            check_no_overlap(p)
        arenas[s], orders[s] = p.arena_size, p.order
    if module is None:
        module = _module_of(func)
    live = sorted((b for b in buffers if b.live_at(step)), key=lambda b: -b.size_bytes) if step >= 0 else []
    report = {
        "function": func.sym_name.data,
        "num_ops": len(ops),
        "num_buffers": len(buffers),
        "arena_bytes": arenas,
        "winning_order": orders,
        "lower_bound": bound,
        "peak_op_index": step,
        "peak_op": ops[step].name if 0 <= step < len(ops) else None,
        "peak_live_buffers": [{"name": b.name, "bytes": b.size_bytes, "first": b.first_op_index,
                               "last": b.last_op_index} for b in live],
    }
    report.update(_trainable(module))
    return report


def _result_name(op: Operation, printed: dict[SSAValue, str]) -> str | None:
    return printed.get(op.results[0]) if op.results else None


def arena_report(live: Liveness, p: Plan, *, budget: int | None = None, align: int = 1,
                 in_place: bool = True, include_args: bool = True, module: ModuleOp | None = None) -> dict:
    """The JSON-able report of one planned function (what `plan-memory` records and
    `tinymlir-opt --memory-report` writes). `p` plans `live.buffers`, possibly with sizes
    rounded up to `align` (`aligned`). Keys:

    function, strategy, order (the ordering that won), align, in_place, include_args,
    budget (bytes or None), arena_bytes (the plan's peak address), lower_bound (the largest
    sum of planned sizes live at one step), peak_step / peak_op / peak_result (where that
    is reached; -1 / None without buffers), num_steps, steps (per step: step, op, result
    name or None, live_bytes, live: the names of the buffers live there, largest first),
    buffers (name, kind, size: planned bytes, bytes: unrounded bytes, offset, first, last),
    in_place_ops (per reuse: step, op, operand, buffer), and trainable_param_bytes,
    optimizer_state_bytes, trainable_bytes of the function's module.
    """
    func, ops = live.func, live.ops
    position = {op: i for i, op in enumerate(ops)}
    printed = printed_names(func)
    planned = {b.name: b for b in p.buffers}
    raw = {b.name: b.size_bytes for b in live.buffers}
    bs = [planned[b.name] for b in live.buffers]
    prof = live_profile(bs)
    bound, at = peak(bs)
    steps = []
    for i, op in enumerate(ops):
        here = sorted((b for b in bs if b.live_at(i)), key=lambda b: (-b.size_bytes, b.name))
        steps.append({"step": i, "op": op.name, "result": _result_name(op, printed),
                      "live_bytes": prof[i] if i < len(prof) else 0, "live": [b.name for b in here]})
    if module is None:
        module = _module_of(func)
    report = {
        "function": func.sym_name.data,
        "strategy": p.strategy,
        "order": p.order,
        "align": align,
        "in_place": in_place,
        "include_args": include_args,
        "budget": budget,
        "arena_bytes": p.arena_size,
        "lower_bound": bound,
        "peak_step": at,
        "peak_op": ops[at].name if 0 <= at < len(ops) else None,
        "peak_result": _result_name(ops[at], printed) if 0 <= at < len(ops) else None,
        "num_steps": len(ops),
        "steps": steps,
        "buffers": [{"name": b.name, "kind": b.kind, "size": b.size_bytes, "bytes": raw[b.name],
                     "offset": p.offsets[b.name], "first": b.first_op_index, "last": b.last_op_index} for b in bs],
        "in_place_ops": [{"step": position[op], "op": op.name, "operand": k,
                      "buffer": live.storage[op.results[0]]} for op, k in live.in_place.items()],
    }
    report.update(_trainable(module))
    return report


def report_json(report: dict) -> str:
    return json.dumps(report, indent=2)
