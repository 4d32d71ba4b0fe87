"""tinymlir-opt and tinymlir-run on bad input: one line on stderr, exit code 1, no traceback.

The tools run as subprocesses (`python -m tinymlir.tools.opt`), so exit codes and stderr
are exactly what a user sees; in-process tests cover the internal-error path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinymlir.tools import opt as opt_tool

OPT = [sys.executable, "-m", "tinymlir.tools.opt"]
RUN = [sys.executable, "-m", "tinymlir.tools.run"]

GOOD = """\
func.func @forward(%x: tensor<1x4xf32>, %y: tensor<4xf32>) -> (tensor<1x4xf32>, tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>) {
  %0 = nn.add %x, %y : (tensor<1x4xf32>, tensor<4xf32>) -> tensor<1x4xf32>
  %1 = nn.relu %0 : (tensor<1x4xf32>) -> tensor<1x4xf32>
  %2 = quant.quantize %1 : tensor<1x4xf32> -> tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>
  func.return %1, %2 : tensor<1x4xf32>, tensor<1x4x!quant.uniform<i8:f32, 0.5:-3>>
}
"""


def run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, **kw)


def assert_one_line_error(r: subprocess.CompletedProcess, prog: str, *fragments: str, code: int = 1) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    kind = "error" if code == 1 else "internal error"
    assert lines[0].startswith(f"{prog}: {kind}: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "good.mlir").write_text(GOOD)
    np.save(tmp_path / "x.npy", np.array([[1, -2, 3, 0.5]], np.float32))
    np.save(tmp_path / "y.npy", np.ones(4, np.float32))
    return tmp_path


# -- tinymlir-opt ---------------------------------------------------------------------------
def test_opt_good_input_round_trips(work):
    r = run([*OPT, "good.mlir"], work)
    assert r.returncode == 0, r.stderr
    assert "nn.add %x, %y" in r.stdout and r.stderr == ""


def test_opt_syntax_error_has_line_and_col(work):
    (work / "bad.mlir").write_text("func.func @f() {\n  %0 = arith.constant : i32\n  func.return\n}\n")
    line = assert_one_line_error(run([*OPT, "bad.mlir"], work), "tinymlir-opt", "bad.mlir:2:")
    assert line.split("bad.mlir:2:")[1].split(":")[0].isdigit(), line


def test_opt_split_input_file_counts_lines_from_file_start(work):
    text = GOOD + "\n// -----\n\nfunc.func @g() {\n  %0 = arith.constant : i32\n}\n"
    bad_line = text.splitlines().index("  %0 = arith.constant : i32") + 1
    (work / "split.mlir").write_text(text)
    r = run([*OPT, "split.mlir", "--split-input-file"], work)
    assert_one_line_error(r, "tinymlir-opt", f"split.mlir:{bad_line}:")


def test_opt_bad_quant_type_has_line_and_col(work):
    (work / "q.mlir").write_text(
        "func.func @f(%x: tensor<4xf32>) {\n  func.return\n}\n"
        "func.func @g(%x: tensor<4x!quant.uniform<i8:f32, 0.5:300>>) {\n  func.return\n}\n")
    assert_one_line_error(run([*OPT, "q.mlir"], work), "tinymlir-opt", "q.mlir:4:", "zero-point 300")


def test_opt_verifier_error_names_the_op(work):
    (work / "v.mlir").write_text(
        "func.func @f(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {\n"
        "  %0 = nn.clip %x {min = 6.0 : f32, max = 0.0 : f32} : (tensor<1x4xf32>) -> tensor<1x4xf32>\n"
        "  func.return %0 : tensor<1x4xf32>\n}\n")
    assert_one_line_error(run([*OPT, "v.mlir"], work), "tinymlir-opt", "v.mlir", "'nn.clip' op in @f",
                          "min 6.0 is above max 0.0")


def test_opt_verify_diagnostics_prints_to_stdout_and_exits_0(work):
    (work / "v.mlir").write_text(
        "func.func @f(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {\n"
        "  %0 = nn.clip %x {min = 6.0 : f32, max = 0.0 : f32} : (tensor<1x4xf32>) -> tensor<1x4xf32>\n"
        "  func.return %0 : tensor<1x4xf32>\n}\n")
    r = run([*OPT, "v.mlir", "--verify-diagnostics"], work)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.splitlines()[0] == "nn.clip: min 6.0 is above max 0.0"


@pytest.mark.parametrize("pipeline,fragments", [
    ("nosuch", ["unknown pass 'nosuch'"]),
    ("canonicalise", ["unknown pass 'canonicalise'", "did you mean 'canonicalize'"]),
    ("canonicalize{foo=1}", ["invalid options for pass 'canonicalize'", "foo"]),
    ("arith-add-fastmath{flags=1,2}", ["invalid options for pass 'arith-add-fastmath'"]),
    ("cse,,dce", ["invalid pass pipeline", "column"]),
    ("cse{", ["invalid pass pipeline 'cse{'"]),
])
def test_opt_bad_pipeline(work, pipeline, fragments):
    assert_one_line_error(run([*OPT, "good.mlir", "-p", pipeline], work), "tinymlir-opt", *fragments)


def test_opt_missing_file(work):
    assert_one_line_error(run([*OPT, "missing.mlir"], work), "tinymlir-opt", "missing.mlir",
                          "No such file or directory")


def test_opt_unknown_extension(work):
    (work / "x.txt").write_text(GOOD)
    assert_one_line_error(run([*OPT, "x.txt"], work), "tinymlir-opt", "x.txt", "'.txt'")


def test_opt_unknown_flag_is_one_line(work):
    assert_one_line_error(run([*OPT, "good.mlir", "--no-such-flag"], work), "tinymlir-opt", "--no-such-flag")


def test_opt_corrupt_onnx(work):
    (work / "x.onnx").write_bytes(b"\x08\xff\xff\xffgarbage, not a protobuf\x00\x01\x02")
    assert_one_line_error(run([*OPT, "x.onnx"], work), "tinymlir-opt", "x.onnx")


def test_opt_pipeline_with_options_and_output_file(work):
    r = run([*OPT, "good.mlir", "-p", "arith-add-fastmath{flags=fast},canonicalize,cse", "-o", "out.mlir"], work)
    assert r.returncode == 0, r.stderr
    assert "nn.relu" in (work / "out.mlir").read_text()


def test_opt_internal_error_is_one_line_exit_2(work, monkeypatch, capsys):
    def boom(self, prog):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.delenv(opt_tool.DEBUG_ENV, raising=False)
    monkeypatch.setattr(opt_tool.TinyMLIROptMain, "apply_passes", boom)
    code = opt_tool.main([str(work / "good.mlir")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tinymlir-opt: internal error: RuntimeError: boom second line")


def test_opt_debug_env_reraises(work, monkeypatch):
    def boom(self, prog):
        raise RuntimeError("boom")

    monkeypatch.setenv(opt_tool.DEBUG_ENV, "1")
    monkeypatch.setattr(opt_tool.TinyMLIROptMain, "apply_passes", boom)
    with pytest.raises(RuntimeError, match="boom"):
        opt_tool.main([str(work / "good.mlir")])


# -- tinymlir-run ---------------------------------------------------------------------------
def test_run_prints_shapes_argmax_and_saves(work):
    r = run([*RUN, "good.mlir", "--input", "x.npy", "--input", "y.npy", "--output", "out.npy"], work)
    assert r.returncode == 0, r.stderr
    assert "output 0: shape [1, 4] dtype float32 argmax 2" in r.stdout
    assert "output 1: shape [1, 4] dtype int8 argmax 2" in r.stdout
    np.testing.assert_array_equal(np.load(work / "out_0.npy"), [[2, 0, 4, 1.5]])
    q = np.load(work / "out_1.npy")
    assert q.dtype == np.int8 and q.tolist() == [[1, -3, 5, 0]]


def test_run_applies_a_pipeline(work):
    r = run([*RUN, "good.mlir", "-i", "x.npy", "-i", "y.npy", "-p", "canonicalize,cse", "--print"], work)
    assert r.returncode == 0, r.stderr
    assert "[[ 1 -3  5  0]]" in r.stdout


@pytest.mark.parametrize("make,args,fragments", [
    (None, ["-i", "x.npy"], ["@forward takes 2 argument(s), got 1"]),
    (lambda d: np.save(d / "y.npy", np.ones(4)), ["-i", "x.npy", "-i", "y.npy"],
     ["--input y.npy (argument 1 of @forward)", "expected dtype float32", "got float64"]),
    (lambda d: np.save(d / "y.npy", np.ones(5, np.float32)), ["-i", "x.npy", "-i", "y.npy"],
     ["--input y.npy (argument 1 of @forward)", "expected shape [4], got [5]"]),
    (lambda d: (d / "y.npy").write_bytes(b"garbage"), ["-i", "x.npy", "-i", "y.npy"], ["not a .npy file"]),
    (None, ["-i", "x.npy", "-i", "nope.npy"], ["nope.npy", "No such file or directory"]),
    (None, ["-i", "x.npy", "-i", "y.npy", "--function", "main"], ["no function @main", "@forward"]),
    (None, ["-i", "x.npy", "-i", "y.npy", "-p", "nosuch"], ["unknown pass 'nosuch'"]),
])
def test_run_bad_inputs(work, make, args, fragments):
    if make is not None:
        make(work)
    assert_one_line_error(run([*RUN, "good.mlir", *args], work), "tinymlir-run", *fragments)


def test_run_missing_and_malformed_files(work):
    assert_one_line_error(run([*RUN, "missing.mlir", "-i", "x.npy"], work), "tinymlir-run", "missing.mlir")
    (work / "bad.mlir").write_text("func.func @forward() {\n  %0 = arith.constant : i32\n}\n")
    assert_one_line_error(run([*RUN, "bad.mlir"], work), "tinymlir-run", "bad.mlir:2:")
    (work / "x.onnx").write_bytes(b"\x08\xff\xff\xffgarbage")
    assert_one_line_error(run([*RUN, "x.onnx", "-i", "x.npy"], work), "tinymlir-run", "x.onnx")
