"""Fuzz `tinymlir-opt` and `tinymlir-run` with mutated ONNX, mutated IR and random pipelines.

    python -m tinymlir.tools.fuzz --target onnx --count 10000 --seed 1
    python -m tinymlir.tools.fuzz --target all --count 300 --seed 7 --time-limit 120
    python -m tinymlir.tools.fuzz --target ir --seed 1 --index 4711 --save-failures out/fuzz  # one input

Targets:

  onnx      the bundled digits CNN (random weights, so nothing is trained), the shared
            models (`TINYMLIR_MODELS`, when present) and random small valid graphs (float or
            int8 QDQ/QOperator), mutated at the protobuf level (dims, element types,
            attributes, initializers, dropped/duplicated/reordered nodes, renamed values,
            op types, opsets) and/or the byte level (flips, inserts, deletes, truncation),
            then imported and run through a pipeline that fits the model kind.
  ir        the printed IR of the digits CNN at every level (nn, fold-batch-norm, int8 quant,
            NHWC cmsisnn, float and int8 training) and of an int8 QDQ graph, mutated at the
            line and token level (delete/duplicate/swap lines, numbers, types, shapes, value
            names, op names, attribute names, stray characters, truncation), then parsed,
            verified and run through a pipeline for its level (some through `tinymlir-run`).
  pipeline  random pass pipelines over every tinymlir pass plus canonicalize/cse/dce, with
            random option strings (valid, out of range, wrong type, unknown option, bad
            paths, malformed syntax), applied to those IR levels.

The oracle: every input ends in success (exit 0) or in ONE line on stderr,
`<tool>: error: ...`, with exit code 1. A traceback, an internal error (exit 2), more than
one line, or running past the per-input timeout is a failure. Messages that merely wrap
a Python exception of the frontend (`... TypeError: ...`) are counted as "masked" (a
bug hidden behind a one-line message); `--strict` makes them failures.

Every input is derived from (seed, target, index) alone, so `--index I` replays input I
of a run. The tools run in-process (their `main(argv)` with stdout/stderr captured and a
SIGALRM timeout); `--subprocess N` also runs N of the inputs through a real
`python -m tinymlir.tools.opt` and checks that it agrees. `--memory-limit` caps the heap
so that an input asking for a huge allocation fails at once. The summary line of a target:

    onnx: 10000 inputs in 412.3 s (24.3/s): 0 failed, 0 masked, 7371 rejected, 2629 accepted

Exit code: 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = ("onnx", "ir", "pipeline")
DEFAULT_TIMEOUT = 30.0

# Python exceptions that, inside a one-line message, say "a bug was caught and wrapped".
_MASKED = re.compile(
    r"\b(TypeError|IndexError|KeyError|AttributeError|AssertionError|ZeroDivisionError|"
    r"UnboundLocalError|NameError|RecursionError|MemoryError|NotImplementedError|StopIteration)\b"
)


# ============================================================================ running a tool
class _Timeout(BaseException):
    """Raised by SIGALRM inside a tool that runs too long (BaseException: not swallowed)."""


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


def _tool_main(prog: str) -> Callable[[Sequence[str]], int]:
    if prog == "tinymlir-opt":
        from tinymlir.tools.opt import main
    elif prog == "tinymlir-run":
        from tinymlir.tools.run import main
    else:  # pragma: no cover
        raise ValueError(prog)
    return main


def run_in_process(prog: str, argv: Sequence[str], timeout: float | None = DEFAULT_TIMEOUT) -> Outcome:
    """Call the tool's `main(argv)` with stdout/stderr captured; a SIGALRM timeout when
    running in the main thread."""
    main = _tool_main(prog)
    out, err = io.StringIO(), io.StringIO()
    fired = [False]
    use_alarm = bool(timeout) and threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")

    def on_alarm(signum: int, frame: Any) -> None:
        fired[0] = True
        raise _Timeout()

    old_handler = signal.signal(signal.SIGALRM, on_alarm) if use_alarm else None
    old_debug = os.environ.pop("TINYMLIR_DEBUG", None)
    t0 = time.perf_counter()
    code: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, float(timeout))
            try:
                code = main(list(argv))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except _Timeout:
                code = None
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:  # fired between the try above and disarming the timer
        code = None
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, old_handler)
        if old_debug is not None:
            os.environ["TINYMLIR_DEBUG"] = old_debug
    return Outcome(code, out.getvalue(), err.getvalue(), time.perf_counter() - t0, fired[0])


_MODULES = {"tinymlir-opt": "tinymlir.tools.opt", "tinymlir-run": "tinymlir.tools.run"}


def run_subprocess(prog: str, argv: Sequence[str], timeout: float | None = DEFAULT_TIMEOUT, cwd: str | None = None) -> Outcome:
    """Run the tool as `python -m ...` (what a user sees)."""
    env = {k: v for k, v in os.environ.items() if k != "TINYMLIR_DEBUG"}
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", _MODULES[prog], *argv], capture_output=True, text=True,
                           timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired as e:
        def text(b: Any) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        return Outcome(None, text(e.stdout), text(e.stderr), time.perf_counter() - t0, True)
    return Outcome(r.returncode, r.stdout, r.stderr, time.perf_counter() - t0)


# Reports that a pass prints on stderr when asked to (an option such as `stats=true`):
# not diagnostics, so they do not count against the one-line rule.
REPORT_PREFIXES = ("prune-backward: ",)


def verdict(prog: str, o: Outcome, strict: bool = False) -> tuple[str, str | None]:
    """('ok' | 'rejected' | 'masked' | 'failed', reason). 'ok' = exit 0; 'rejected' = a
    proper one-line error; 'masked' = a one-line error that wraps a Python exception."""
    if o.timed_out or o.code is None:
        return "failed", f"timeout after {o.seconds:.1f} s"
    if "Traceback (most recent call last)" in o.stderr or "Traceback (most recent call last)" in o.stdout:
        return "failed", "traceback"
    lines = [ln for ln in o.stderr.splitlines() if not ln.startswith(REPORT_PREFIXES)]
    if o.code == 0:
        return "ok", None
    if o.code == 2:
        return "failed", "internal error (exit 2)"
    if o.code != 1:
        return "failed", f"exit code {o.code}"
    if len(lines) != 1:
        return "failed", f"{len(lines)} lines on stderr"
    if not lines[0].startswith(f"{prog}: error: "):
        return "failed", "stderr does not start with the tool's error prefix"
    if _MASKED.search(lines[0]):
        return ("failed" if strict else "masked"), "wrapped Python exception"
    return "rejected", None


def signature(prog: str, o: Outcome, reason: str | None) -> str:
    """A short key that groups failures with one cause."""
    text = o.stderr.strip().splitlines()[-1] if o.stderr.strip() else (reason or "")
    text = text.replace(f"{prog}: internal error: ", "").replace(f"{prog}: error: ", "")
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"-?\d+(\.\d+)?(e[+-]?\d+)?", "N", text)
    text = re.sub(r"[%@][\w.$-]+", "%v", text)
    return f"{reason}: {text[:160]}"


# ============================================================================ a known xDSL hang
# xDSL 0.74's lexer matches a string literal with the regex in `MLIRLexer.
# _unescaped_characters_regex`, whose `[^"...]+` inside `(...)*` backtracks exponentially when
# the closing quote is missing: a line holding `"` and ~30 more characters never finishes.
# The same regex with possessive quantifiers (Python >= 3.11) accepts the same strings and
# never backtracks.
from tinymlir.tools.opt import SAFE_STRING_REGEX as _SAFE_STRING_REGEX  # noqa: E402 (installed by tinymlir-opt)


def xdsl_lexer_is_exponential() -> bool:
    """True while the lexer that tinymlir-opt uses still has xDSL 0.74's regex."""
    import importlib

    from xdsl.utils.mlir_lexer import MLIRLexer

    importlib.import_module("tinymlir.tools.opt")  # where a fix would be installed

    return "]+|" in MLIRLexer._unescaped_characters_regex.pattern


def patch_xdsl_lexer() -> None:
    """Give xDSL's lexer the linear string-literal regex (what tinymlir-opt should do)."""
    from xdsl.utils.mlir_lexer import MLIRLexer

    MLIRLexer._unescaped_characters_regex = re.compile(_SAFE_STRING_REGEX)


# ============================================================================ seeds
def digits_model_bytes(seed: int = 0) -> bytes:
    """The bundled digits CNN with seeded random weights (no training: fast, deterministic)."""
    from tinymlir.examples.digits import export_onnx, init_params

    params = init_params(np.random.default_rng(seed))
    c = params["conv1.weight"].shape[0]
    params["bn1.mean"] = np.linspace(-0.1, 0.1, c).astype(np.float32)
    params["bn1.var"] = np.linspace(0.5, 1.5, c).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        return export_onnx(params, Path(d) / "digits.onnx").read_bytes()


