"""Fuzzing with a small budget (the large one: `python -m tinymlir.tools.fuzz --count 10000`),
plus regression tests for what the fuzzer found.

Oracle: every input ends in success or in one line on stderr with exit code 1; never a
traceback, an internal error (exit code 2) or a hang. See docs/reliability.md.
"""

from __future__ import annotations

import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tinymlir.frontend.onnx_importer import OnnxImportError, import_onnx
from tinymlir.tools import fuzz

# Inputs per target in the suite: about 10 s in all on one core.
BUDGET = {"onnx": 80, "ir": 50, "pipeline": 40}
SEED = 20260101


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> fuzz.Corpus:
    return fuzz.Corpus(tmp_path_factory.mktemp("fuzz-corpus"), use_shared=False)


def _explain(stats: fuzz.Stats) -> str:
    lines: list[str] = []
    fuzz.report(stats, lines.append)
    for f in (stats.failures + stats.masked_examples)[:5]:
        lines.append(f"  #{f.case.index} {f.case.prog} {' '.join(f.case.argv[1:])}: {f.outcome.stderr.strip()[:400]}"
                     f" [{f.case.note[:200]}]")
    lines.append(f"replay: python -m tinymlir.tools.fuzz --target {stats.target} --seed {SEED} --index N "
                 "--save-failures out/fuzz")
    return "\n".join(lines)


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_fuzz_small_budget(target, corpus, tmp_path):
    stats = fuzz.fuzz(target, BUDGET[target], SEED, corpus=corpus, workdir=tmp_path, use_shared=False,
                      timeout=20, strict=True, memory_headroom_mb=3000)
    assert stats.tried == BUDGET[target]
    assert stats.failed == 0 and stats.masked == 0, _explain(stats)
    assert stats.rejected > 0  # the mutations do reach the error paths
    if target != "ir":
        assert stats.ok > 0  # ... and some inputs still go all the way through


def test_fuzz_cases_are_reproducible(corpus, tmp_path):
    for target in fuzz.TARGETS:
        for index in (0, 7, 123):
            a = fuzz.make_case(corpus, target, 5, index, tmp_path, use_shared=False)
            b = fuzz.make_case(corpus, target, 5, index, tmp_path, use_shared=False)
            assert (a.prog, a.argv, a.files) == (b.prog, b.argv, b.files)


def test_random_graphs_are_valid_and_import():
    for i in range(25):
        g = fuzz.random_graph(random.Random(i))
        onnx.checker.check_model(g.model, full_check=True)
        import_onnx(g.model)


def test_subprocess_agrees_with_in_process(corpus, tmp_path):
    """A few inputs through a real `python -m tinymlir.tools.opt`: the same verdict and exit code."""
    stats = fuzz.fuzz("onnx", 2, SEED + 1, corpus=corpus, workdir=tmp_path, use_shared=False, subprocess_checks=2,
                      strict=True)
    assert stats.subprocess_checked == 2
    assert stats.failed == 0, _explain(stats)


