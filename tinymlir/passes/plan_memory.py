"""`plan-memory`: lay out each function's activation arena and record the plan in the IR.

For every `func.func` with a body, the pass computes the arena buffers
(`tinymlir.codegen.memory_plan.analyze_liveness`: one buffer per tensor value that needs
SRAM, views sharing their input's, in-place results their operand's, plus one scratch
buffer per kernel call that needs working memory), places them with `plan(strategy)`,
checks the placement (`check_no_overlap`) and, if `budget` is set, that the arena fits.

Options:

* `budget`: arena bytes allowed, an integer or with a suffix `B`, `KB` (or `K`), `KiB`,
  `MB` (or `M`) or `MiB` (case-insensitive; here 1 KB = 1 KiB = 1024 bytes and
  1 MB = 1 MiB = 1024 * 1024 bytes), e.g. `budget=256KB`. Default: no limit. A function
  whose arena exceeds it fails the pass (after annotating every function) with one line
  naming the function, the op at the peak, the tensors live there, the peak, the budget
  and the overflow, and what might help.
* `strategy`: `greedy-by-size`, `first-fit` or `best-fit` (default), see `memory_plan.plan`.
* `in-place`: `true` (default) lets ops that declare `in_place_operand()` write their
  result into that operand's buffer when it dies there; `false` never does.
* `include-args`: `true` (default) gives the function's tensor arguments arena space;
  `false` leaves them to the caller.
* `align`: every buffer's size is rounded up to a multiple of `align` bytes (default 16,
  the C emitter's arena alignment), so every offset is a multiple of it; `align=1` plans
  exact sizes.

The plan, recorded as discardable attributes (they print, parse back and verify with the
ops, and the interpreter ignores them). Offsets are byte offsets from the arena's start:

* on the `func.func`:
  - `tinymlir.arena_bytes = N : i64`: the arena size (the plan's peak address);
  - `tinymlir.arena_strategy = "best-fit"`: the strategy used;
  - `tinymlir.arena_align = A : i64`: the `align` option;
  - `tinymlir.arena_arg_offsets = array<i64: ...>`: one offset per function argument,
    -1 for an argument without arena space (not a tensor, or `include-args=false`);
* on each op of the function's block with at least one result in the arena:
  - `arena_offsets = array<i64: ...>`: one offset per result, -1 for a result without
    arena space (not a tensor, a flash constant, a `train.load`). A view (`nn.reshape`,
    `nn.flatten`) shows the offset of the buffer it aliases;
  - `arena_in_place = k : i64` when the result reuses operand k's buffer (then its offset
    is that operand's);
* on each op with a scratch buffer:
  - `arena_scratch_offset = N : i64` and `arena_scratch_bytes = S : i64` (the bytes
    reserved: `scratch_bytes()` rounded up to `align`).

Previous `arena_*` / `tinymlir.arena_*` annotations of a function are replaced. The
annotation is deterministic: the same IR and options give the same attributes.

Each planned function's report (`memory_plan.arena_report`) is handed to every active
`recording_plans()` collector; `tinymlir-opt --memory-report/--memory-plot` use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.dialects.func import FuncOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from tinymlir.codegen.memory_plan import (
    LOSS_OPS,
    STRATEGIES,
    Buffer,
    Liveness,
    MemoryPlanError,
    Plan,
    aligned,
    analyze_liveness,
    arena_report,
    check_no_overlap,
    peak,
    plan,
    printed_names,
)

NAME = "plan-memory"

FUNC_BYTES = "tinymlir.arena_bytes"
FUNC_STRATEGY = "tinymlir.arena_strategy"
FUNC_ALIGN = "tinymlir.arena_align"
FUNC_ARG_OFFSETS = "tinymlir.arena_arg_offsets"
OFFSETS = "arena_offsets"
IN_PLACE = "arena_in_place"
SCRATCH_OFFSET = "arena_scratch_offset"
SCRATCH_BYTES = "arena_scratch_bytes"
FUNC_ATTRS = (FUNC_BYTES, FUNC_STRATEGY, FUNC_ALIGN, FUNC_ARG_OFFSETS)
OP_ATTRS = (OFFSETS, IN_PLACE, SCRATCH_OFFSET, SCRATCH_BYTES)

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
_BUDGET = re.compile(r"\s*(\d+)\s*([a-z]*)\s*", re.IGNORECASE)
MAX_LISTED = 6


def parse_budget(value: int | str | None) -> int | None:
    """Bytes of a budget option: an int, or a string of digits with an optional suffix
    B, KB, KiB or MB (case-insensitive, 1 KB = 1024 bytes). None means no limit."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"budget must be a number of bytes, got {str(value).lower()}")
    if isinstance(value, int):
        n = value
    else:
        m = _BUDGET.fullmatch(str(value))
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError(f"budget must be bytes as an integer or with a suffix KB, KiB or MB "
                             f"(1 KB = 1024 bytes), e.g. budget=256KB; got '{value}'")
        n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if n < 0:
        raise ValueError(f"budget must be >= 0 bytes, got {n}")
    return n