def shared_model_paths() -> list[Path]:
    default = Path(__file__).resolve().parents[2].parent / "shared" / "models"
    d = Path(os.environ.get("TINYMLIR_MODELS", default))
    return sorted(d.glob("*.onnx")) if d.is_dir() else []


@dataclass
class IRSeed:
    name: str
    text: str
    pipelines: list[str]  # follow-up pipelines that fit this level ("" = parse/verify/print only)
    input_shape: tuple[int, ...] | None  # of @forward's argument, for tinymlir-run
    input_dtype: str = "float32"


class Corpus:
    """The seed inputs, built once in `workdir`."""

    def __init__(self, workdir: Path, use_shared: bool = True):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.digits = digits_model_bytes()
        self.digits_calib = self.dir / "digits_calib.npy"
        np.save(self.digits_calib, np.random.default_rng(0).uniform(-1, 1, (3, 1, 16, 16)).astype(np.float32))
        self.shared = shared_model_paths() if use_shared else []
        self._shared_protos: dict[Path, Any] = {}
        self._ir: list[IRSeed] | None = None
        self.scheme = self.dir / "good.scheme"
        self.scheme.write_text("# fuzz\nbias last 2\nweights 3:0.5 4:1\n")
        self.bad_scheme = self.dir / "bad.scheme"
        self.bad_scheme.write_text("bias last x\nweights 1:7 1:0.5\n")
        self.not_npy = self.dir / "not_npy.npy"
        self.not_npy.write_bytes(b"\x93NUMPY garbage")
        self.int_npy = self.dir / "int.npy"
        np.save(self.int_npy, np.ones((2, 1, 16, 16), np.int32))
        self.nan_npy = self.dir / "nan.npy"
        np.save(self.nan_npy, np.full((2, 1, 16, 16), np.nan, np.float32))
        self.empty_npy = self.dir / "empty.npy"
        np.save(self.empty_npy, np.zeros((0, 1, 16, 16), np.float32))
        self.npz = self.dir / "arch.npz"
        np.savez(self.npz, a=np.zeros(3))

    def shared_proto(self, path: Path):
        import onnx

        if path not in self._shared_protos:
            self._shared_protos[path] = onnx.load_model_from_string(path.read_bytes())
        return self._shared_protos[path]

    @property
    def ir_seeds(self) -> list[IRSeed]:
        if self._ir is None:
            self._ir = self._make_ir_seeds()
        return self._ir

    def _make_ir_seeds(self) -> list[IRSeed]:
        onnx_path = self.dir / "digits.onnx"
        onnx_path.write_bytes(self.digits)
        calib = f'calibration="{self.digits_calib}"'
        ptq = f"fold-batch-norm,quantize-ptq{{{calib}}}"
        levels = [
            ("digits-nn", "", ["", "fold-batch-norm", "fold-batch-norm,fold-constants", ptq, "canonicalize,cse"]),
            ("digits-folded", "fold-batch-norm", ["", f"quantize-ptq{{{calib}}}", "autodiff{num-classes=10}", "fold-constants"]),
            ("digits-int8", ptq, ["", "convert-layout,convert-quant-to-cmsisnn", "autodiff{num-classes=10},qas",
                                  "autodiff{num-classes=10 optimizer=adam},sparse-update{bias-last=2},prune-backward"]),
            ("digits-cmsisnn", f"{ptq},convert-layout,convert-quant-to-cmsisnn", ["", "canonicalize,cse,dce"]),
            ("digits-train-f32", "fold-batch-norm,autodiff{num-classes=10}", ["", "prune-backward", "reorder-update",
                                                                                "sparse-update{bias-last=1}"]),
            ("digits-train-int8", f"{ptq},autodiff{{num-classes=10}},qas", ["", "sparse-update{bias-last=2},prune-backward",
                                                                            "reorder-update", "prune-backward{stats=true}"]),
        ]
        seeds = []
        for name, pipe, follow in levels:
            argv = [str(onnx_path)] + (["-p", pipe] if pipe else [])
            o = run_in_process("tinymlir-opt", argv, timeout=None)
            if o.code != 0:
                raise RuntimeError(f"cannot build IR seed {name}: {o.stderr.strip()}")
            seeds.append(IRSeed(name, o.stdout, follow, (1, 1, 16, 16)))
        # An int8 QDQ graph: fuse-qdq's input.
        qdq = random_graph(random.Random(3), qdq=True)
        qdq_path = self.dir / "qdq.onnx"
        qdq_path.write_bytes(qdq.model.SerializeToString())
        o = run_in_process("tinymlir-opt", [str(qdq_path)], timeout=None)
        if o.code == 0:
            seeds.append(IRSeed("qdq", o.stdout, ["", "fuse-qdq", "fuse-qdq,convert-layout,convert-quant-to-cmsisnn"],
                                qdq.input_shape))
        return seeds


# ============================================================================ random ONNX graphs
@dataclass
class Graph:
    model: Any  # onnx.ModelProto
    input_shape: tuple[int, ...]
    qdq: bool
    num_classes: int | None