def test_cli_prints_counts(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tinymlir.tools.fuzz", "--target", "onnx", "--count", "3",
                        "--seed", "1", "--no-shared"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "onnx: 3 inputs in" in r.stdout and "0 failed" in r.stdout


def test_oracle_flags_tracebacks_internal_errors_and_hangs():
    ok = fuzz.Outcome(0, "module", "", 0.1)
    bad_input = fuzz.Outcome(1, "", "tinymlir-opt: error: x.mlir:1:2: expected ...\n", 0.1)
    internal = fuzz.Outcome(2, "", "tinymlir-opt: internal error: KeyError: 3 (set ...)\n", 0.1)
    two_lines = fuzz.Outcome(1, "", "warning: x\ntinymlir-opt: error: y\n", 0.1)
    traceback = fuzz.Outcome(1, "", "Traceback (most recent call last):\n  ...\n", 0.1)
    masked = fuzz.Outcome(1, "", "tinymlir-opt: error: x.onnx: cannot import 'x': IndexError: list index\n", 0.1)
    hang = fuzz.Outcome(None, "", "", 30.0, timed_out=True)
    report_then_error = fuzz.Outcome(1, "", "prune-backward: removed 3 backward ops\ntinymlir-opt: error: y\n", 0.1)
    assert fuzz.verdict("tinymlir-opt", report_then_error)[0] == "rejected"
    assert fuzz.verdict("tinymlir-opt", ok)[0] == "ok"
    assert fuzz.verdict("tinymlir-opt", bad_input)[0] == "rejected"
    for o in (internal, two_lines, traceback, hang):
        assert fuzz.verdict("tinymlir-opt", o)[0] == "failed"
    assert fuzz.verdict("tinymlir-opt", masked)[0] == "masked"
    assert fuzz.verdict("tinymlir-opt", masked, strict=True)[0] == "failed"


def test_in_process_timeout_is_a_hang(monkeypatch):
    import time

    from tinymlir.tools import opt

    monkeypatch.setattr(opt, "main", lambda argv: time.sleep(10) or 0)
    o = fuzz.run_in_process("tinymlir-opt", ["x.mlir"], timeout=0.3)
    assert o.timed_out and o.seconds < 5
    assert fuzz.verdict("tinymlir-opt", o)[0] == "failed"


# -- regressions: bugs the fuzzer found -----------------------------------------------------------
def _model(nodes, inits, inputs=None, outputs=None):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_initializer_with_unknown_data_type_is_an_import_error():
    """Was `cannot read initializer 'b': KeyError: 99` (onnx's to_array crashed)."""
    b = numpy_helper.from_array(np.ones(4, np.float32), "b")
    b.data_type = 99
    m = _model([helper.make_node("Add", ["x", "b"], ["y"])], [b])
    with pytest.raises(OnnxImportError, match="cannot read initializer 'b': unknown or undefined data type 99"):
        import_onnx(m.SerializeToString())


def test_constant_node_with_unknown_data_type_is_an_import_error():
    t = numpy_helper.from_array(np.ones(4, np.float32), "t")
    t.data_type = 99
    m = _model([helper.make_node("Constant", [], ["c"], value=t), helper.make_node("Add", ["x", "c"], ["y"])], [])
    with pytest.raises(OnnxImportError, match="cannot read the value of Constant .*unknown or undefined data type 99"):
        import_onnx(m.SerializeToString())


def test_import_errors_name_the_node():
    """A Conv bias of the wrong shape (ONNX shape inference does not check it) was reported
    as 'the IR imported from ... does not verify'; now the node is named."""
    m = onnx.load_model_from_string(fuzz.digits_model_bytes())
    for i, init in enumerate(m.graph.initializer):
        if init.name == "dw.bias":
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.zeros(10, np.float32), "dw.bias"))
    with pytest.raises(OnnxImportError, match=r"Conv \(node 'dw'\) gives invalid IR: nn.conv2d: bias must have shape"):
        import_onnx(m.SerializeToString())


@pytest.mark.parametrize("which", ["min", "max"])
def test_clip_with_nan_bound_is_an_import_error(which):
    """Was 'does not verify: nn.clip: min nan is above max 6.0'."""
    lo, hi = (np.float32(np.nan), np.float32(6)) if which == "min" else (np.float32(0), np.float32(np.nan))
    m = _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="c")],
               [numpy_helper.from_array(np.array(lo), "lo"), numpy_helper.from_array(np.array(hi), "hi")])
    with pytest.raises(OnnxImportError, match=f"Clip \\(node 'c'\\): a NaN {which} is not supported"):
        import_onnx(m.SerializeToString())


def _digits_with(tmp_path: Path, **changes) -> Path:
    m = onnx.load_model_from_string(fuzz.digits_model_bytes())
    for init in m.graph.initializer:
        if init.name in changes:
            arr = numpy_helper.to_array(init).copy()
            arr[...] = changes[init.name]
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    path = tmp_path / "digits.onnx"
    path.write_bytes(m.SerializeToString())
    return path


