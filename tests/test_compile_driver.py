"""`tinymlir compile`: the driver writes a C project that builds, reports the memory of
the step, runs it (host), and fails with one line for bad requests."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tinymlir.tools.compile import main, parse_bytes


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    from tinymlir.examples.digits import make_example

    return make_example(tmp_path_factory.mktemp("compile_example"), seed=0)


def compile_args(example, out, *extra: str) -> list[str]:
    return ["compile", str(example["onnx"]), "--calibration", str(example["calib"]), "-o", str(out), *extra]


def test_train_project_builds_runs_and_reports(example, tmp_path, capsys):
    out = tmp_path / "proj"
    x = np.load(example["test_x"])[:1]
    np.save(tmp_path / "x.npy", x)
    code = main(compile_args(example, out, "--train", "--num-classes", "10", "--target", "host",
                             "--run", "3", "--input", str(tmp_path / "x.npy"), "--label", "4"))
    text = capsys.readouterr().out
    assert code == 0
    for name in ("model.c", "model.h", "Makefile", "model.mlir", "summary.txt", "runtime/tk/include/tk.h",
                 "runtime/cmsisnn/include/arm_nnfunctions.h"):
        assert (out / name).is_file(), name
    header = (out / "model.h").read_text()
    assert "int model_train_step(const int8_t *in, int32_t label, float lr, float *loss);" in header
    assert "int model_infer(const int8_t *in, int8_t *out);" in header
    assert "arena peak (SRAM)" in text and "trained parameters (SRAM)" in text
    losses = [float(v) for v in text.split("host: 3 steps on label 4, loss ")[1].splitlines()[0].split(" -> ")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    r = subprocess.run(["make", "-s"], cwd=out, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (out / "build" / "host" / "libmodel.a").is_file(), r.stderr


@pytest.mark.parametrize("extra, message", [
    (["--scheme", "auto", "--update-budget", "1KB"], "--scheme auto needs --train"),
    (["--train", "--scheme", "no/such.scheme"], "no such file"),
    (["--train", "--budget", "4KB"], "over the budget 4,096 B by"),
    (["--budget", "lots"], "expected a size such as 256KB"),
])
def test_bad_requests_fail_in_one_line(example, tmp_path, capsys, extra, message):
    assert main(compile_args(example, tmp_path / "p", *extra)) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln for ln in lines if not ln.startswith("[")] == lines[-1:], lines  # progress lines, then one error
    assert lines[-1].startswith("tinymlir compile: error: ") and message in lines[-1], lines


@pytest.mark.parametrize("optimizer, state", [("sgdm", ".momentum"), ("adam", ".m")])
def test_momentum_and_adam_projects_train_and_keep_their_state_in_sram(example, tmp_path, capsys, optimizer, state):
    out = tmp_path / optimizer
    x = np.load(example["test_x"])[:1]
    np.save(tmp_path / "x.npy", x)
    code = main(compile_args(example, out, "--train", "--num-classes", "10", "--target", "host", "--optimizer",
                             optimizer, "--lr", "0.5", "--run", "3", "--input", str(tmp_path / "x.npy"),
                             "--label", "4"))
    text = capsys.readouterr().out
    assert code == 0
    losses = [float(v) for v in text.split("host: 3 steps on label 4, loss ")[1].splitlines()[0].split(" -> ")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    model_c = (out / "model.c").read_text()
    # the optimizer state of the classifier's weight is a writable (SRAM) array
    assert f"/* @layer4.weight{state} [" in model_c and "(SRAM, updated by training)" in \
        model_c.split(f"/* @layer4.weight{state} [")[1].splitlines()[0]
    c_name = f"model_p_layer4_weight_{state[1:]}["
    assert f"static float {c_name}" in model_c and f"static const float {c_name}" not in model_c


def test_float_model_without_calibration_and_missing_file(example, tmp_path):
    (tmp_path / "corrupt.onnx").write_bytes(b"not a protobuf\x00\xff")
    for argv in (["compile", str(example["onnx"]), "-o", str(tmp_path / "a")],
                 ["compile", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "b")],
                 ["compile", str(tmp_path / "corrupt.onnx"), "--calibration", str(example["calib"]), "-o",
                  str(tmp_path / "c")],
                 ["search", str(tmp_path / "corrupt.onnx"), "--update-budget", "10KB"]):
        r = subprocess.run([sys.executable, "-m", "tinymlir.tools.compile", *argv], capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("[")] == \
            r.stderr.strip().splitlines()[-1:], r.stderr


def test_parse_bytes():
    assert parse_bytes("256KB") == parse_bytes("256KiB") == 262144
    assert parse_bytes("1MB") == 1 << 20 and parse_bytes("4096") == 4096