class _GraphBuilder:
    def __init__(self, rng: random.Random, qdq: bool, qoperator: bool):
        self.rng, self.qdq, self.qoperator = rng, qdq, qoperator
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0
        self.nprng = np.random.default_rng(rng.randrange(2**32))

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, base: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = self.name(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op.lower()), domain=domain, **attrs))
        return out

    def weights(self, shape: Sequence[int]) -> np.ndarray:
        return self.nprng.uniform(-0.5, 0.5, shape).astype(np.float32)

    # -- quantization helpers (int8 QDQ) -----------------------------------------------
    def act_q(self) -> tuple[str, str, float]:
        s = float(np.float32(self.rng.choice([0.01, 0.02, 0.05, 0.1, 0.0039])))
        zp = self.rng.randint(-20, 20)
        return self.init("s", np.array(s, np.float32)), self.init("zp", np.array(zp, np.int8)), s

    def quantize(self, x: str) -> tuple[str, float]:
        s, zp, sv = self.act_q()
        q = self.node("QuantizeLinear", [x, s, zp], "q")
        self._qparams[q] = (s, zp, sv)
        return q, sv

    def dequantize(self, q: str) -> str:
        s, zp, _ = self._qparams[q]
        return self.node("DequantizeLinear", [q, s, zp], "dq")

    def q_weight(self, w: np.ndarray) -> tuple[str, np.ndarray]:
        """Per-output-channel symmetric int8 weight, dequantized."""
        ws = (np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127 + 1e-6).astype(np.float32)
        wq = np.clip(np.rint(w / ws.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127).astype(np.int8)
        wq_n = self.init("wq", wq)
        dq = self.node("DequantizeLinear", [wq_n, self.init("ws", ws), self.init("wzp", np.zeros(w.shape[0], np.int8))],
                       "wdq", axis=0)
        return dq, ws

    def q_bias(self, b: np.ndarray, xs: float, ws: np.ndarray) -> str:
        bs = (np.float32(xs) * ws).astype(np.float32)
        bq = np.rint(b / bs).astype(np.int32)
        return self.node("DequantizeLinear", [self.init("bq", bq), self.init("bs", bs),
                                              self.init("bzp", np.zeros(b.shape[0], np.int32))], "bdq", axis=0)

    _qparams: dict[str, tuple[str, str, float]]

    def build(self) -> Graph:
        from onnx import TensorProto, helper

        rng = self.rng
        self._qparams = {}
        c, h = rng.randint(1, 4), rng.randint(4, 10)
        w = h if rng.random() < 0.7 else rng.randint(4, 10)
        shape: list[int] = [1, c, h, w]
        in_shape = tuple(shape)
        cur = "input"
        scale = 1.0
        if self.qdq:
            cur, scale = self.quantize(cur)  # cur is a quantized tensor from here on
        for _ in range(rng.randint(1, 6)):
            if len(shape) == 4:
                kind = rng.choice(["conv", "conv", "dwconv", "relu", "clip", "maxpool", "avgpool", "add", "mul",
                                   "pad", "concat", "transpose", "bn", "gap", "flatten"])
            else:
                kind = rng.choice(["gemm", "relu", "softmax", "add", "reshape", "matmul"])
            cur, shape, scale = self.layer(kind, cur, shape, scale)
        if len(shape) == 4 and rng.random() < 0.7:
            cur, shape, scale = self.layer("gap", cur, shape, scale)
            cur, shape, scale = self.layer("flatten", cur, shape, scale)
            cur, shape, scale = self.layer("gemm", cur, shape, scale)
        if self.qdq:
            cur = self.dequantize(cur)
        out = self.node("Identity", [cur], "output")
        graph = helper.make_graph(self.nodes, "fuzz", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)], initializer=self.inits)
        opset = rng.choice([13, 17, 19, 21])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8,
                                  producer_name="tinymlir.tools.fuzz")
        if self.qoperator:
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return Graph(model, in_shape, self.qdq, shape[1] if len(shape) == 2 else None)

    def layer(self, kind: str, cur: str, shape: list[int], scale: float) -> tuple[str, list[int], float]:
        """Append one layer; in QDQ mode `cur` is quantized before and after."""
        rng = self.rng
        q = self.qdq
        if kind in ("maxpool", "flatten", "reshape", "transpose", "pad", "concat") and q:
            # data movement on the quantized tensor
            return self.movement(kind, cur, shape), self.movement_shape(kind, shape), scale
        x = self.dequantize(cur) if q else cur
        if kind in ("conv", "dwconv"):
            cin = shape[1]
            k = rng.choice([1, 3]) if shape[2] >= 3 and shape[3] >= 3 else 1
            s = rng.choice([1, 1, 2])
            p = k // 2 if rng.random() < 0.8 else 0
            groups = cin if kind == "dwconv" else 1
            cout = cin * rng.choice([1, 2]) if kind == "dwconv" else rng.randint(1, 8)
            wt = self.weights([cout, cin // groups, k, k])
            bias = self.weights([cout]) if rng.random() < 0.8 else None
            oh = (shape[2] + 2 * p - k) // s + 1
            ow = (shape[3] + 2 * p - k) // s + 1
            attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=groups)
            if q and self.qoperator and bias is not None and rng.random() < 0.5:
                return self.qlinear_conv(cur, wt, bias, attrs, [1, cout, oh, ow], scale)
            if q:
                wn, ws = self.q_weight(wt)
                ins = [x, wn] + ([self.q_bias(bias, scale, ws)] if bias is not None else [])
            else:
                ins = [x, self.init("w", wt)] + ([self.init("b", bias)] if bias is not None else [])
            y = self.node("Conv", ins, "conv", **attrs)
            y = self.maybe_act(y)
            shape = [1, cout, oh, ow]
        elif kind == "relu":
            y = self.node("Relu", [x], "relu")
        elif kind == "clip":
            lo, hi = rng.choice([(0.0, 6.0), (-1.0, 1.0), (0.5, 3.0)])
            y = self.node("Clip", [x, self.init("lo", np.array(lo, np.float32)), self.init("hi", np.array(hi, np.float32))], "clip")
        elif kind == "softmax":
            y = self.node("Softmax", [x], "softmax", axis=-1)
        elif kind == "bn":
            cn = shape[1]
            y = self.node("BatchNormalization", [x, self.init("g", self.weights([cn]) + 1), self.init("beta", self.weights([cn])),
                                                 self.init("mean", self.weights([cn])),
                                                 self.init("var", np.abs(self.weights([cn])) + 0.5)], "bn", epsilon=1e-5)
        elif kind in ("avgpool",):
            k = 2 if shape[2] >= 2 and shape[3] >= 2 else 1
            y = self.node("AveragePool", [x], "avgpool", kernel_shape=[k, k], strides=[k, k])
            shape = [shape[0], shape[1], (shape[2] - k) // k + 1, (shape[3] - k) // k + 1]
        elif kind == "maxpool":
            return self.movement(kind, x, shape), self.movement_shape(kind, shape), scale
        elif kind in ("flatten", "reshape", "transpose", "pad", "concat"):
            y, shape = self.movement(kind, x, shape), self.movement_shape(kind, shape)
        elif kind == "gap":
            y = self.node("GlobalAveragePool", [x], "gap")
            shape = [shape[0], shape[1], 1, 1]
        elif kind == "add":
            if q or rng.random() < 0.5:
                y = self.node("Add", [x, x], "add")
            else:
                b = self.weights([shape[1]] + [1] * (len(shape) - 2)) if len(shape) == 4 else self.weights([shape[-1]])
                y = self.node("Add", [x, self.init("c", b)], "add")
        elif kind == "mul":
            y = self.node("Mul", [x, self.init("m", np.array(rng.choice([0.5, 2.0]), np.float32))], "mul")
        elif kind in ("gemm", "matmul"):
            k_in = shape[1]
            n_out = rng.randint(2, 10)
            wt = self.weights([n_out, k_in])
            bias = self.weights([n_out])
            if q:
                wn, ws = self.q_weight(wt)
                y = self.node("Gemm", [x, wn, self.q_bias(bias, scale, ws)], "gemm", transB=1)
            elif kind == "matmul":
                y = self.node("MatMul", [x, self.init("w", wt.T.copy())], "matmul")
            else:
                y = self.node("Gemm", [x, self.init("w", wt), self.init("b", bias)], "gemm", transB=1)
            y = self.maybe_act(y)
            shape = [shape[0], n_out]
        else:  # pragma: no cover
            raise ValueError(kind)
        if q:
            y, scale = self.quantize(y)
        return y, shape, scale

    def maybe_act(self, y: str) -> str:
        r = self.rng.random()
        if r < 0.3:
            return self.node("Relu", [y], "relu")
        if r < 0.45:
            return self.node("Clip", [y, self.init("lo", np.array(0, np.float32)), self.init("hi", np.array(6, np.float32))], "relu6")
        return y

    def qlinear_conv(self, xq: str, wt: np.ndarray, bias: np.ndarray, attrs: dict, out_shape: list[int],
                     xs: float) -> tuple[str, list[int], float]:
        s_x, zp_x, _ = self._qparams[xq]
        ws = (np.abs(wt).reshape(wt.shape[0], -1).max(axis=1) / 127 + 1e-6).astype(np.float32)
        wq = np.clip(np.rint(wt / ws[:, None, None, None]), -127, 127).astype(np.int8)
        bq = np.rint(bias / (np.float32(xs) * ws)).astype(np.int32)
        s_y, zp_y, sv = self.act_q()
        y = self.node("QLinearConv", [xq, s_x, zp_x, self.init("wq", wq), self.init("ws", ws),
                                      self.init("wzp", np.zeros(wt.shape[0], np.int8)), s_y, zp_y, self.init("bq", bq)],
                      "qconv", **attrs)
        self._qparams[y] = (s_y, zp_y, sv)
        return y, out_shape, sv

    def movement_shape(self, kind: str, shape: list[int]) -> list[int]:
        if kind == "maxpool":
            k = 2 if shape[2] >= 2 and shape[3] >= 2 else 1
            return [shape[0], shape[1], (shape[2] - k) // k + 1, (shape[3] - k) // k + 1]
        if kind == "flatten":
            return [shape[0], int(np.prod(shape[1:]))]
        if kind == "reshape":
            return list(shape)
        if kind == "transpose":
            return list(shape)  # transposed there and back
        if kind == "pad":
            return [shape[0], shape[1], shape[2] + 2, shape[3] + 2]
        if kind == "concat":
            return [shape[0], shape[1] * 2] + shape[2:]
        raise ValueError(kind)  # pragma: no cover

    def movement(self, kind: str, x: str, shape: list[int]) -> str:
        new = self.movement_shape(kind, shape)
        if kind == "maxpool":
            k = 2 if shape[2] >= 2 and shape[3] >= 2 else 1
            y = self.node("MaxPool", [x], "maxpool", kernel_shape=[k, k], strides=[k, k])
        elif kind == "flatten":
            y = self.node("Flatten", [x], "flatten", axis=1)
        elif kind == "reshape":
            y = self.node("Reshape", [x, self.init("shape", np.array(new, np.int64))], "reshape")
        elif kind == "transpose":
            perm = list(range(len(shape)))
            self.rng.shuffle(perm)
            inv = [perm.index(i) for i in range(len(perm))]
            y = self.node("Transpose", [self.node("Transpose", [x], "tr", perm=perm)], "tr", perm=inv)
        elif kind == "pad":
            z = self._qparams[x][1] if x in self._qparams else None
            ins = [x, self.init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))] + ([z] if z else [])
            y = self.node("Pad", ins, "pad")
            if x in self._qparams:
                self._qparams[y] = self._qparams[x]
            return y
        elif kind == "concat":
            y = self.node("Concat", [x, x], "concat", axis=1)
        else:  # pragma: no cover
            raise ValueError(kind)
        if x in self._qparams:
            self._qparams[y] = self._qparams[x]
        return y


def random_graph(rng: random.Random, qdq: bool | None = None) -> Graph:
    """A random small valid CNN: float, or int8 QDQ (some layers as QOperator QLinearConv)."""
    if qdq is None:
        qdq = rng.random() < 0.5
    return _GraphBuilder(rng, qdq, qoperator=qdq and rng.random() < 0.4).build()


# ============================================================================ ONNX mutators
_INTERESTING_INTS = [0, 1, -1, 2, 3, 7, 16, 127, 128, 255, -128, 2**31 - 1, -(2**31), 2**40, -(2**40), 10**6]
_INTERESTING_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, 1e30, 3.4e38, -3.4e38, float("nan"), float("inf"), float("-inf")]
_ATTR_VOCAB: dict[str, Callable[[random.Random], Any]] = {
    "kernel_shape": lambda r: [r.choice(_INTERESTING_INTS[:8]) for _ in range(r.choice([1, 2, 2, 3]))],
    "strides": lambda r: [r.choice([0, 1, 2, 3, -1]) for _ in range(r.choice([1, 2, 2, 3]))],
    "pads": lambda r: [r.choice([0, 1, 2, -1, 100]) for _ in range(r.choice([2, 4, 4, 6]))],
    "dilations": lambda r: [r.choice([0, 1, 2, -1]) for _ in range(r.choice([1, 2, 2]))],
    "group": lambda r: r.choice(_INTERESTING_INTS[:8]),
    "axis": lambda r: r.choice([-5, -2, -1, 0, 1, 2, 3, 4, 10]),
    "perm": lambda r: r.sample(range(4), 4) if r.random() < 0.5 else [r.choice([0, 1, 2, 5, -1]) for _ in range(r.randint(0, 5))],
    "auto_pad": lambda r: r.choice([b"NOTSET", b"VALID", b"SAME_UPPER", b"SAME_LOWER", b"BOGUS", b""]),
    "ceil_mode": lambda r: r.choice([0, 1, 2]),
    "transA": lambda r: r.choice([0, 1]),
    "transB": lambda r: r.choice([0, 1]),
    "alpha": lambda r: r.choice(_INTERESTING_FLOATS),
    "beta": lambda r: r.choice(_INTERESTING_FLOATS),
    "epsilon": lambda r: r.choice(_INTERESTING_FLOATS),
    "allowzero": lambda r: r.choice([0, 1]),
    "mode": lambda r: r.choice([b"constant", b"reflect", b"edge", b"wrap", b"x"]),
    "block_size": lambda r: r.choice([0, 1, 2, -1]),
    "output_dtype": lambda r: r.choice([0, 1, 2, 3, 5, 6, 7, 17, 99]),
    "training_mode": lambda r: r.choice([0, 1]),
    "count_include_pad": lambda r: r.choice([0, 1]),
    "channels_last": lambda r: r.choice([0, 1]),
    "saturate": lambda r: r.choice([0, 1]),
    "value_float": lambda r: r.choice(_INTERESTING_FLOATS),
    "bogus": lambda r: r.choice([1, 1.5, b"s", [1, 2]]),
}
_SUPPORTED_OPS = ["Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Softmax", "BatchNormalization",
                  "GlobalAveragePool", "AveragePool", "MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose",
                  "Concat", "Pad", "Identity", "Dropout", "QuantizeLinear", "DequantizeLinear", "QLinearConv",
                  "QLinearMatMul", "ConvInteger", "MatMulInteger", "Constant", "QLinearAdd", "QLinearGlobalAveragePool",
                  "Sigmoid", "LeakyRelu", "Resize", "NoSuchOp"]


