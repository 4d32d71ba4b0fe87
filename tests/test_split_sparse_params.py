"""`split-sparse-params`: the interpreter before and after the pass gives the same
forward results and the same parameter updates, with the trained rows in a param of
their own (SRAM) and the others in a frozen one (flash)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from xdsl.parser import Parser
from xdsl.passes import PassPipeline

from tinymlir.context import make_context
from tinymlir.dialects import tk, train
from tinymlir.interpreter.train_impls import TrainState
from tinymlir.passes import get_tinymlir_passes

SMALL = Path(__file__).parent / "filecheck" / "passes" / "split-sparse-params.mlir"


def apply(module, spec: str):
    PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
    module.verify()
    return module


def joined(module, params: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The whole param `name` from its split parts (through the merge's channel list)."""
    if name in params:
        return params[name]
    trained, rest = params[f"{name}.train"], params[f"{name}.rest"]
    merges = [op for op in module.walk() if isinstance(op, tk.MergeChannelsOp)]
    channels = list(merges[0].channels.get_values())
    whole = np.empty((trained.shape[0] + rest.shape[0],) + trained.shape[1:], trained.dtype)
    whole[channels] = trained
    whole[[c for c in range(whole.shape[0]) if c not in channels]] = rest
    return whole


def test_small_layer_split_keeps_results_and_updates():
    before = Parser(make_context(), SMALL.read_text()).parse_module()
    after = apply(before.clone(), "split-sparse-params")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, 2, 2, 2)).astype(np.int8)
    g = rng.normal(size=(1, 2, 2, 4)).astype(np.float32)
    s0, s1 = TrainState(before), TrainState(after)
    for _ in range(2):
        y0, dx0 = s0.run("train_step", [x, g, np.float32(0.5)])
        y1, dx1 = s1.run("train_step", [x, g, np.float32(0.5)])
        assert np.array_equal(y0, y1)
        np.testing.assert_allclose(dx1, dx0, rtol=1e-6)
    for name in ("w", "b"):
        assert np.array_equal(joined(after, s1.params, name), s0.params[name])
    kinds = {op.sym_name.data: op.is_trainable for op in after.ops if isinstance(op, train.ParamOp)}
    assert kinds == {"w.train": True, "w.rest": False, "b.train": True, "b.rest": True}
    assert not np.array_equal(s1.params["w.train"], joined(before, TrainState(before).params, "w")[[1, 3]]), \
        "the trained rows must have moved (else the test proves nothing)"


def test_mcunet_99kb_split_is_exact_and_halves_trainable_sram():
    from shared_models import sample_photos, shared_model

    from tinymlir.codegen.memory_plan import tensor_bytes
    from tinymlir.frontend.onnx_importer import import_onnx

    scheme = Path(__file__).resolve().parents[1] / "schemes" / "mcunet-5fps-99kb.scheme"
    before = apply(import_onnx(str(shared_model("mcunet-5fps-int8.onnx"))),
                   f'fuse-qdq,autodiff{{num-classes=10}},qas,sparse-update{{scheme="{scheme}"}},prune-backward,'
                   'reorder-update,convert-train-to-tk,convert-layout,convert-quant-to-cmsisnn')
    after = apply(before.clone(), "split-sparse-params")
    x = np.ascontiguousarray(sample_photos()[0], np.float32)
    s0, s1 = TrainState(before), TrainState(after)
    assert np.array_equal(s0.run("forward", [x])[0], s1.run("forward", [x])[0])
    for label in (3, 5):
        assert s0.train_step(x, np.int32(label), np.float32(0.05)) == s1.train_step(x, np.int32(label), np.float32(0.05))
    splits = [op for op in after.walk() if isinstance(op, tk.MergeChannelsOp)]
    assert len(splits) == 4  # layers 36 and 39, in @forward and in @train_step
    for name, value in s0.params.items():
        if name in s1.params:
            assert np.array_equal(s1.params[name], value), name

    def sram(module) -> int:
        return sum(tensor_bytes(op.type) for op in module.ops if isinstance(op, train.ParamOp) and op.is_trainable)

    assert sram(after) < 0.55 * sram(before), (sram(after), sram(before))
