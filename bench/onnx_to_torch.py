"""A small ONNX -> PyTorch converter for the float CNNs the benchmarks compare against.

    from bench.onnx_to_torch import torch_model_from_onnx
    model = torch_model_from_onnx("../shared/models/mcunet-5fps-fp32.onnx")   # a torch.nn.Module
    logits = model(torch.zeros(1, 3, 128, 128))

Supported ops (what the shared fp32 twins and the bundled digits example use): Conv
(grouped/depthwise, symmetric or asymmetric pads), Relu, Clip (min/max as inputs or
attributes), Add, Sub, Mul (with constant or computed operands), GlobalAveragePool,
AveragePool/MaxPool (2-D), Flatten, Reshape, Gemm (transA=0), MatMul, BatchNormalization
(inference: running statistics, frozen), Identity. Anything else raises `UnsupportedOp`
naming the node.

The graph runs node by node in ONNX order (the file's topological order). Convolutions and
Gemm/MatMul become `torch.nn.Conv2d` / `torch.nn.Linear` modules in `model.layers`, indexed
in forward order exactly as tinymlir's `autodiff` numbers them (`layer<i>.weight`, the
numbering of the sparse-update schemes); `model.layer(i)` returns one. Every parameter is
created with `requires_grad=False`: callers choose what trains, e.g. with
`set_trainable(model, biases=[...], weights=[...])`. `replace_classifier(model, n)`
swaps the last layer (a Linear) for a new one with `n` outputs, trainable, initialised as
tinymlir's `autodiff{num-classes=n seed=s}` does (`classifier_init`: uniform in
[-1/sqrt(K), 1/sqrt(K)] from numpy.random.default_rng(seed), float32; zero bias).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["UnsupportedOp", "OnnxTorchModel", "torch_model_from_onnx", "replace_classifier", "set_trainable"]


class UnsupportedOp(Exception):
    """The ONNX graph holds an op (or an attribute value) the converter does not handle."""


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads_2d(pads: list[int] | None) -> tuple[int, int, int, int] | None:
    """ONNX pads [top, left, bottom, right] -> F.pad order (left, right, top, bottom)."""
    if not pads:
        return None
    t, l, b, r = pads
    return (l, r, t, b)


class OnnxTorchModel(torch.nn.Module):
    """The converted graph: `layers` (Conv2d / Linear, forward order), `norms`
    (BatchNorm2d), constant tensors as buffers, and the node list it interprets."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList()
        self.norms = torch.nn.ModuleList()
        self.steps: list[tuple] = []   # (kind, inputs, output, extra)
        self.input_name = ""
        self.output_name = ""
        self._const_names: dict[str, str] = {}

    def layer(self, i: int) -> torch.nn.Module:
        return self.layers[i]

    def _const(self, name: str, value: np.ndarray) -> None:
        key = f"c{len(self._const_names)}"
        self.register_buffer(key, torch.from_numpy(np.array(value)), persistent=False)
        self._const_names[name] = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for name, key in self._const_names.items():
            env[name] = getattr(self, key)
        for kind, ins, out, extra in self.steps:
            a = [env[i] for i in ins]
            if kind == "conv":
                layer, pad = extra
                v = a[0] if pad is None else F.pad(a[0], pad)
                env[out] = self.layers[layer](v)
            elif kind == "linear":
                env[out] = self.layers[extra](a[0])
            elif kind == "bn":
                env[out] = self.norms[extra](a[0])
            elif kind == "relu":
                env[out] = F.relu(a[0])
            elif kind == "clip":
                lo, hi = extra
                env[out] = torch.clamp(a[0], lo, hi)
            elif kind == "add":
                env[out] = a[0] + a[1]
            elif kind == "sub":
                env[out] = a[0] - a[1]
            elif kind == "mul":
                env[out] = a[0] * a[1]
            elif kind == "gap":
                env[out] = a[0].mean(dim=(2, 3), keepdim=True)
            elif kind == "avgpool":
                k, s, pad = extra
                env[out] = F.avg_pool2d(a[0] if pad is None else F.pad(a[0], pad), k, s)
            elif kind == "maxpool":
                k, s, pad = extra
                v = a[0] if pad is None else F.pad(a[0], pad, value=-math.inf)
                env[out] = F.max_pool2d(v, k, s)
            elif kind == "flatten":
                env[out] = torch.flatten(a[0], extra)
            elif kind == "reshape":
                shape = [a[0].shape[i] if d == 0 else d for i, d in enumerate(extra)]
                env[out] = a[0].reshape(shape)
            elif kind == "identity":
                env[out] = a[0]
            else:  # pragma: no cover - the converter only emits the kinds above
                raise UnsupportedOp(kind)
        return env[self.output_name]