def _all_value_infos(g: Any) -> list[Any]:
    return list(g.input) + list(g.output) + list(g.value_info)


def _all_names(g: Any) -> list[str]:
    names = {vi.name for vi in g.input} | {vi.name for vi in g.output} | {i.name for i in g.initializer}
    for n in g.node:
        names.update(n.input)
        names.update(n.output)
    return sorted(x for x in names if x)


def _m_dim(r: random.Random, m: Any) -> str:
    vis = [vi for vi in _all_value_infos(m.graph) if vi.type.HasField("tensor_type")]
    if not vis:
        return "dim: none"
    vi = r.choice(vis)
    shp = vi.type.tensor_type.shape
    choice = r.random()
    if not shp.dim or choice < 0.15:
        shp.dim.add().dim_value = r.choice([1, 2, 16])
    elif choice < 0.25:
        del shp.dim[r.randrange(len(shp.dim))]
    elif choice < 0.35:
        shp.dim[r.randrange(len(shp.dim))].dim_param = r.choice(["N", "batch", ""])
    elif choice < 0.4:
        vi.type.tensor_type.ClearField("shape")
    else:
        d = shp.dim[r.randrange(len(shp.dim))]
        v = r.choice([0, 1, 2, 3, 5, 8, 15, 17, 32, -1, -7, 2**31, 10**12])
        d.dim_value = v
    return f"dim of {vi.name}"


def _m_elem_type(r: random.Random, m: Any) -> str:
    vis = [vi for vi in _all_value_infos(m.graph) if vi.type.HasField("tensor_type")]
    if r.random() < 0.4 and m.graph.initializer:
        init = r.choice(list(m.graph.initializer))
        init.data_type = r.choice([0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 16, 17, 22, 99])
        return f"data_type of initializer {init.name}"
    if not vis:
        return "elem_type: none"
    vi = r.choice(vis)
    vi.type.tensor_type.elem_type = r.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 22, 99])
    return f"elem_type of {vi.name}"


def _m_init_dims(r: random.Random, m: Any) -> str:
    if not m.graph.initializer:
        return "init dims: none"
    init = r.choice(list(m.graph.initializer))
    c = r.random()
    if c < 0.3 or not init.dims:
        init.dims.append(r.choice([1, 2, 0]))
    elif c < 0.6:
        del init.dims[r.randrange(len(init.dims))]
    else:
        init.dims[r.randrange(len(init.dims))] = r.choice([0, 1, 2, 3, -1, 2**33])
    return f"dims of initializer {init.name}"


def _m_init_values(r: random.Random, m: Any) -> str:
    from onnx import numpy_helper

    if not m.graph.initializer:
        return "init values: none"
    idx = r.randrange(len(m.graph.initializer))
    init = m.graph.initializer[idx]
    try:
        arr = numpy_helper.to_array(init).copy()
    except Exception:
        return "init values: unreadable"
    if arr.size == 0:
        return "init values: empty"
    flat = arr.reshape(-1)
    c = r.random()
    if arr.dtype.kind == "f":
        v = r.choice(_INTERESTING_FLOATS)
        if c < 0.5:
            flat[r.randrange(flat.size)] = v
        else:
            flat[:] = v
    elif arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        v = r.choice([0, 1, -1, info.min, info.max, 2, 100])
        v = int(np.clip(v, info.min, info.max))
        if c < 0.5:
            flat[r.randrange(flat.size)] = v
        else:
            flat[:] = v
    elif c < 0.8:
        arr = arr.astype(np.float64)
    new = numpy_helper.from_array(arr.reshape(arr.shape) if c >= 0.8 else flat.reshape(arr.shape), init.name)
    if r.random() < 0.1:  # change the dtype, keeping the values
        new = numpy_helper.from_array(np.asarray(arr).astype(r.choice([np.float64, np.int64, np.int8, np.uint8, np.float16])),
                                      init.name)
    if r.random() < 0.1:  # change the shape, keeping the values
        new = numpy_helper.from_array(np.asarray(arr).reshape(-1), init.name)
    m.graph.initializer[idx].CopyFrom(new)
    return f"values of initializer {init.name}"


def _set_attr(r: random.Random, attr: Any, name: str) -> None:
    from onnx import helper

    from onnx import AttributeProto

    value = _ATTR_VOCAB.get(name, _ATTR_VOCAB["bogus"])(r)
    if isinstance(value, list) and not value:
        attr.CopyFrom(helper.make_attribute(name, value, attr_type=AttributeProto.INTS))
    else:
        attr.CopyFrom(helper.make_attribute(name, value))


def _m_attr(r: random.Random, m: Any) -> str:
    nodes = list(m.graph.node)
    if not nodes:
        return "attr: no nodes"
    node = r.choice(nodes)
    c = r.random()
    if node.attribute and c < 0.55:
        a = r.choice(list(node.attribute))
        if r.random() < 0.5 and (a.ints or a.type == a.INTS):
            ints = list(a.ints)
            op = r.random()
            if ints and op < 0.5:
                ints[r.randrange(len(ints))] = r.choice(_INTERESTING_INTS)
            elif ints and op < 0.75:
                del ints[r.randrange(len(ints))]
            else:
                ints.append(r.choice(_INTERESTING_INTS))
            del a.ints[:]
            a.ints.extend(int(np.clip(i, -(2**63), 2**63 - 1)) for i in ints)
        elif a.type == a.INT and r.random() < 0.5:
            a.i = r.choice(_INTERESTING_INTS)
        elif a.type == a.FLOAT and r.random() < 0.5:
            a.f = r.choice(_INTERESTING_FLOATS)
        else:
            _set_attr(r, a, a.name)
        return f"attribute {a.name} of {node.op_type}"
    if node.attribute and c < 0.75:
        a = node.attribute[r.randrange(len(node.attribute))]
        name = a.name
        node.attribute.remove(a)
        return f"dropped attribute {name} of {node.op_type}"
    known = _schema_attributes(node.op_type, node.domain)
    have = {a.name for a in node.attribute}
    candidates = [n for n in known if n not in have] if known and r.random() < 0.85 else list(_ATTR_VOCAB)
    name = r.choice(candidates or list(_ATTR_VOCAB))
    a = node.attribute.add()
    _set_attr(r, a, name)
    return f"added attribute {name} to {node.op_type}"


