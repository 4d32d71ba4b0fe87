"""The `plan-memory` pass (tinymlir/passes/plan_memory.py): arena annotations, in-place
reuse and kernel scratch in memory_plan.live_intervals, the budget error, and the
`tinymlir-opt --memory-report/--memory-plot` reports."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import numpy as np
import pytest
from shared_models import shared_model
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Dialect
from xdsl.irdl import IRDLOperation, irdl_op_definition, result_def, var_operand_def
from xdsl.parser import Parser
from xdsl.utils.exceptions import PassFailedException

from tinymlir.codegen.memory_plan import (
    STRATEGIES,
    Buffer,
    analyze_liveness,
    find_func,
    live_intervals,
    printed_names,
    tensor_bytes,
)
from tinymlir.codegen.memory_plot import write_plot
from tinymlir.context import make_context
from tinymlir.interpreter import run_function
from tinymlir.passes import get_tinymlir_passes
from tinymlir.passes.plan_memory import PlanMemoryPass, parse_budget, recording_plans
from tinymlir.tools import opt as opt_tool

OPT = [sys.executable, "-m", "tinymlir.tools.opt"]


# --------------------------------------------------------------------------- helpers


@irdl_op_definition
class InPlaceTestOp(IRDLOperation):
    """May write its result into operand 0 (as an element-wise kernel would)."""

    name = "pmtest.in_place"
    inputs = var_operand_def()
    result = result_def()

    def in_place_operand(self) -> int | None:
        return 0


@irdl_op_definition
class ScratchTestOp(IRDLOperation):
    """No result; needs 100 bytes of scratch (as a fused weight-update kernel)."""

    name = "pmtest.scratch"
    inputs = var_operand_def()

    def scratch_bytes(self) -> int:
        return 100


def parse(text: str) -> ModuleOp:
    ctx = make_context()
    ctx.register_dialect("pmtest", lambda: Dialect("pmtest", [InPlaceTestOp, ScratchTestOp]))
    module = Parser(ctx, text).parse_module()
    module.verify()
    return module


def apply(module: ModuleOp, **options) -> list[dict]:
    with recording_plans() as reports:
        PlanMemoryPass(**options).apply(make_context(), module)
    module.verify()
    return reports


def brute_force_no_overlap(report: dict) -> None:
    """Independently of memory_plan.check_no_overlap: buffers live at a common step never
    share a byte, and all lie inside the arena."""
    bs = [b for b in report["buffers"] if b["size"] > 0]
    for b in bs:
        assert 0 <= b["offset"] and b["offset"] + b["size"] <= report["arena_bytes"], b
    for i, a in enumerate(bs):
        for b in bs[i + 1 :]:
            if a["first"] <= b["last"] and b["first"] <= a["last"]:
                assert a["offset"] + a["size"] <= b["offset"] or b["offset"] + b["size"] <= a["offset"], (a, b)


def ints(attr) -> list[int]:
    return [int(v) for v in attr.get_values()]


T = "tensor<1x4x4x8xi8>"  # 128 bytes
ADD_PARAMS = ("input1(offset = 0, multiplier = 1073741824, shift = 0) input2(offset = 0, multiplier = 1073741824, "
              "shift = 0) left_shift 20 output(offset = 0, multiplier = 1073741824, shift = -1) activation(-128, 127)")


def add_chain(n: int) -> str:
    """A chain of n cmsisnn adds (each of the previous sum and %x), then a global average
    pool (which needs scratch)."""
    lines = [f"func.func @forward(%x: {T}) -> tensor<1x1x1x8xi8> {{"]
    prev = "%x"
    for i in range(n):
        lines.append(f"  %a{i} = cmsisnn.elementwise_add_s8 {prev}, %x {ADD_PARAMS} : ({T}, {T}) -> {T}")
        prev = f"%a{i}"
    lines.append(f"  %p = cmsisnn.avgpool_s8 {prev} kernel [4, 4] stride [1, 1] padding [0, 0] activation(-128, 127)"
                 f" : ({T}) -> tensor<1x1x1x8xi8>")
    lines.append("  func.return %p : tensor<1x1x1x8xi8>")
    lines.append("}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- options


def test_budget_parsing():
    assert parse_budget(None) is None
    assert parse_budget(1000) == 1000
    assert parse_budget("256KB") == parse_budget("256kib") == parse_budget("256 KiB") == 256 * 1024
    assert parse_budget("2MB") == 2 * 1024 * 1024
    assert parse_budget("512") == parse_budget("512B") == 512
    for bad in ("1.5MB", "12XB", "KB", "-3", True):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad)


@pytest.mark.parametrize("options, fragment", [
    ({"strategy": "random"}, "strategy must be one of greedy-by-size, first-fit, best-fit"),
    ({"budget": "12XB"}, "budget must be bytes"),
    ({"align": 0}, "align must be a positive"),
])
def test_invalid_options(options, fragment):
    with pytest.raises(ValueError, match=fragment):
        PlanMemoryPass(**options)


def test_options_from_the_pipeline_spec():
    from xdsl.passes import PassPipeline

    (p,) = PassPipeline.parse_spec(get_tinymlir_passes(),
                                   "plan-memory{budget=256KB strategy=first-fit in-place=false align=4}").passes
    assert p == PlanMemoryPass(budget="256KB", strategy="first-fit", in_place=False, align=4)
    assert p.budget_bytes == 262144


# --------------------------------------------------------------------------- liveness extensions


GENERIC = """
func.func @f(%x: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<8x4xf32>) {
  %c = arith.constant dense<1.0> : tensor<4x8xf32>
  %0 = "pmtest.in_place"(%x) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %1 = "pmtest.in_place"(%c) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %a = nn.relu %0 : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %b = "pmtest.in_place"(%a, %1) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %d = "pmtest.in_place"(%b) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %e = nn.relu %d : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %v = nn.reshape %e : (tensor<4x8xf32>) -> tensor<8x4xf32>
  %g = "pmtest.in_place"(%e) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %h = nn.relu %g : (tensor<4x8xf32>) -> tensor<4x8xf32>
  %s = "pmtest.in_place"(%h) : (tensor<4x8xf32>) -> tensor<2x8xf32>
  "pmtest.scratch"(%s) : (tensor<2x8xf32>) -> ()
  func.return %g, %v : tensor<4x8xf32>, tensor<8x4xf32>
}
"""


def test_in_place_rules():
    func = find_func(parse(GENERIC))
    live = analyze_liveness(func)
    ops = {op.results[0].name_hint: op for op in live.ops if op.results and op.results[0].name_hint}
    by_name = {b.name: b for b in live.buffers}
    reused = {op.results[0].name_hint for op in live.in_place}
    # %0: its operand is the function argument; %1: a flash constant; %g: %e's view %v is
    # used later; %s: 128 -> 64 bytes. %b and then %d reuse %a's buffer (its last use).
    assert reused == {"b", "d"}
    assert live.in_place[ops["b"]] == 0
    assert live.storage[ops["b"].results[0]] == live.storage[ops["d"].results[0]] == "a"
    assert by_name["a"] == Buffer("a", 128, 3, 6)  # from %a's definition to %d's last use (%e)
    assert "b" not in by_name and "d" not in by_name
    # scratch: live at its op's step only, after the step's results
    (scratch,) = [b for b in live.buffers if b.kind == "scratch"]
    assert scratch == Buffer("pmtest.scratch#scratch@11", 100, 11, 11)
    assert live.buffers[-1] is scratch and live.scratch == {live.ops[11]: scratch.name}

    plain = {b.name for b in live_intervals(func, in_place=False)}
    assert {"b", "d"} <= plain
    assert not any(b.kind == "scratch" for b in live_intervals(func, scratch=False))
    total = sum(b.size_bytes for b in live_intervals(func, scratch=False))
    assert total + 2 * 128 == sum(b.size_bytes for b in live_intervals(func, in_place=False, scratch=False))


def test_buffer_names_are_the_printed_names():
    module = parse(GENERIC)
    func = find_func(module)
    from io import StringIO

    from xdsl.printer import Printer

    printer = Printer(stream=StringIO())
    printer.print_op(module)
    assert printed_names(func) == {v: n for v, n in printer._ssa_values.items() if v in printed_names(func)}


def test_cmsisnn_scratch_and_in_place_methods():
    module = parse(add_chain(2) + "\n" + """