# -- recording plans for the tools -------------------------------------------------------
_RECORDERS: list[list[dict]] = []


@contextmanager
def recording_plans() -> Iterator[list[dict]]:
    """Collect the reports (`memory_plan.arena_report`) of every function planned by
    `plan-memory` inside the `with` block, in order."""
    reports: list[dict] = []
    _RECORDERS.append(reports)
    try:
        yield reports
    finally:
        _RECORDERS.remove(reports)


# -- formatting ---------------------------------------------------------------------------
def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def _bytes(n: int, *extra: str) -> str:
    """'300000 bytes (293.0 KB, extra)'; no KB below 1 KB."""
    notes = ([_kb(n)] if n >= 1024 else []) + list(extra)
    return f"{n} bytes" + (f" ({', '.join(notes)})" if notes else "")


def _size(n: int) -> str:
    return _kb(n) if n >= 1024 else f"{n} B"


def _value_name(b: Buffer) -> str:
    """%name for a buffer named after an SSA value, the bare name for scratch."""
    return b.name if b.kind == "scratch" else f"%{b.name}"


def _describe_op(op: Operation, names: dict) -> str:
    return f"'{op.name}'" + (f" (%{names[op.results[0]]})" if op.results and op.results[0] in names else "")


def overflow_message(live: Liveness, p: Plan, budget: int, strategy: str, in_place: bool = True) -> str:
    """The one-line error of a function whose arena exceeds the budget."""
    fn = live.func.sym_name.data
    bound, at = peak(p.buffers)
    here = sorted((b for b in p.buffers if b.live_at(at) and b.size_bytes > 0), key=lambda b: (-b.size_bytes, b.name))
    listed = ", ".join(f"{_value_name(b)} {_size(b.size_bytes)}" for b in here[:MAX_LISTED])
    if len(here) > MAX_LISTED:
        listed += f" and {len(here) - MAX_LISTED} more"
    over = p.arena_size - budget
    where = "the function's entry"
    if 0 <= at < len(live.ops):
        where = f"step {at}, {_describe_op(live.ops[at], printed_names(live.func))}"
    loss = next((i for i, o in enumerate(live.ops) if o.name in LOSS_OPS), None)
    args = {live.storage[a] for a in live.func.body.block.args if a in live.storage}
    if bound > budget and loss is not None and (at >= loss or any(b.kind in ("saved", "mask") for b in here)):
        advice = "freeze the layers before it (a sparser update scheme) or use a smaller model"
    elif bound > budget and any(b.name in args for b in here):
        advice = "the function's input counts: try include-args=false if the caller owns it, or a smaller input"
    elif bound > budget:
        advice = "use a smaller model or input"
    elif strategy != "best-fit":
        advice = "the live tensors fit at every step but this layout does not: try strategy=best-fit"
    elif not in_place:
        advice = "the live tensors fit at every step but this layout does not: try in-place=true"
    else:
        advice = "the live tensors fit at every step but the layout fragments: try a smaller align or another op order"
    return (f"{NAME}: @{fn}: arena of {_bytes(p.arena_size, strategy)} exceeds the budget of {_bytes(budget)} "
            f"by {over} bytes; peak {bound} bytes live at {where}: {listed}; {advice}")


