"""Static memory planning of a function's activation arena (a library; the pass and the C
backend that use it come later).

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

A step's inputs and its result are live together (no in-place reuse), so
`lower_bound(buffers)` - the largest sum of sizes live at one step - bounds every plan
from below. The plans place buffers at byte offsets; two buffers whose lifetimes overlap
never overlap in address (`check_no_overlap`).

This is the IR-level activation arena at the training level (NCHW quant ops), before the
NHWC lowering and before kernel scratch buffers (im2col, CMSIS-NN context): not yet the
Cortex-M binary's SRAM.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from xdsl.dialects.builtin import (
    AnyFloat,
    IndexType,
    IntegerType,
    ModuleOp,
    SymbolRefAttr,
    TensorType,
)
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute, Operation, SSAValue

from tinymlir.dialects.quant import UniformQuantizedType

__all__ = [
    "ALIAS_OPS",
    "NO_ARENA_OPS",
    "STRATEGIES",
    "Buffer",
    "MemoryPlanError",
    "Plan",
    "check_no_overlap",
    "element_bits",
    "find_func",
    "live_intervals",
    "lower_bound",
    "memory_report",
    "peak",
    "plan",
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


class MemoryPlanError(Exception):
    """A plan is invalid (two simultaneously live buffers share bytes, or one leaves the arena)."""


@dataclass(frozen=True)
class Buffer:
    """One arena buffer: `size_bytes` live over steps [first_op_index, last_op_index]."""

    name: str
    size_bytes: int
    first_op_index: int
    last_op_index: int

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


def live_intervals(func: FuncOp, include_args: bool = True) -> list[Buffer]:
    """The arena buffers of `func`, in order of definition (see the module docstring).
    `include_args=False` leaves the tensor block arguments out (an input buffer the caller
    owns, e.g. the float image before `quant.quantize`)."""
    blocks = list(func.body.blocks)
    if len(blocks) != 1:
        raise MemoryPlanError(f"@{func.sym_name.data}: expected a single block, got {len(blocks)}")
    block = blocks[0]
    ops = list(block.ops)

    root: dict[SSAValue, SSAValue | None] = {}  # value -> the value owning its storage (None: no arena)
    first: dict[SSAValue, int] = {}
    last: dict[SSAValue, int] = {}
    names: dict[SSAValue, str] = {}
    seen: set[str] = set()

    def name_of(v: SSAValue, fallback: str) -> str:
        base = v.name_hint or fallback
        n, k = base, 1
        while n in seen:
            n, k = f"{base}#{k}", k + 1
        seen.add(n)
        return n

    for arg in block.args:
        if isinstance(arg.type, TensorType) and not include_args:
            root[arg] = None
        elif isinstance(arg.type, TensorType):
            root[arg] = arg
            first[arg] = last[arg] = 0
            names[arg] = name_of(arg, f"arg{arg.index}")

    for i, op in enumerate(ops):
        for v in _uses_of_step(op):
            r = root.get(v)
            if r is not None:
                last[r] = max(last[r], i)
        for k, res in enumerate(op.results):
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
                names[res] = name_of(res, f"{op.name}@{i}" + (f".{k}" if len(op.results) > 1 else ""))

    return [Buffer(names[v], tensor_bytes(v.type), first[v], last[v]) for v in names]


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


def memory_report(func: FuncOp, module: ModuleOp | None = None,
                  strategies: Sequence[str] = STRATEGIES, check: bool = True, include_args: bool = True) -> dict:
    """A JSON-able dict: arena bytes per strategy, the lower bound, the step at the peak and
    the buffers live there, and the trainable bytes of `module` (default: func's module)."""
    buffers = live_intervals(func, include_args)
    bound, step = peak(buffers)
    ops = list(func.body.block.ops)
    arenas, orders = {}, {}
    for s in strategies:
        p = plan(buffers, s)
        if check:
            check_no_overlap(p)
        arenas[s], orders[s] = p.arena_size, p.order
    if module is None:
        parent = func.parent_op()
        module = parent if isinstance(parent, ModuleOp) else None
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
    report.update(trainable_bytes(module) if module is not None else
                  {"trainable_param_bytes": 0, "optimizer_state_bytes": 0, "trainable_bytes": 0})
    return report


def report_json(report: dict) -> str:
    return json.dumps(report, indent=2)
