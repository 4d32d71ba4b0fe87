"""`sparse-update`: choose which parameters `@train_step` trains (the paper's sparse update).

Input: a level-2 module from `autodiff` — `@train_step` with a loss and one update
(`train.sgd` / `train.adam`) per trainable `train.param @layer<i>.weight` / `.bias`.

Output: the same module where only these parameters stay trainable:
- the biases of the `bias last N` layers *before the classifier* (layers C-1-N .. C-2 when
  the classifier is layer C-1; layers without a bias are skipped): the paper's
  `n_bias_update`, which counts convolutions and leaves the classifier out;
- the weights of the listed layers, each with a ratio r in (0, 1]: r = 1 trains the whole
  weight; r < 1 trains the max(1, floor(r * O)) output channels (of O) whose weights have
  the largest L2 norm (ties: lower index first), real values for a quantized weight
  (s_w[c] * (w - z_w)); only convolution weights (output channels on axis 0) take r < 1;
- the classifier (the last layer), weight and bias, always.

Every other parameter loses `trainable`, its update op is erased, and so is optimizer state
(momentum, Adam's m and v) nothing refers to any more. A partially trained weight gets
`channels = array<i64: ...>` (increasing) on its update op and on the
`train.conv2d_weight_grad` computing its gradient (through `nn.add`s that sum several
gradients of it), whose result then holds just those rows. Gradient computations nobody
needs any more are left for `prune-backward`.

Options: `bias-last=N` and `weights="21:1,24:0.25"`, or `scheme="file.scheme"` (not both);
the grammar is in tinymlir/passes/scheme.py, examples in docs/schemes.md. A parameter
that autodiff left frozen (no update in @train_step) cannot be selected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, SymbolRefAttr, TensorType
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from tinymlir.dialects import nn, train
from tinymlir.dialects.nn import int_array
from tinymlir.interpreter.quant_impls import centered, channel_view
from tinymlir.interpreter.train_impls import initial_value
from tinymlir.passes.scheme import Scheme, SchemeError, load_scheme, scheme_from_options
from tinymlir.passes.training import (
    Layer,
    erase_op,
    find_updates,
    grad_of,
    layers,
    param_table,
    params_written,
    require_loss,
    require_train_step,
    symbol_uses,
)

NAME = "sparse-update"


def _fail(msg: str) -> PassFailedException:
    return PassFailedException(f"{NAME}: {msg}")


# -- channel selection ------------------------------------------------------------------
def real_weight(param: train.ParamOp) -> np.ndarray:
    """A param's initial value as float64 real values (dequantized if quantized)."""
    data = initial_value(param)
    qt = param.quantized_type
    if qt is not None:
        return centered(data, qt) * channel_view(qt.scale_array(), qt, data.ndim)
    return np.asarray(data, dtype=np.float64)


def channel_count(ratio: float, channels: int) -> int:
    """How many of `channels` output channels a ratio in (0, 1] trains: floor(r * O), at
    least 1 (the 1e-9 absorbs float error: 0.29 * 100 is 28.999999999999996)."""
    return min(channels, max(1, math.floor(ratio * channels + 1e-9)))


def select_channels(param: train.ParamOp, ratio: float) -> list[int] | None:
    """The output channels (axis 0) of `param` a ratio trains, increasing; None for all.
    Largest L2 norm of the channel's weights first, ties by lower index."""
    w = real_weight(param)
    k = channel_count(ratio, w.shape[0])
    if k == w.shape[0]:
        return None
    norms = np.sqrt(np.sum(w.reshape(w.shape[0], -1) ** 2, axis=1))
    return sorted(int(c) for c in np.argsort(-norms, kind="stable")[:k])


# -- the selection ----------------------------------------------------------------------
@dataclass
class Selection:
    """Trained params: name -> output channels (None: all of it)."""

    channels: dict[str, list[int] | None]


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def select(scheme: Scheme, by_layer: dict[int, Layer]) -> Selection:
    n = max(by_layer) + 1
    classifier = by_layer[max(by_layer)]
    out: dict[str, list[int] | None] = {}
    for p in (classifier.weight, classifier.bias):
        if p is not None:
            out[p.sym_name.data] = None

    before = classifier.index  # layers before the classifier: 0 .. C-2
    if scheme.bias_last > before:
        what = (f"{scheme.bias_where}: bias last {scheme.bias_last}" if scheme.bias_where
                else f"bias-last={scheme.bias_last}")
        raise SchemeError(f"{what}: the model has only {before} layers before the classifier "
                          f"(layer {classifier.index})")
    for i in range(before - scheme.bias_last, before):
        layer = by_layer.get(i)
        if layer is not None and layer.bias is not None:
            out[layer.bias.sym_name.data] = None

    for e in scheme.weights:
        prefix = _where(e.where)
        if not 0 <= e.layer < n:
            raise SchemeError(f"{prefix}layer {e.layer} does not exist: the model has {n} layers, 0 to {n - 1} "
                              f"(layer {n - 1} is the classifier)")
        layer = by_layer.get(e.layer)
        if layer is None or layer.weight is None:
            raise SchemeError(f"{prefix}layer {e.layer} has no weight parameter (@layer{e.layer}.weight)")
        name = layer.weight.sym_name.data
        if e.ratio == 1.0:
            out[name] = None
            continue
        if layer is classifier:
            raise SchemeError(f"{prefix}layer {e.layer} is the classifier, which is always trained whole: "
                              f"its ratio must be 1, got {e.ratio:g}")
        out[name] = select_channels(layer.weight, e.ratio)
    return Selection(out)