def _schema_attributes(op_type: str, domain: str) -> list[str]:
    """The attribute names ONNX's schema of the op allows (so the checker lets them through)."""
    import onnx

    try:
        return sorted(onnx.defs.get_schema(op_type, domain=domain).attributes)
    except Exception:
        return []


def _m_nodes(r: random.Random, m: Any) -> str:
    g = m.graph
    if not g.node:
        return "nodes: none"
    c = r.random()
    i = r.randrange(len(g.node))
    if c < 0.35:
        op = g.node[i].op_type
        del g.node[i]
        return f"dropped node {i} ({op})"
    if c < 0.6:
        g.node.insert(r.randrange(len(g.node) + 1), _copy(g.node[i]))
        return f"duplicated node {i}"
    if c < 0.8 and len(g.node) > 1:
        j = r.randrange(len(g.node))
        a, b = _copy(g.node[i]), _copy(g.node[j])
        g.node[i].CopyFrom(b)
        g.node[j].CopyFrom(a)
        return f"swapped nodes {i} and {j}"
    node = g.node[i]
    if r.random() < 0.8:
        node.op_type = r.choice(_SUPPORTED_OPS)
    else:
        node.domain = r.choice(["", "ai.onnx", "com.microsoft", "bogus.domain"])
    return f"op type/domain of node {i}"


def _copy(proto: Any) -> Any:
    new = type(proto)()
    new.CopyFrom(proto)
    return new


def _m_inits(r: random.Random, m: Any) -> str:
    g = m.graph
    if not g.initializer:
        return "inits: none"
    i = r.randrange(len(g.initializer))
    if r.random() < 0.5:
        name = g.initializer[i].name
        del g.initializer[i]
        return f"dropped initializer {name}"
    g.initializer.append(_copy(g.initializer[i]))
    if r.random() < 0.5:  # a duplicate name with other contents
        g.initializer[-1].dims.append(1)
    return f"duplicated initializer {g.initializer[i].name}"


def _m_rename(r: random.Random, m: Any) -> str:
    g = m.graph
    names = _all_names(g)
    new = r.choice(names + ["", "fresh_name", "input", "0", "weird name/with:chars", "%x"]) if names else "x"
    c = r.random()
    if c < 0.5 and g.node:
        node = r.choice(list(g.node))
        lst = node.input if (r.random() < 0.6 and node.input) or not node.output else node.output
        if not lst:
            return "rename: empty"
        j = r.randrange(len(lst))
        lst[j] = new
        return f"renamed a value of {node.op_type} to {new!r}"
    if c < 0.7 and g.input:
        r.choice(list(g.input)).name = new
        return "renamed a graph input"
    if c < 0.85 and g.output:
        r.choice(list(g.output)).name = new
        return "renamed a graph output"
    if g.initializer:
        r.choice(list(g.initializer)).name = new
        return "renamed an initializer"
    return "rename: nothing"


def _m_node_inputs(r: random.Random, m: Any) -> str:
    g = m.graph
    if not g.node:
        return "inputs: none"
    node = r.choice(list(g.node))
    names = _all_names(g)
    c = r.random()
    if c < 0.35 and node.input:
        del node.input[r.randrange(len(node.input))]
        return f"dropped an input of {node.op_type}"
    if c < 0.7:
        node.input.append(r.choice(names + [""]))
        return f"added an input to {node.op_type}"
    if c < 0.85:
        node.output.append(r.choice(["extra_out", ""] + names))
        return f"added an output to {node.op_type}"
    if node.output:
        del node.output[r.randrange(len(node.output))]
    return f"dropped an output of {node.op_type}"


def _m_graph_io(r: random.Random, m: Any) -> str:
    from onnx import TensorProto, helper

    g = m.graph
    c = r.random()
    if c < 0.25 and g.input:
        g.input.append(_copy(r.choice(list(g.input))))
        return "duplicated a graph input"
    if c < 0.45 and g.initializer:  # an initializer listed as a graph input too (IR < 4 style)
        init = r.choice(list(g.initializer))
        g.input.append(helper.make_tensor_value_info(init.name, init.data_type or TensorProto.FLOAT, list(init.dims)))
        return "initializer listed as input"
    if c < 0.6 and g.output:
        del g.output[r.randrange(len(g.output))]
        return "dropped a graph output"
    if c < 0.75 and g.input:
        del g.input[r.randrange(len(g.input))]
        return "dropped a graph input"
    names = _all_names(g)
    if names:
        g.output.append(helper.make_tensor_value_info(r.choice(names), r.choice([1, 3, 7]), None))
    return "added a graph output"


def _m_opset(r: random.Random, m: Any) -> str:
    c = r.random()
    if c < 0.5 and m.opset_import:
        m.opset_import[0].version = r.choice([1, 7, 11, 12, 13, 14, 17, 18, 19, 20, 21, 22, 23, 99, 0, -1])
        return "opset version"
    if c < 0.7:
        m.ir_version = r.choice([0, 1, 3, 4, 7, 8, 9, 10, 11, 99])
        return "ir_version"
    if c < 0.85 and m.opset_import:
        del m.opset_import[r.randrange(len(m.opset_import))]
        return "dropped an opset import"
    o = m.opset_import.add()
    o.domain, o.version = r.choice([("com.microsoft", 1), ("", 17), ("ai.onnx.ml", 3), ("bogus", 1)])
    return "added an opset import"


def _m_constant_node(r: random.Random, m: Any) -> str:
    from onnx import helper, numpy_helper

    g = m.graph
    names = _all_names(g)
    arr = np.asarray(r.choice([np.float32(1.5), np.zeros((2, 2), np.float32), np.array([1, 2], np.int64),
                               np.array(7, np.int8), np.array([np.nan], np.float32)]))
    out = r.choice(names + ["const_out"]) if names else "const_out"
    kind = r.random()
    if kind < 0.6:
        node = helper.make_node("Constant", [], [out], value=numpy_helper.from_array(arr))
    elif kind < 0.8:
        node = helper.make_node("Constant", [], [out], value_floats=[1.0, 2.0])
    else:
        node = helper.make_node("Constant", [], [out], value_string="s")
    g.node.insert(r.randrange(len(g.node) + 1), node)
    return "inserted a Constant node"


_PROTO_MUTATORS: list[tuple[Callable[[random.Random, Any], str], float]] = [
    (_m_dim, 2), (_m_elem_type, 1.5), (_m_init_dims, 1), (_m_init_values, 1.5), (_m_attr, 3), (_m_nodes, 2.5),
    (_m_inits, 1), (_m_rename, 2), (_m_node_inputs, 1.5), (_m_graph_io, 1), (_m_opset, 1), (_m_constant_node, 0.7),
]


def mutate_proto(r: random.Random, model: Any, n: int) -> list[str]:
    fns, weights = zip(*_PROTO_MUTATORS)
    return [r.choices(fns, weights)[0](r, model) for _ in range(n)]


def mutate_bytes(r: random.Random, data: bytes, n: int) -> tuple[bytes, list[str]]:
    b = bytearray(data)
    done = []
    for _ in range(n):
        if not b:
            b.extend(r.randbytes(r.randint(1, 8)))
            continue
        c = r.random()
        i = r.randrange(len(b))
        if c < 0.3:
            b[i] ^= 1 << r.randrange(8)
            done.append(f"flip bit at {i}")
        elif c < 0.45:
            b[i] = r.choice([0, 1, 0x7F, 0x80, 0xFF, 0x08, 0x12, 0x1A])
            done.append(f"set byte {i}")
        elif c < 0.6:
            b[i:i] = r.randbytes(r.randint(1, 16))
            done.append(f"insert at {i}")
        elif c < 0.75:
            del b[i:i + r.randint(1, 64)]
            done.append(f"delete at {i}")
        elif c < 0.85:
            j = r.randrange(len(b))
            b[j:j] = b[i:i + r.randint(1, 64)]
            done.append(f"duplicate {i} at {j}")
        else:
            del b[r.randrange(len(b)):]
            done.append("truncate")
    return bytes(b), done


