"""Determinism: the same ONNX model through the same pipeline gives byte-identical IR and
byte-identical C, in two separate Python processes with different hash seeds.

Each process (this file run as a script) imports the models, runs the pipelines and
writes every printed IR and generated C file into a directory; the test compares the two
directories byte for byte. The models: the bundled digits CNN (seeded random weights,
float, through PTQ), an int8 QDQ CNN built here, and a shared int8 model when present.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CMSISNN = "convert-layout,convert-quant-to-cmsisnn"


def qdq_cnn_bytes() -> bytes:
    """A small int8 QDQ CNN (conv + relu, depthwise conv, conv, global pool, gemm), seeded."""
    import random

    from tinymlir.tools.fuzz import _GraphBuilder

    b = _GraphBuilder(random.Random(11), qdq=True, qoperator=False)
    b._qparams = {}
    from onnx import TensorProto, helper

    shape = [1, 3, 8, 8]
    cur, scale = b.quantize("input")
    for kind in ("conv", "dwconv", "conv", "gap", "flatten", "gemm"):
        cur, shape, scale = b.layer(kind, cur, shape, scale)
    out = b.dequantize(cur)
    graph = helper.make_graph(b.nodes, "qdq_cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def produce(out: Path) -> None:  # noqa: C901
    """Write every artifact of this process into `out`."""
    from tinymlir.codegen.emit_c import emit_c
    from tinymlir.frontend.onnx_importer import import_onnx
    from tinymlir.tools.fuzz import digits_model_bytes
    from tinymlir.tools.opt import available_passes, build_pipeline, make_full_context

    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # the calibration path is the same relative path in both processes
    calib = Path("calib.npy")
    np.save(calib, np.random.default_rng(0).uniform(-1, 1, (4, 1, 16, 16)).astype(np.float32))
    ptq = f'fold-batch-norm,quantize-ptq{{calibration="{calib}"}}'
    models = {"digits": digits_model_bytes(), "qdq": qdq_cnn_bytes()}
    pipelines = {
        "digits": {"import": "", "ptq": ptq, "cmsisnn": f"{ptq},{CMSISNN}",
                   "train": f"{ptq},autodiff{{num-classes=10 rounding=stochastic}},qas,sparse-update{{bias-last=2}},"
                            "prune-backward,reorder-update",
                   "train-f32": "fold-batch-norm,autodiff{num-classes=10 optimizer=adam}"},
        "qdq": {"import": "", "fused": "fuse-qdq", "cmsisnn": f"fuse-qdq,{CMSISNN}"},
    }
    shared = os.environ.get("TINYMLIR_DETERMINISM_SHARED")
    if shared:
        models["shared"] = Path(shared).read_bytes()
        pipelines["shared"] = {"cmsisnn": f"fuse-qdq,{CMSISNN}"}
    for name, data in models.items():
        for label, spec in pipelines[name].items():
            module = import_onnx(data)
            if spec:
                build_pipeline(available_passes(), spec).apply(make_full_context(), module)
            module.verify()
            Path(f"{name}-{label}.mlir").write_text(str(module))
            if label == "cmsisnn":
                for fname, text in emit_c(module, prefix=f"{name}_net").items():
                    Path(fname).write_text(text)
    calib.unlink()


def _run(out: Path, hashseed: str, env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": hashseed, **env_extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen([sys.executable, __file__, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_ir_and_c_are_byte_identical_across_processes(tmp_path):
    from shared_models import MODELS

    extra = {}
    shared = MODELS / "mcunet-5fps-int8.onnx"
    if shared.exists():
        extra["TINYMLIR_DETERMINISM_SHARED"] = str(shared)
    a, b = tmp_path / "a", tmp_path / "b"
    procs = [_run(a, "1", extra), _run(b, "4242", extra)]  # in parallel
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    files_a = sorted(f.name for f in a.iterdir())
    assert files_a == sorted(f.name for f in b.iterdir())
    assert any(f.endswith(".c") for f in files_a) and any(f.endswith(".h") for f in files_a)
    assert {"digits-train.mlir", "qdq-cmsisnn.mlir", "digits_net.c", "qdq_net.c"} <= set(files_a)
    for name in files_a:
        ta, tb = (a / name).read_bytes(), (b / name).read_bytes()
        if ta != tb:
            diff = difflib.unified_diff(ta.decode().splitlines(), tb.decode().splitlines(), "PYTHONHASHSEED=1",
                                        "PYTHONHASHSEED=4242", lineterm="", n=1)
            raise AssertionError(f"{name} differs between processes:\n" + "\n".join(list(diff)[:40]))


def test_printed_ir_round_trips_to_the_same_text(tmp_path):
    """Printing, parsing and printing again is a fixed point (what makes the bytes stable)."""
    from tinymlir.frontend.onnx_importer import import_onnx
    from tinymlir.tools.opt import available_passes, build_pipeline, make_full_context, parse_mlir

    module = import_onnx(qdq_cnn_bytes())
    build_pipeline(available_passes(), f"fuse-qdq,{CMSISNN}").apply(make_full_context(), module)
    text = str(module)
    assert str(parse_mlir(make_full_context(), text, "x.mlir")) == text


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    produce(Path(sys.argv[1]))