# -- annotation --------------------------------------------------------------------------
def _i64(n: int) -> IntegerAttr:
    return IntegerAttr(n, i64)


def _clear(func: FuncOp) -> None:
    for key in FUNC_ATTRS:
        func.attributes.pop(key, None)
    for op in func.walk():
        for key in OP_ATTRS:
            op.attributes.pop(key, None)


def annotate(live: Liveness, p: Plan, align: int) -> None:
    """Record plan `p` of `live` in the function's IR (see the module docstring)."""
    func = live.func
    _clear(func)
    sizes = {b.name: b.size_bytes for b in p.buffers}

    def offset(v) -> int:
        name = live.storage.get(v)
        return -1 if name is None else p.offsets[name]

    func.attributes[FUNC_BYTES] = _i64(p.arena_size)
    func.attributes[FUNC_STRATEGY] = StringAttr(p.strategy)
    func.attributes[FUNC_ALIGN] = _i64(align)
    func.attributes[FUNC_ARG_OFFSETS] = DenseArrayBase.from_list(i64, [offset(a) for a in func.body.block.args])
    for op in live.ops:
        offsets = [offset(r) for r in op.results]
        if any(o >= 0 for o in offsets):
            op.attributes[OFFSETS] = DenseArrayBase.from_list(i64, offsets)
        if op in live.in_place:
            op.attributes[IN_PLACE] = _i64(live.in_place[op])
        if op in live.scratch:
            name = live.scratch[op]
            op.attributes[SCRATCH_OFFSET] = _i64(p.offsets[name])
            op.attributes[SCRATCH_BYTES] = _i64(sizes[name])


@dataclass(frozen=True)
class PlanMemoryPass(ModulePass):
    """Plan each function's arena (strategy, optional budget, in-place reuse, kernel
    scratch) and record the offsets as attributes. See the module docstring."""

    name = "plan-memory"

    budget: int | str | None = None
    strategy: str = "best-fit"
    in_place: bool = True
    include_args: bool = True
    align: int = 16

    def __post_init__(self) -> None:
        parse_budget(self.budget)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got '{self.strategy}'")
        if isinstance(self.align, bool) or not isinstance(self.align, int) or self.align < 1:
            raise ValueError(f"align must be a positive number of bytes, got {self.align}")

    @property
    def budget_bytes(self) -> int | None:
        return parse_budget(self.budget)

    def plan_function(self, func: FuncOp) -> tuple[Liveness, Plan]:
        try:
            live = analyze_liveness(func, self.include_args, in_place=self.in_place)
            p = plan(aligned(live.buffers, self.align), self.strategy)
            check_no_overlap(p)
        except MemoryPlanError as e:
            raise PassFailedException(f"{NAME}: @{func.sym_name.data}: {e}") from None
        return live, p

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        budget = self.budget_bytes
        failure: str | None = None
        for func in op.walk():
            if not isinstance(func, FuncOp) or not func.body.blocks:
                continue
            live, p = self.plan_function(func)
            annotate(live, p, self.align)
            if _RECORDERS:
                report = arena_report(live, p, budget=budget, align=self.align, in_place=self.in_place,
                                      include_args=self.include_args, module=op)
                for recorder in _RECORDERS:
                    recorder.append(report)
            if budget is not None and p.arena_size > budget and failure is None:
                failure = overflow_message(live, p, budget, self.strategy, self.in_place)
        if failure is not None:
            raise PassFailedException(failure)