@pytest.mark.parametrize("changes,pipeline,fragment", [
    # NaN weights: calibration reports it (numpy's "invalid value in matmul" warning was printed too)
    ({"pw.weight": np.nan}, "fold-batch-norm,quantize-ptq{{calibration=\"{calib}\"}}", "non-finite value"),
    # a negative variance: fold-batch-norm's sqrt warned ("invalid value encountered in sqrt")
    ({"bn1.var": -1.0}, "fold-batch-norm,quantize-ptq{{calibration=\"{calib}\"}}", "non-finite value"),
    # overflowing constants folded: no warning either
    ({"fc.weight": 3e38}, "fold-batch-norm,fold-constants", None),
])
def test_numeric_trouble_is_one_line(tmp_path, changes, pipeline, fragment):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(-1, 1, (2, 1, 16, 16)).astype(np.float32))
    model = _digits_with(tmp_path, **changes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be more stderr lines
        o = fuzz.run_in_process("tinymlir-opt", [str(model), "-p", pipeline.format(calib=calib)], timeout=60)
    if fragment is None:
        assert o.code == 0, o.stderr
    else:
        assert o.code == 1 and len(o.stderr.splitlines()) == 1 and fragment in o.stderr, o.stderr


@pytest.mark.xfail(fuzz.xdsl_lexer_is_exponential(), strict=True, run=False,
                   reason="xDSL 0.74's string-literal regex backtracks exponentially on an unterminated string; "
                          "tinymlir-opt should install fuzz._SAFE_STRING_REGEX (docs/reliability.md)")
def test_unterminated_string_does_not_hang(tmp_path):
    """A line with `"` and ~30 more characters but no closing quote took forever to lex."""
    text = 'func.func @f() {\n  %0 = arith.constant dense<"0x' + "AB" * 40 + "\n}\n"
    path = tmp_path / "x.mlir"
    path.write_text(text)
    o = fuzz.run_in_process("tinymlir-opt", [str(path)], timeout=5)
    assert not o.timed_out and o.code == 1 and len(o.stderr.splitlines()) == 1, o.stderr


def test_safe_string_regex_accepts_the_same_strings():
    import re

    original = re.compile(r'"(?:[^"\\\n\v\f]+|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*"')  # xDSL 0.74's
    safe = re.compile(fuzz._SAFE_STRING_REGEX)
    rng = random.Random(0)
    alphabet = 'ab"\\nt0F\n\x7f'
    for _ in range(3000):
        s = '"' + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        m1, m2 = original.match(s), safe.match(s)
        assert (m1 and m1.group()) == (m2 and m2.group()), s
    big = '"0x' + "AB" * 100_000
    assert safe.match(big) is None and safe.match(big + '"').end() == len(big) + 1


def test_memory_headroom_turns_a_huge_allocation_into_memory_error():
    with fuzz.memory_headroom(200):
        with pytest.raises(MemoryError):
            [0] * (2**28)  # 2 GB of pointers
    assert len([0] * (2**25)) == 2**25  # 256 MB: fine again outside


def test_fuzz_input_files_are_saved_for_replay(corpus, tmp_path):
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    case = fuzz.make_case(corpus, "onnx", 1, 3, case_dir, use_shared=False)
    o = fuzz.Outcome(2, "", "tinymlir-opt: internal error: X\n", 0.1)
    d = fuzz.save_failure(fuzz.Failure(case, o, "failed", "internal error", "sig"), tmp_path / "out", corpus.dir.parent)
    readme = (d / "README.txt").read_text()
    assert "python -m tinymlir.tools.opt" in readme and str(d) in readme
    assert (d / "model.onnx").read_bytes() == case.files["model.onnx"]


# xDSL 0.74's parser raises plain Python exceptions for these out-of-range literals;
# tinymlir.tools.opt.parse_mlir turns them into one-line parse errors.
XDSL_LITERAL_CRASHES = {
    "i8-out-of-range": "%0 = arith.constant dense<300> : tensor<2xi8>",
    "huge-dim": "%0 = arith.constant dense<0.0> : tensor<99999999999999999999xf32>",
    "huge-splat": "%0 = arith.constant dense<0> : tensor<4294967296x4xi8>",
    "complex-literal": "%0 = arith.constant dense<[(1.0, 2.0, 3.0), 4.0]> : tensor<2xf32>",
    "dense-array-i32": "%0 = cmsisnn.fully_connected_s8 %x, %w input_offset 0 filter_offset 0 output_offset 0 "
                       "activation(-128, 127) multipliers [4294967296] shifts [0] : "
                       "(tensor<1x2xi8>, tensor<1x2xi8>) -> tensor<1x1xi8>",
}


@pytest.mark.parametrize("name", sorted(XDSL_LITERAL_CRASHES))
def test_out_of_range_literals_are_one_line_errors(name, tmp_path):
    body = XDSL_LITERAL_CRASHES[name]
    path = tmp_path / "x.mlir"
    path.write_text("func.func @f(%x: tensor<1x2xi8>, %w: tensor<1x2xi8>) {\n  " + body + "\n  func.return\n}\n")
    with fuzz.memory_headroom(2000):
        o = fuzz.run_in_process("tinymlir-opt", [str(path)], timeout=20)
    assert o.code == 1 and len(o.stderr.splitlines()) == 1, o.stderr