# ============================================================================ IR mutators
_TOKEN = re.compile(r'"[^"\n]*"|%[\w.$-]+|@[\w.$-]+|![\w.]+|0x[0-9A-Fa-f]+|-?\d+\.\d*(?:[eE][+-]?\d+)?|-?\d+'
                    r"|[A-Za-z_][\w.$]*|->|[^\s\w]")
_NUMBER = re.compile(r"(?<![\w%@#!.])-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_SHAPE = re.compile(r"(?<=<)(?:\d+x)+(?=[a-z!])")
_TYPES = ["f32", "f16", "f64", "bf16", "i1", "i8", "i16", "i32", "i64", "ui8", "si8", "index",
          "!quant.uniform<i8:f32, 0.5:-3>", "!quant.uniform<u8:f32, 1.0:300>", "!quant.uniform<i8:f32:1, {0.1:0}>",
          "!quant.uniform<i32:f32, 0.0:0>", "tensor<2xf32>", "none"]
_NUMS = ["0", "1", "-1", "2", "3", "127", "128", "255", "-128", "-129", "2147483647", "-2147483648", "4294967296",
         "99999999999999999999", "0.0", "-0.0", "1.5", "1e39", "-1e39", "1.0e-45", "3.4028235e+38", "0x7FC00000",
         "0x7F800000", "nan", "inf"]


def _op_names() -> list[str]:
    from tinymlir.dialects import get_tinymlir_dialects

    names = ["arith.constant", "func.return", "func.func", "func.call", "builtin.module", "arith.addf"]
    for getter in get_tinymlir_dialects().values():
        names.extend(op.name for op in getter().operations)
    return sorted(set(names))


def mutate_ir(r: random.Random, text: str, n: int, extra: Sequence[str] = ()) -> tuple[str, list[str]]:
    lines = text.splitlines()
    done = []
    for _ in range(n):
        if not lines:
            lines = ["}"]
        c = r.random()
        i = r.randrange(len(lines))
        line = lines[i]
        if c < 0.08:
            del lines[i]
            done.append(f"delete line {i}")
        elif c < 0.14:
            lines.insert(r.randrange(len(lines) + 1), line)
            done.append(f"duplicate line {i}")
        elif c < 0.19:
            j = r.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            done.append(f"swap lines {i},{j}")
        elif c < 0.36:  # a number
            ms = list(_NUMBER.finditer(line))
            if ms:
                mt = r.choice(ms)
                new = r.choice(_NUMS) if r.random() < 0.7 else str(int(float(mt.group()) if "." in mt.group() else int(mt.group())) + r.choice([-1, 1, 2]))
                lines[i] = line[:mt.start()] + new + line[mt.end():]
                done.append(f"number {mt.group()}->{new} line {i}")
        elif c < 0.48:  # a type or a shape
            ms = list(_SHAPE.finditer(line))
            if ms and r.random() < 0.5:
                mt = r.choice(ms)
                dims = mt.group().split("x")[:-1]
                op = r.random()
                if op < 0.4 and dims:
                    dims[r.randrange(len(dims))] = r.choice(["0", "1", "2", "3", "7", "?", "-1", "999999"])
                elif op < 0.7 and dims:
                    del dims[r.randrange(len(dims))]
                else:
                    dims.insert(r.randrange(len(dims) + 1), r.choice(["1", "2"]))
                new = "".join(d + "x" for d in dims)
                lines[i] = line[:mt.start()] + new + line[mt.end():]
                done.append(f"shape line {i}")
            else:
                ms = list(re.finditer(r"\b(f16|f32|f64|bf16|i1|i8|i16|i32|i64|index)\b|!quant\.uniform<[^>]*>", line))
                if ms:
                    mt = r.choice(ms)
                    new = r.choice(_TYPES)
                    lines[i] = line[:mt.start()] + new + line[mt.end():]
                    done.append(f"type line {i}")
        elif c < 0.58:  # a value or symbol name
            ms = list(re.finditer(r"[%@][\w.$-]+", line))
            if ms:
                mt = r.choice(ms)
                pool = re.findall(r"%[\w.$-]+", "\n".join(lines[max(0, i - 20):i + 5])) or ["%0"]
                new = r.choice(pool + ["%undefined", "%0", "@forward", "@nosuch", "%arg0"])
                lines[i] = line[:mt.start()] + new + line[mt.end():]
                done.append(f"name line {i}")
        elif c < 0.66:  # an op name
            ms = list(re.finditer(r"\b(nn|quant|train|cmsisnn|arith|func)\.\w+", line))
            if ms:
                mt = r.choice(ms)
                new = r.choice(_op_names())
                lines[i] = line[:mt.start()] + new + line[mt.end():]
                done.append(f"op {mt.group()}->{new}")
        elif c < 0.72:  # an attribute / property name, or drop an `name = value` entry
            ms = list(re.finditer(r"\b(\w+) = ", line))
            if ms:
                mt = r.choice(ms)
                if r.random() < 0.5:
                    new = r.choice(["strides", "pads", "dilations", "groups", "axis", "min", "max", "act_min", "act_max",
                                    "epsilon", "perm", "kernel", "bogus", "sym_name", "value", "shift", "multiplier"])
                    lines[i] = line[:mt.start(1)] + new + line[mt.end(1):]
                else:
                    end = line.find(",", mt.end())
                    end2 = line.find("}", mt.end())
                    stop = min(x for x in (end, end2) if x >= 0) if max(end, end2) >= 0 else len(line)
                    lines[i] = line[:mt.start()] + line[stop + (1 if stop == end else 0):]
                done.append(f"attr line {i}")
        elif c < 0.84:  # tokens: swap / delete / duplicate
            toks = list(_TOKEN.finditer(line))
            if toks:
                a = r.choice(toks)
                op = r.random()
                if op < 0.35 and len(toks) > 1:
                    b = r.choice(toks)
                    if a.start() > b.start():
                        a, b = b, a
                    if a.end() <= b.start():
                        lines[i] = line[:a.start()] + b.group() + line[a.end():b.start()] + a.group() + line[b.end():]
                elif op < 0.7:
                    lines[i] = line[:a.start()] + line[a.end():]
                else:
                    lines[i] = line[:a.end()] + " " + a.group() + line[a.end():]
                done.append(f"token line {i}")
        elif c < 0.9:  # a stray character
            p = r.randrange(len(line) + 1)
            lines[i] = line[:p] + r.choice('{}()<>[]:,=%@!"#^x-.\\\x00é') + line[p:]
            done.append(f"char line {i}")
        elif c < 0.95 and extra:  # a line from another seed
            src = r.choice(extra).splitlines()
            if src:
                lines.insert(i, r.choice(src))
                done.append(f"splice at {i}")
        else:  # truncate
            whole = "\n".join(lines)
            cut = r.randrange(len(whole) + 1)
            lines = whole[:cut].splitlines()
            done.append(f"truncate at {cut}")
    return "\n".join(lines) + "\n", done


# ============================================================================ random pipelines
_XDSL_PASSES = ["canonicalize", "cse", "dce"]


def _option_values(c: Corpus, pass_name: str, opt: str, typ: str, default: Any) -> list[Any]:
    """Plausible and implausible values for one option (each a pipeline-syntax string)."""
    q = lambda s: f'"{s}"'  # noqa: E731
    specific: dict[str, list[str]] = {
        "optimizer": ["sgd", "sgdm", "adam", "rmsprop", q("")],
        "trainable": ["all", "none", q("last:2"), q("last:0"), q("last:-1"), q("last:x"), q("first:1")],
        "loss": [q("cross-entropy"), "mse", q("")],
        "rounding": ["nearest", "stochastic", "up"],
        "to": ["nhwc", "nchw", "ncwh"],
        "calibration": [q(c.digits_calib), q(c.dir / "missing.npy"), q(c.not_npy), q(c.int_npy), q(c.nan_npy),
                        q(c.empty_npy), q(c.npz), q(c.dir), q("")],
        "calibration_method": ["minmax", "percentile", "entropy"],
        "percentile": ["99.99", "50", "0", "100", "101", "-1", "nan", "1e400"],
        "weights": [q("3:1"), q("1:0.5,2:1"), q("0:0"), q("99:1"), q("1:2"), q("x"), q("1:0.5 1:1"), q("")],
        "scheme": [q(c.scheme), q(c.bad_scheme), q(c.dir / "missing.scheme"), q(c.digits_calib), q("")],
        "bias_last": ["0", "1", "2", "100", "-1", "x"],
        "num_classes": ["10", "1", "2", "0", "-3", "11", "1000000"],
        "max_elements": ["0", "1", "100", "1000000", "-1"],
        "stats": ["true", "false", "1", "maybe"],
        "seed": ["0", "1", "-1", "4294967296"],
    }
    if opt in specific:
        return specific[opt]
    if "int" in typ:
        return ["0", "1", "-1", "7", "1000000000000"]
    if "float" in typ:
        return ["0.0", "0.9", "1.0", "-1.0", "1e-30", "nan", "inf"]
    if "bool" in typ:
        return ["true", "false"]
    return ["x", q("x"), q("")]


def random_pipeline(r: random.Random, c: Corpus) -> str:
    import dataclasses

    from tinymlir.passes import get_tinymlir_passes

    registry = get_tinymlir_passes()
    names = sorted(registry) + _XDSL_PASSES
    parts = []
    for _ in range(r.randint(1, 5)):
        name = r.choice(names)
        opts: list[str] = []
        if name in registry and r.random() < 0.8:
            cls = registry[name]()
            fields = [f for f in dataclasses.fields(cls)]
            for f in r.sample(fields, r.randint(0, len(fields))) if fields else []:
                key = f.name.replace("_", "-") if r.random() < 0.7 else f.name
                opts.append(f"{key}={r.choice(_option_values(c, name, f.name, str(f.type), f.default))}")
        if r.random() < 0.08:  # an unknown option, a wrong-typed value, or a repeated option
            opts.append(r.choice(["bogus=1", "num-classes=ten", "stats=7", "max-elements=1.5", "to=1,2", "x"]))
            if opts and r.random() < 0.5:
                opts.append(opts[0])
        parts.append(name + ("{" + " ".join(opts) + "}" if opts else ""))
    spec = ",".join(parts)
    if r.random() < 0.08:  # malformed syntax
        for _ in range(r.randint(1, 3)):
            p = r.randrange(len(spec) + 1)
            op = r.random()
            if op < 0.5:
                spec = spec[:p] + r.choice('{}",= ,,\'\\') + spec[p:]
            else:
                spec = spec[:p] + spec[p + 1:]
    return spec


# ============================================================================ cases
@dataclass
class Case:
    target: str
    index: int
    prog: str
    argv: list[str]
    files: dict[str, bytes]  # written into the case directory; argv refers to them by absolute path
    note: str = ""


@dataclass
class Failure:
    case: Case
    outcome: Outcome
    kind: str
    reason: str
    signature: str


@dataclass
class Stats:
    target: str
    tried: int = 0
    ok: int = 0
    rejected: int = 0
    masked: int = 0
    failed: int = 0
    subprocess_checked: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    masked_examples: list[Failure] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.tried / self.seconds if self.seconds else 0.0
        sub = f", {self.subprocess_checked} also as a subprocess" if self.subprocess_checked else ""
        return (f"{self.target}: {self.tried} inputs in {self.seconds:.1f} s ({rate:.1f}/s): {self.failed} failed, "
                f"{self.masked} masked, {self.rejected} rejected, {self.ok} accepted{sub}")


def case_rng(seed: int, target: str, index: int) -> random.Random:
    return random.Random(f"tinymlir-fuzz:{seed}:{target}:{index}")


def make_onnx_case(c: Corpus, seed: int, index: int, case_dir: Path, use_shared: bool = True) -> Case:
    import onnx

    r = case_rng(seed, "onnx", index)
    kind = r.random()
    num_classes: int | None = 10
    calib = c.digits_calib
    files: dict[str, bytes] = {}
    if c.shared and use_shared and kind < 0.08:
        path = r.choice(c.shared)
        model = _copy(c.shared_proto(path))
        source, qdq, calib = path.name, "int8" in path.name, None
        input_shape = None
    elif kind < 0.45:
        model = onnx.load_model_from_string(c.digits)
        source, qdq = "digits", False
        input_shape = (1, 1, 16, 16)
    else:
        g = random_graph(r)
        model, source, qdq, num_classes = g.model, "random-qdq" if g.qdq else "random", g.qdq, g.num_classes
        input_shape = g.input_shape
        shape = (r.randint(1, 3),) + g.input_shape[1:]
        buf = io.BytesIO()
        np.save(buf, np.random.default_rng(index).uniform(-1, 1, shape).astype(np.float32))
        files["calib.npy"] = buf.getvalue()
        calib = case_dir / "calib.npy"
    how = r.random()
    notes: list[str] = []
    if source.startswith("random") and how < 0.2:
        data = model.SerializeToString()  # a valid random graph, unmutated
        notes.append("unmutated")
    else:
        if how < 0.75:
            notes += mutate_proto(r, model, r.choice([1, 1, 1, 2, 2, 3, 5]))
        try:
            data = model.SerializeToString()
        except Exception as e:  # a mutation made the proto unserializable: use the original bytes
            notes.append(f"unserializable: {type(e).__name__}")
            data = c.digits
        if how >= 0.8:
            data, bnotes = mutate_bytes(r, data, r.choice([1, 1, 2, 3, 8]))
            notes += bnotes
    files["model.onnx"] = data
    k = f"num-classes={num_classes}" if num_classes else "num-classes=10"
    if qdq:
        pipes = ["", "fuse-qdq", "fuse-qdq,convert-layout,convert-quant-to-cmsisnn", f"fuse-qdq,autodiff{{{k}}}",
                 "fold-constants"]
        if "shared" not in source and not source.endswith(".onnx"):
            pipes.append(f"fuse-qdq,autodiff{{{k}}},qas,sparse-update{{bias-last=1}},prune-backward,reorder-update")
    else:
        ptq = f'fold-batch-norm,quantize-ptq{{calibration="{calib}"}}' if calib else "fold-batch-norm"
        pipes = ["", "fold-batch-norm", "fold-batch-norm,fold-constants", ptq, f"{ptq},convert-layout,convert-quant-to-cmsisnn",
                 f"{ptq},autodiff{{{k}}}", "canonicalize,cse"]
    if source.endswith(".onnx"):  # big models: keep the pipelines cheap
        pipes = pipes[:3]
    pipe = r.choice(pipes)
    argv = [str(case_dir / "model.onnx")] + (["-p", pipe] if pipe else [])
    note = f"{source}: " + "; ".join(notes[:8])
    if input_shape is not None and r.random() < 0.1:  # run it, too
        buf = io.BytesIO()
        np.save(buf, np.random.default_rng(index).uniform(-1, 1, input_shape).astype(np.float32))
        files["x.npy"] = buf.getvalue()
        return Case("onnx", index, "tinymlir-run", argv + ["--input", str(case_dir / "x.npy")], files, note)
    return Case("onnx", index, "tinymlir-opt", argv, files, note)


def make_ir_case(c: Corpus, seed: int, index: int, case_dir: Path) -> Case:
    r = case_rng(seed, "ir", index)
    seeds = c.ir_seeds
    s = r.choice(seeds)
    text, notes = mutate_ir(r, s.text, r.choice([1, 1, 1, 2, 2, 3, 6]), extra=[x.text for x in seeds])
    files = {"in.mlir": text.encode("utf-8", "surrogatepass")}
    path = str(case_dir / "in.mlir")
    if r.random() < 0.12 and s.input_shape is not None:
        buf = io.BytesIO()
        np.save(buf, np.random.default_rng(index).uniform(-1, 1, s.input_shape).astype(s.input_dtype))
        files["x.npy"] = buf.getvalue()
        argv = [path, "--input", str(case_dir / "x.npy")]
        return Case("ir", index, "tinymlir-run", argv, files, f"{s.name}: " + "; ".join(notes))
    pipe = r.choice(s.pipelines) if r.random() < 0.75 else random_pipeline(r, c)
    argv = [path] + (["-p", pipe] if pipe else [])
    extra = r.random()
    if extra < 0.04:
        argv.append("--split-input-file")
    elif extra < 0.07:
        argv.append("--verify-diagnostics")
    elif extra < 0.1:
        argv.append("--print-op-generic")
    return Case("ir", index, "tinymlir-opt", argv, files, f"{s.name}: " + "; ".join(notes))


def make_pipeline_case(c: Corpus, seed: int, index: int, case_dir: Path) -> Case:
    r = case_rng(seed, "pipeline", index)
    spec = random_pipeline(r, c)
    if r.random() < 0.15:
        files = {"model.onnx": c.digits}
        src = "digits.onnx"
    else:
        s = r.choice(c.ir_seeds)
        files = {"in.mlir": s.text.encode()}
        src = s.name
    argv = [str(case_dir / next(iter(files))), "-p", spec]
    return Case("pipeline", index, "tinymlir-opt", argv, files, f"{src}: {spec}")


def make_case(c: Corpus, target: str, seed: int, index: int, case_dir: Path, use_shared: bool = True) -> Case:
    if target == "onnx":
        return make_onnx_case(c, seed, index, case_dir, use_shared)
    if target == "ir":
        return make_ir_case(c, seed, index, case_dir)
    if target == "pipeline":
        return make_pipeline_case(c, seed, index, case_dir)
    raise ValueError(f"unknown target {target!r}")


def write_case(case: Case, case_dir: Path) -> None:
    for f in case_dir.iterdir():
        if f.is_file():
            f.unlink()
    for name, data in case.files.items():
        (case_dir / name).write_bytes(data)


def save_failure(fail: Failure, out: Path, workdir: Path | None = None) -> Path:
    """Write the input files, every other file the command refers to (calibration data,
    schemes), the command and the outcome of a failure into `out/<target>-<index>/`."""
    d = out / f"{fail.case.target}-{fail.case.index}"
    d.mkdir(parents=True, exist_ok=True)
    for name, data in fail.case.files.items():
        (d / name).write_bytes(data)
    case_dir = str(Path(fail.case.argv[0]).parent)
    argv = [a.replace(case_dir, str(d)) for a in fail.case.argv]
    if workdir is not None:
        pattern = re.compile(re.escape(str(workdir)) + r"[^\s\"',}]*")
        for a in list(argv):
            for path in set(pattern.findall(a)):
                src = Path(path)
                if src.is_file():
                    (d / src.name).write_bytes(src.read_bytes())
                    argv = [x.replace(path, str(d / src.name)) for x in argv]
    module = "tinymlir.tools.opt" if fail.case.prog == "tinymlir-opt" else "tinymlir.tools.run"
    (d / "README.txt").write_text(
        f"{fail.kind}: {fail.reason}\n{fail.case.note}\n\nTINYMLIR_DEBUG=1 python -m {module} "
        + " ".join(_shell_quote(a) for a in argv) + f"\n\nexit code: {fail.outcome.code}\n--- stderr\n{fail.outcome.stderr}")
    return d


def _shell_quote(s: str) -> str:
    return s if re.fullmatch(r"[\w./=,:+-]+", s) else "'" + s.replace("'", "'\\''") + "'"


# ============================================================================ the loop
def fuzz(target: str, count: int, seed: int = 1, *, time_limit: float | None = None, timeout: float = DEFAULT_TIMEOUT,
         corpus: Corpus | None = None, workdir: Path | None = None, use_shared: bool = True, subprocess_checks: int = 0,
         strict: bool = False, start: int = 0, save_failures: Path | None = None,
         log: Callable[[str], None] | None = None, memory_headroom_mb: int | None = None) -> Stats:
    """Run `count` inputs (indices start .. start+count-1) of one target; stop early after
    `time_limit` seconds. Returns the statistics, with every failure. `memory_headroom_mb`
    caps the heap growth while the inputs run (see `memory_headroom`)."""
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="tinymlir-fuzz-")
        workdir = Path(own_tmp.name)
    try:
        corpus = corpus or Corpus(workdir / "corpus", use_shared=use_shared)
        if target in ("ir", "pipeline"):
            corpus.ir_seeds  # noqa: B018  (built before the clock starts)
        case_dir = workdir / f"case-{target}"
        case_dir.mkdir(parents=True, exist_ok=True)
        stats = Stats(target)
        sub_every = max(count // subprocess_checks, 1) if subprocess_checks else 0
        t0 = time.perf_counter()
        for index in range(start, start + count):
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                break
            with np.errstate(all="ignore"):
                case = make_case(corpus, target, seed, index, case_dir, use_shared)
            write_case(case, case_dir)
            with memory_headroom(memory_headroom_mb):
                o = run_in_process(case.prog, case.argv, timeout)
            kind, reason = verdict(case.prog, o, strict)
            if sub_every and (index - start) % sub_every == 0 and stats.subprocess_checked < subprocess_checks:
                so = run_subprocess(case.prog, case.argv, timeout=max(timeout, 60))
                stats.subprocess_checked += 1
                skind, sreason = verdict(case.prog, so, strict)
                if skind == "failed":
                    kind, reason, o = skind, f"as a subprocess: {sreason}", so
                elif so.code != o.code and kind != "failed":
                    kind, reason = "failed", f"in-process exit code {o.code} but subprocess exit code {so.code}"
                    o = so
            stats.tried += 1
            if kind == "ok":
                stats.ok += 1
            elif kind == "rejected":
                stats.rejected += 1
            else:
                f = Failure(case, o, kind, reason or "", signature(case.prog, o, reason))
                if kind == "masked":
                    stats.masked += 1
                    stats.masked_examples.append(f)
                else:
                    stats.failed += 1
                    stats.failures.append(f)
                if save_failures is not None:
                    save_failure(f, save_failures, workdir)
                if log:
                    log(f"{target} #{index}: {kind}: {reason}: {o.stderr.strip()[:300]}  [{case.note[:200]}]")
        stats.seconds = time.perf_counter() - t0
        return stats
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()


def report(stats: Stats, out: Callable[[str], None] = print) -> None:
    out(stats.summary())
    for label, items in (("FAILED", stats.failures), ("masked", stats.masked_examples)):
        groups: dict[str, list[Failure]] = {}
        for f in items:
            groups.setdefault(f.signature, []).append(f)
        for sig, fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            idx = ", ".join(str(f.case.index) for f in fs[:5]) + (", ..." if len(fs) > 5 else "")
            out(f"  {label} x{len(fs)} [{sig}] (index {idx})")


def set_memory_limit(megabytes: int) -> None:
    """Cap the heap of this process: a huge allocation then raises MemoryError at once
    (reported as an internal error) instead of swapping for minutes."""
    try:
        import resource

        limit = megabytes * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ImportError, ValueError, OSError):  # not on this platform
        pass