# -- rewriting gradients to a channel subset ----------------------------------------------
CHANNEL_GRADS = ("train.conv2d_weight_grad", "train.fully_connected_weight_grad")
"""Weight-gradient ops that compute just some output channels (`channels`)."""


def _rebuild(op: Operation, operands: list[SSAValue], result_type: Attribute, channels: list[int] | None) -> SSAValue:
    """`op` with new operands, result type and `channels`, in its place (unchanged if equal)."""
    props = dict(op.properties)
    if channels is None:
        props.pop("channels", None)
    else:
        props["channels"] = int_array(channels)
    if operands == list(op.operands) and result_type == op.results[0].type and props == op.properties:
        return op.results[0]
    new = type(op).create(operands=operands, result_types=[result_type], properties=props,
                          attributes=dict(op.attributes))
    block = op.parent_block()
    assert block is not None
    block.insert_op_before(new, op)
    op.results[0].replace_all_uses_with(new.results[0])
    erase_op(op)
    return new.results[0]


def _restrict(value: SSAValue, channels: list[int] | None, param: train.ParamOp) -> SSAValue:
    """Make the gradient `value` of `param` hold only the rows `channels` (all when None),
    by rewriting the ops that compute it: the weight gradient (train.conv2d_weight_grad /
    fully_connected_weight_grad), and the nn.adds and train.scale_grads in between."""
    name = param.sym_name.data
    op = value.owner
    if not isinstance(op, Operation):
        raise _fail(f"cannot train only some channels of @{name}: its gradient is a block argument")
    if value.has_more_than_one_use():
        raise _fail(f"the gradient of @{name} ('{op.name}') has other uses than its update: cannot restrict "
                    f"it to some channels")
    assert isinstance(value.type, TensorType)
    rows = param.type.get_shape()[0] if channels is None else len(channels)
    new_type = TensorType(value.type.element_type, (rows, *value.type.get_shape()[1:]))
    if op.name in CHANNEL_GRADS:
        return _rebuild(op, list(op.operands), new_type, channels)
    if op.name == "train.scale_grad" and getattr(op, "param", None) == SymbolRefAttr(name):
        return _rebuild(op, [_restrict(op.operands[0], channels, param)], new_type, channels)
    if isinstance(op, nn.AddOp):
        lhs, rhs = _restrict(op.lhs, channels, param), _restrict(op.rhs, channels, param)
        return _rebuild(op, [lhs, rhs], new_type, None)
    raise _fail(f"cannot train only some channels of @{name}: its gradient comes from '{op.name}', not from "
                f"{' or '.join(CHANNEL_GRADS)}")


def _set_channels(update: Operation, channels: list[int] | None) -> None:
    if channels is None:
        update.properties.pop("channels", None)
    else:
        update.properties["channels"] = int_array(channels)


# -- the pass -------------------------------------------------------------------------
@dataclass(frozen=True)
class SparseUpdatePass(ModulePass):
    """Keep only a sparse set of parameters trainable: the biases of the last N layers
    before the classifier, some layers' weights (all or the top-L2 output channels), and
    the classifier. See the module docstring."""

    name = "sparse-update"

    bias_last: int | None = None
    weights: str | None = None
    scheme: str | None = None

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.scheme is not None and (self.bias_last is not None or self.weights is not None):
            raise _fail("give either scheme= or bias-last= / weights=, not both")
        scheme = load_scheme(self.scheme) if self.scheme is not None else \
            scheme_from_options(self.bias_last, self.weights)
        step = require_train_step(op, NAME)
        require_loss(step, NAME)
        params = param_table(op)
        if not any(p.is_trainable for p in params.values()):
            raise _fail("the module has no trainable parameter (train.param ... trainable)")
        by_layer = layers(params)
        if not by_layer:
            raise _fail("the module has no layer parameters (train.param @layer<i>.weight / .bias)")
        selection = select(scheme, by_layer)
        updates = find_updates(step, params)
        for name in selection.channels:
            if not updates.of(name):
                raise _fail(f"@{name} is to be trained but @train_step does not update it (autodiff left it "
                            f"frozen: run autodiff with trainable=all)")

        # Channels first: the only step that can fail, before anything is erased.
        for name, channels in selection.channels.items():
            for u in updates.of(name):
                before = u.properties.get("channels")
                if channels is None and before is None:
                    continue  # trained whole, as it was
                g = grad_of(u)
                if g is None:
                    raise _fail(f"cannot change the channels of @{name}: its update '{u.name}' has no gradient "
                                f"operand (run sparse-update before reorder-update)")
                _restrict(g, channels, params[name])
                _set_channels(u, channels)

        state: set[str] = set()
        for name, p in params.items():
            if name in selection.channels or not p.is_trainable:
                continue
            for u in updates.of(name):
                state |= params_written(u) - {name}
                if u.parent is not None:
                    erase_op(u)
            p.trainable = None
        used = symbol_uses(op)
        for name in sorted(state):
            p = params.get(name)
            if p is not None and not p.is_trainable and name not in used:
                erase_op(p)
