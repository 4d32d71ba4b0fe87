"""The search space of sparse-update schemes: which choices a scheme is made of.

A scheme (tinymlir/passes/scheme.py) = the biases of the last k layers before the
classifier + for some layers, their weights at a ratio r of output channels; the new
classifier always trains. The search considers
- k on a grid `bias_grid` (0 .. the classifier's index, about a dozen values),
- weights of the non-depthwise convolutions from `first_weight_layer` on (default: the
  second half of the network, where the paper's schemes update weights: earlier layers
  cost more activation memory and contribute less), each at a ratio of `RATIOS` or frozen.
Depthwise weights are left out by default, as in the paper's schemes (few parameters,
little contribution, large saved activations).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects.builtin import ModuleOp

RATIOS = (0.125, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class LayerInfo:
    index: int
    kind: str  # "conv", "depthwise", "fc"
    weight_shape: tuple[int, ...]
    has_bias: bool


@dataclass(frozen=True)
class SearchSpace:
    layers: tuple[LayerInfo, ...]
    classifier: int
    bias_grid: tuple[int, ...]
    weight_layers: tuple[int, ...]
    ratios: tuple[float, ...] = RATIOS

    def describe(self) -> str:
        return (f"biases of the last k layers, k in {list(self.bias_grid)}; weights of layers "
                f"{list(self.weight_layers)} at ratios {list(self.ratios)}; the classifier (layer "
                f"{self.classifier}) always")


def model_layers(module: ModuleOp) -> list[LayerInfo]:
    """The layers of an `autodiff` output (`layer<i>.weight` / `.bias` params), in order."""
    from tinymlir.passes.training import layers, param_table

    out = []
    for i, layer in layers(param_table(module)).items():
        if layer.weight is None:
            continue
        shape = tuple(layer.weight.type.get_shape())
        if len(shape) == 2:
            kind = "fc"
        elif shape[1] == 1 and shape[2] * shape[3] > 1:
            kind = "depthwise"  # one input channel per group, a spatial kernel
        else:
            kind = "conv"
        out.append(LayerInfo(i, kind, shape, layer.bias is not None))
    return out


def make_space(layers: list[LayerInfo], first_weight_layer: int | None = None, bias_points: int = 12,
               ratios: tuple[float, ...] = RATIOS, depthwise: bool = False) -> SearchSpace:
    """The default space of a model (see the module docstring)."""
    if not layers:
        raise ValueError("the model has no layer with parameters")
    classifier = layers[-1].index
    step = max(1, -(-classifier // bias_points))  # ceil
    grid = sorted(set(range(0, classifier + 1, step)) | {classifier})
    first = classifier // 2 if first_weight_layer is None else first_weight_layer
    weights = tuple(layer.index for layer in layers[:-1] if layer.index >= first
                    and (layer.kind != "depthwise" or depthwise))
    return SearchSpace(tuple(layers), classifier, tuple(grid), weights, tuple(ratios))


def scheme_text(bias_last: int, weights: dict[int, float], comment: str = "") -> str:
    """The scheme-file text of k and {layer: ratio} (frozen layers left out)."""
    lines = [f"# {comment}"] if comment else []
    lines.append(f"bias last {bias_last}")
    if weights:
        lines.append("weights " + " ".join(f"{i}:{r:g}" for i, r in sorted(weights.items())))
    return "\n".join(lines) + "\n"