@contextlib.contextmanager
def memory_headroom(megabytes: int | None):
    """Within the block, this process may allocate about `megabytes` more heap (Linux:
    RLIMIT_DATA relative to the current VmData); the old limit is restored afterwards."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        with open("/proc/self/status") as f:
            vmdata_kb = next(int(ln.split()[1]) for ln in f if ln.startswith("VmData:"))
    except (ImportError, OSError, StopIteration, ValueError):
        megabytes = None
    if not megabytes:
        yield
        return
    limit = vmdata_kb * 1024 + megabytes * 2**20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinymlir.tools.fuzz", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    p.add_argument("--count", type=int, default=1000, help="inputs per target (default 1000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--index", type=int, default=None, help="run only input INDEX (replay a failure)")
    p.add_argument("--start", type=int, default=0, help="first input index (to split a run over processes)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per target; stops early")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per input (default 30)")
    p.add_argument("--subprocess", type=int, default=0, metavar="N",
                   help="also run N inputs per target through a real subprocess")
    p.add_argument("--no-shared", action="store_true", help="do not use the shared models")
    p.add_argument("--strict", action="store_true", help="count masked errors as failures")
    p.add_argument("--save-failures", type=Path, default=None, metavar="DIR",
                   help="write each failing input, its command and its stderr under DIR")
    p.add_argument("--patch-xdsl-lexer", action="store_true",
                   help="replace xDSL's exponential string-literal regex in this process, so that the known "
                        "hang on unterminated strings does not dominate a long run")
    p.add_argument("--memory-limit", type=int, default=4096, metavar="MB",
                   help="limit this process's data segment (RLIMIT_DATA), so that an input asking for a huge "
                        "allocation fails fast instead of exhausting the machine (default 4096; 0 = none)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each failure as it happens")
    args = p.parse_args(argv)
    targets = TARGETS if args.target == "all" else (args.target,)
    start, count = (args.index, 1) if args.index is not None else (args.start, args.count)
    log = (lambda s: print(s, flush=True)) if args.verbose or args.index is not None else None
    if args.memory_limit:
        set_memory_limit(args.memory_limit)
    if args.patch_xdsl_lexer:
        patch_xdsl_lexer()
    elif xdsl_lexer_is_exponential():
        print("note: xDSL's string-literal lexer is exponential on unterminated strings (docs/reliability.md); "
              "such inputs time out (--patch-xdsl-lexer avoids them)", flush=True)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="tinymlir-fuzz-") as tmp:
        corpus = Corpus(Path(tmp) / "corpus", use_shared=not args.no_shared)
        for t in targets:
            stats = fuzz(t, count, args.seed, time_limit=args.time_limit, timeout=args.timeout, corpus=corpus,
                         workdir=Path(tmp), use_shared=not args.no_shared, subprocess_checks=args.subprocess,
                         strict=args.strict, start=start, save_failures=args.save_failures, log=log)
            report(stats, lambda s: print(s, flush=True))
            failed += stats.failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