func.func @conv(%x: tensor<1x5x5x3xi8>) -> (tensor<1x5x5x4xi8>, tensor<1x5x5x3xi8>, tensor<1x5x5x3xi8>) {
  %w = arith.constant dense<1> : tensor<4x3x3x3xi8>
  %y = cmsisnn.convolve_wrapper_s8 %x, %w input_offset 0 output_offset 0 stride [1, 1] padding [1, 1] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741824, 1073741824, 1073741824] shifts [0, 0, 0, 0] : (tensor<1x5x5x3xi8>, tensor<4x3x3x3xi8>) -> tensor<1x5x5x4xi8>
  %dw = arith.constant dense<1> : tensor<1x5x5x3xi8>
  %z = cmsisnn.depthwise_conv_wrapper_s8 %x, %dw input_offset 0 output_offset 0 ch_mult 1 stride [1, 1] padding [2, 2] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741824, 1073741824] shifts [0, 0, 0] : (tensor<1x5x5x3xi8>, tensor<1x5x5x3xi8>) -> tensor<1x5x5x3xi8>
  %d3 = arith.constant dense<1> : tensor<1x3x3x3xi8>
  %t = cmsisnn.depthwise_conv_wrapper_s8 %x, %d3 input_offset 0 output_offset 0 ch_mult 1 stride [1, 1] padding [1, 1] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741824, 1073741824] shifts [0, 0, 0] : (tensor<1x5x5x3xi8>, tensor<1x3x3x3xi8>) -> tensor<1x5x5x3xi8>
  func.return %y, %z, %t : tensor<1x5x5x4xi8>, tensor<1x5x5x3xi8>, tensor<1x5x5x3xi8>
}""")
    fwd, conv = (op for op in module.ops)
    ops = list(fwd.body.block.ops)
    assert ops[0].in_place_operand() == 0
    assert ops[2].scratch_bytes() == 8 * 4  # avgpool: an int32 per channel (DSP build)
    cops = [op for op in conv.body.block.ops if op.name.startswith("cmsisnn.")]
    assert [op.scratch_bytes() for op in cops] == [2 * 28 * 2, 3 * 5 * 5 * 2, 0]  # im2col; 5x5 dw; 3x3 dw: none
    names = [b.name for b in live_intervals(conv) if b.kind == "scratch"]
    assert names == ["cmsisnn.convolve_wrapper_s8#scratch@1", "cmsisnn.depthwise_conv_wrapper_s8#scratch@3"]


# --------------------------------------------------------------------------- the pass


def test_in_place_lowers_the_peak_of_an_add_chain():
    peaks = {}
    for in_place in (True, False):
        (r,) = apply(parse(add_chain(6)), in_place=in_place, align=1)
        brute_force_no_overlap(r)
        peaks[in_place] = r["arena_bytes"]
    # in place: %x and one running sum; otherwise %x, a sum and the next live together
    assert peaks[True] == 2 * 128
    assert peaks[False] == 3 * 128


def test_annotations_round_trip_verify_and_run():
    module = parse(add_chain(3))
    x = np.arange(-64, 64, dtype=np.int8).reshape(1, 4, 4, 8)
    before = run_function(module, [x])
    (r,) = apply(module, align=16)
    func = find_func(module)
    assert func.attributes["tinymlir.arena_bytes"].value.data == r["arena_bytes"] == 2 * 128
    assert func.attributes["tinymlir.arena_strategy"].data == "best-fit"
    assert func.attributes["tinymlir.arena_align"].value.data == 16
    offsets = {b["name"]: b["offset"] for b in r["buffers"]}
    assert ints(func.attributes["tinymlir.arena_arg_offsets"]) == [offsets["x"]]
    add0, add1, add2, pool, ret = func.body.block.ops
    assert "arena_in_place" not in add0.attributes  # %x is the function's argument
    assert [add1.attributes["arena_in_place"].value.data, add2.attributes["arena_in_place"].value.data] == [0, 0]
    assert ints(add0.attributes["arena_offsets"]) == ints(add1.attributes["arena_offsets"]) \
        == ints(add2.attributes["arena_offsets"]) == [offsets["a0"]]
    assert pool.attributes["arena_scratch_bytes"].value.data == 32
    assert pool.attributes["arena_scratch_offset"].value.data == offsets["cmsisnn.avgpool_s8#scratch@3"]
    assert all(o % 16 == 0 for o in offsets.values())
    assert "arena_offsets" not in ret.attributes
    # prints, parses back identically, verifies, and the interpreter ignores it
    text = str(module)
    again = parse(text)
    assert str(again) == text
    np.testing.assert_array_equal(run_function(again, [x])[0], before[0])
    # planning again replaces the annotation (same IR, same options: same text)
    apply(again, align=16)
    assert str(again) == text
    apply(again, align=1, in_place=False)
    assert "arena_in_place" not in str(again)


def test_views_constants_and_params_have_no_own_offset():
    module = parse("""