def torch_model_from_onnx(path: str | Path) -> OnnxTorchModel:
    """Convert the float ONNX CNN at `path` to a torch module (float32, eval mode, every
    parameter frozen). See the module docstring for the supported ops."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    if len(graph.output) != 1:
        raise UnsupportedOp(f"{path}: {len(graph.output)} graph outputs (expected 1)")
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            inits[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
    inputs = [i.name for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UnsupportedOp(f"{path}: {len(inputs)} non-constant graph inputs (expected 1)")
    m = OnnxTorchModel()
    m.input_name, m.output_name = inputs[0], graph.output[0].name

    def frozen(value: np.ndarray) -> torch.nn.Parameter:
        return torch.nn.Parameter(torch.from_numpy(np.array(value, np.float32)), requires_grad=False)

    used_consts: set[str] = set()

    def operand(name: str) -> str:
        if name in inits:
            used_consts.add(name)
        return name

    for node in graph.node:
        op, at, ins, out = node.op_type, _attrs(node), list(node.input), node.output[0]
        where = f"{path}: node {node.name or out!r} ({op})"
        if op == "Constant":
            continue
        if op == "Conv":
            w = inits.get(ins[1])
            if w is None or w.ndim != 4:
                raise UnsupportedOp(f"{where}: needs a constant 4-D weight")
            if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise UnsupportedOp(f"{where}: auto_pad is not supported")
            o, ipg, kh, kw = w.shape
            groups = int(at.get("group", 1))
            pads = list(at.get("pads", [0, 0, 0, 0]))
            sym = pads[0] == pads[2] and pads[1] == pads[3]
            conv = torch.nn.Conv2d(ipg * groups, o, (kh, kw), stride=tuple(at.get("strides", [1, 1])),
                                   padding=(pads[0], pads[1]) if sym else 0,
                                   dilation=tuple(at.get("dilations", [1, 1])), groups=groups,
                                   bias=len(ins) > 2 and ins[2] != "")
            conv.weight = frozen(w)
            if conv.bias is not None:
                conv.bias = frozen(inits[ins[2]])
            m.layers.append(conv)
            m.steps.append(("conv", [operand(ins[0])], out, (len(m.layers) - 1, None if sym else _pads_2d(pads))))
        elif op in ("Gemm", "MatMul"):
            b = inits.get(ins[1])
            if b is None or b.ndim != 2 or (op == "Gemm" and at.get("transA", 0)):
                raise UnsupportedOp(f"{where}: needs a constant 2-D B and transA=0")
            alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
            weight = (b if at.get("transB", 0) else b.T) * alpha
            has_bias = op == "Gemm" and len(ins) > 2 and ins[2] != ""
            lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias)
            lin.weight = frozen(weight)
            if has_bias:
                c = np.asarray(inits[ins[2]], np.float32) * beta
                c = c.reshape(-1) if c.size == weight.shape[0] else np.broadcast_to(c.reshape(-1), (weight.shape[0],))
                lin.bias = frozen(c)
            m.layers.append(lin)
            m.steps.append(("linear", [operand(ins[0])], out, len(m.layers) - 1))
        elif op == "BatchNormalization":
            scale, bias, mean, var = (inits[n] for n in ins[1:5])
            bn = torch.nn.BatchNorm2d(len(scale), eps=float(at.get("epsilon", 1e-5)))
            bn.weight, bn.bias = frozen(scale), frozen(bias)
            bn.running_mean.copy_(torch.from_numpy(np.array(mean, np.float32)))
            bn.running_var.copy_(torch.from_numpy(np.array(var, np.float32)))
            m.norms.append(bn)
            m.steps.append(("bn", [operand(ins[0])], out, len(m.norms) - 1))
        elif op == "Relu":
            m.steps.append(("relu", [operand(ins[0])], out, None))
        elif op == "Clip":
            lo = float(inits[ins[1]]) if len(ins) > 1 and ins[1] else at.get("min", None)
            hi = float(inits[ins[2]]) if len(ins) > 2 and ins[2] else at.get("max", None)
            m.steps.append(("clip", [operand(ins[0])], out, (lo, hi)))
        elif op in ("Add", "Sub", "Mul"):
            m.steps.append((op.lower(), [operand(ins[0]), operand(ins[1])], out, None))
        elif op == "GlobalAveragePool":
            m.steps.append(("gap", [operand(ins[0])], out, None))
        elif op in ("AveragePool", "MaxPool"):
            pads = list(at.get("pads", [0, 0, 0, 0]))
            if op == "AveragePool" and any(pads) and not at.get("count_include_pad", 0):
                raise UnsupportedOp(f"{where}: padded AveragePool with count_include_pad=0")
            k, s = tuple(at["kernel_shape"]), tuple(at.get("strides", [1, 1]))
            m.steps.append(("avgpool" if op == "AveragePool" else "maxpool", [operand(ins[0])], out,
                            (k, s, _pads_2d(pads) if any(pads) else None)))
        elif op == "Flatten":
            m.steps.append(("flatten", [operand(ins[0])], out, int(at.get("axis", 1))))
        elif op == "Reshape":
            m.steps.append(("reshape", [operand(ins[0])], out, [int(d) for d in inits[ins[1]]]))
        elif op == "Identity":
            m.steps.append(("identity", [operand(ins[0])], out, None))
        else:
            raise UnsupportedOp(f"{where}: op {op} is not supported")
    for name in sorted(used_consts):
        m._const(name, np.asarray(inits[name], np.float32))
    return m.eval()


def replace_classifier(model: OnnxTorchModel, num_classes: int, seed: int = 0) -> torch.nn.Linear:
    """Replace the last layer (a Linear) by a new trainable one with `num_classes` outputs."""
    old = model.layers[-1]
    if not isinstance(old, torch.nn.Linear):
        raise UnsupportedOp(f"the last layer is a {type(old).__name__}, not a Linear (classifier)")
    k = old.in_features
    try:  # the very initial weights tinymlir's autodiff{num-classes=N seed=S} draws
        from tinymlir.passes.autodiff import classifier_init

        w = classifier_init(num_classes, k, seed)
    except ImportError:
        bound = 1.0 / math.sqrt(k)
        w = np.random.default_rng(seed).uniform(-bound, bound, (num_classes, k)).astype(np.float32)
    new = torch.nn.Linear(k, num_classes, bias=True)
    new.weight = torch.nn.Parameter(torch.from_numpy(w))
    new.bias = torch.nn.Parameter(torch.zeros(num_classes))
    model.layers[-1] = new
    return new


def set_trainable(model: OnnxTorchModel, biases: Iterable[int] = (), weights: Iterable[int] = ()) -> list[torch.nn.Parameter]:
    """Freeze every parameter, then make the biases of layers `biases` and the weights of
    layers `weights` (whole tensors) trainable; returns them, in layer order."""
    for p in model.parameters():
        p.requires_grad_(False)
    out = []
    b, w = set(biases), set(weights)
    for i, layer in enumerate(model.layers):
        if i in w:
            layer.weight.requires_grad_(True)
            out.append(layer.weight)
        if i in b and layer.bias is not None:
            layer.bias.requires_grad_(True)
            out.append(layer.bias)
    return out