func.func @f(%x: tensor<1x8xf32>) -> tensor<2x4xf32> {
  %c = arith.constant dense<1.0> : tensor<1x8xf32>
  %a = nn.add %x, %c : (tensor<1x8xf32>, tensor<1x8xf32>) -> tensor<1x8xf32>
  %v = nn.reshape %a : (tensor<1x8xf32>) -> tensor<2x4xf32>
  func.return %v : tensor<2x4xf32>
}""")
    apply(module, include_args=False)
    const, add, view, _ = find_func(module).body.block.ops
    assert "arena_offsets" not in const.attributes
    assert ints(add.attributes["arena_offsets"]) == ints(view.attributes["arena_offsets"]) == [0]
    assert ints(find_func(module).attributes["tinymlir.arena_arg_offsets"]) == [-1]


@cache
def mcunet_modules() -> tuple[ModuleOp, ModuleOp]:
    """mcunet-5fps at the cmsisnn level (inference) and its sparse training step."""
    from xdsl.passes import PassPipeline

    from tinymlir.frontend import import_onnx

    def run(module, spec):
        PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
        return module

    from pathlib import Path

    base = run(import_onnx(str(shared_model("mcunet-5fps-int8.onnx"))), "fuse-qdq")
    lowered = run(base.clone(), "convert-layout,convert-quant-to-cmsisnn")
    scheme = Path(__file__).resolve().parents[1] / "schemes" / "mcunet-5fps-99kb.scheme"
    train = run(base, f'autodiff{{num-classes=10}},qas,sparse-update{{scheme="{scheme}"}},prune-backward')
    return lowered, train


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shared_model_plans_never_overlap(strategy):
    lowered, train = mcunet_modules()
    for module in (lowered, train):
        module = module.clone()
        reports = apply(module, strategy=strategy)
        assert reports
        for r in reports:
            brute_force_no_overlap(r)
            assert r["arena_bytes"] >= r["lower_bound"]
            # the annotation is the report's plan
            func = find_func(module, r["function"])
            live = analyze_liveness(func)
            offsets = {b["name"]: b["offset"] for b in r["buffers"]}
            for op in live.ops:
                if "arena_offsets" in op.attributes:
                    want = [offsets[live.storage[v]] if v in live.storage else -1 for v in op.results]
                    assert ints(op.attributes["arena_offsets"]) == want
    kinds = {b["kind"] for b in apply(train.clone(), strategy=strategy)[-1]["buffers"]}
    assert {"activation", "saved", "gradient", "mask"} <= kinds
    lowered_report = apply(lowered.clone(), strategy=strategy)[0]
    assert any(b["kind"] == "scratch" for b in lowered_report["buffers"])
    assert lowered_report["in_place_ops"]  # mcunet's residual adds


def test_budget_overflow_is_a_pass_failure():
    module = parse(add_chain(2))
    with pytest.raises(PassFailedException, match=r"plan-memory: @forward: arena of \d+ bytes"):
        apply(module, budget=100)
    apply(parse(add_chain(2)), budget="1KB")  # fits


# --------------------------------------------------------------------------- the CLI


MANY = "\n".join([
    f"func.func @many(%x: {T}) -> ({', '.join([T] * 8)}) {{",
    *[f"  %s{i} = cmsisnn.elementwise_add_s8 %x, %x {ADD_PARAMS} : ({T}, {T}) -> {T}" for i in range(8)],
    f"  func.return {', '.join(f'%s{i}' for i in range(8))} : {', '.join([T] * 8)}",
    "}",
])


def test_cli_budget_error_is_one_line(tmp_path):
    (tmp_path / "many.mlir").write_text(MANY)
    r = subprocess.run([*OPT, "many.mlir", "-p", "plan-memory{budget=1KB align=1}", "--memory-report", "r.json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("tinymlir-opt: error: many.mlir: in pass 'plan-memory': @many: arena of 1152 bytes"), line
    for fragment in ("exceeds the budget of 1024 bytes", "by 128 bytes", "peak 1152 bytes",
                     "at step 7, 'cmsisnn.elementwise_add_s8' (%s7): %s0 128 B, %s1 128 B,", "and 3 more;"):
        assert fragment in line, (fragment, line)
    # the report is written anyway, to show why
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["functions"][0]["budget"] == 1024 and report["functions"][0]["arena_bytes"] == 1152


def run_opt(args, capsys) -> tuple[int, str, str]:
    code = opt_tool.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("args, fragment", [
    (["-p", "plan-memory{strategy=random}"], "invalid options for pass 'plan-memory': strategy must be one of"),
    (["-p", "plan-memory{budget=3GB}"], "budget must be bytes as an integer or with a suffix KB, KiB or MB"),
    (["-p", "plan-memory{in-place=3}"], "invalid options for pass 'plan-memory'"),
    (["-p", "cse", "--memory-report", "r.json"], "--memory-report: plan-memory did not run"),
    (["--memory-report", "r.json", "--memory-plot", "p.svg"], "--memory-report and --memory-plot: plan-memory did not run"),
    (["-p", "plan-memory", "--memory-plot", "p.gif"], "unknown format '.gif'"),
])
def test_cli_option_errors(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.mlir").write_text(add_chain(1))
    code, _, err = run_opt(["in.mlir", *args], capsys)
    assert code == 1
    (line,) = err.splitlines()
    assert line.startswith("tinymlir-opt: error: ") and fragment in line, line
    assert not (tmp_path / "r.json").exists()


def test_cli_report_and_plot(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.mlir").write_text(add_chain(3) + "\n" + MANY)
    args = ["in.mlir", "-p", "plan-memory{budget=2KB}", "-o", "out.mlir", "--memory-report", "r.json"]
    code, _, err = run_opt([*args, "--memory-plot", "p.svg"], capsys)
    assert code == 0, err
    assert "tinymlir.arena_bytes" in (tmp_path / "out.mlir").read_text()
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["format"] == "tinymlir-memory-report" and doc["version"] == 1
    assert [r["function"] for r in doc["functions"]] == ["forward", "many"]
    for r in doc["functions"]:
        assert {"strategy", "arena_bytes", "lower_bound", "steps", "buffers", "budget", "in_place_ops",
                "trainable_param_bytes", "optimizer_state_bytes", "trainable_bytes"} <= set(r)
        assert r["strategy"] == "best-fit" and r["budget"] == 2048
        assert r["arena_bytes"] >= r["lower_bound"] == max(s["live_bytes"] for s in r["steps"])
        assert len(r["steps"]) == r["num_steps"]
        for s in r["steps"]:
            assert set(s) == {"step", "op", "result", "live_bytes", "live"}
            sizes = {b["name"]: b["size"] for b in r["buffers"]}
            assert s["live_bytes"] == sum(sizes[n] for n in s["live"])
        for b in r["buffers"]:
            assert set(b) == {"name", "kind", "size", "bytes", "offset", "first", "last"}
            assert b["kind"] in ("activation", "saved", "gradient", "mask", "scratch")
            assert b["size"] % 16 == 0 and b["size"] >= b["bytes"]
        brute_force_no_overlap(r)
    forward = doc["functions"][0]
    assert forward["steps"][0] == {"step": 0, "op": "cmsisnn.elementwise_add_s8", "result": "a0",
                                   "live_bytes": 256, "live": ["a0", "x"]}
    assert [(e["step"], e["operand"], e["buffer"]) for e in forward["in_place_ops"]] == [(1, 0, "a0"), (2, 0, "a0")]
    svg = (tmp_path / "p.svg").read_bytes()
    assert svg.startswith(b"<?xml") and len(svg) > 1000
    # deterministic: same IR, same bytes
    code, _, err = run_opt([*args, "--memory-plot", "p2.svg"], capsys)
    assert code == 0, err
    assert (tmp_path / "p2.svg").read_bytes() == svg
    code, _, err = run_opt([*args, "--memory-plot", "p.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_functions(tmp_path):
    pytest.importorskip("matplotlib")
    write_plot([], tmp_path / "empty.svg")
    assert (tmp_path / "empty.svg").stat().st_size > 0


def test_sizes_of_report_match_tensor_types():
    module = parse(add_chain(1))
    (r,) = apply(module, align=1)
    func = find_func(module)
    x = func.body.block.args[0]
    assert isinstance(x.type, TensorType)
    assert {b["name"]: b["bytes"] for b in r["buffers"]}["x"] == tensor_bytes(x.type) == 128
