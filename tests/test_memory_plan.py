"""The static memory planner (tinymlir/codegen/memory_plan.py): liveness, sizes, the three
placement strategies and their lower bound, on hand-made, random and shared-model IR."""

import random
from functools import cache
from pathlib import Path

import pytest
from shared_models import shared_model
from xdsl.dialects.builtin import IntegerType, ModuleOp, TensorType, f32
from xdsl.parser import Parser
from xdsl.passes import PassPipeline

from tinymlir.codegen.memory_plan import (
    STRATEGIES,
    Buffer,
    MemoryPlanError,
    Plan,
    check_no_overlap,
    find_func,
    live_intervals,
    lower_bound,
    memory_report,
    plan,
    tensor_bytes,
)
from tinymlir.context import make_context
from tinymlir.passes import get_tinymlir_passes

SCHEMES = Path(__file__).resolve().parents[1] / "schemes"


def all_plans(buffers):
    plans = {s: plan(buffers, s) for s in STRATEGIES}
    for p in plans.values():
        check_no_overlap(p)
    return plans


# --------------------------------------------------------------------------- hand-made


def test_chain_reuses_memory():
    # A -> B -> C: A and C never live together, so C reuses A's bytes
    bs = [Buffer("A", 100, 0, 1), Buffer("B", 50, 1, 2), Buffer("C", 100, 2, 3)]
    assert lower_bound(bs) == 150
    for p in all_plans(bs).values():
        assert p.arena_size == 150


def test_first_fit_is_not_optimal_but_best_fit_is():
    bs = [Buffer("A", 1, 0, 0), Buffer("B", 1, 0, 2), Buffer("C", 2, 1, 2)]
    assert lower_bound(bs) == 3
    plans = all_plans(bs)
    assert plans["first-fit"].arena_size == 4  # A@0, B@1, C cannot fit under B
    assert plans["greedy-by-size"].arena_size == 3
    assert plans["best-fit"].arena_size == 3


def test_disjoint_lifetimes_share_offset_zero():
    bs = [Buffer(f"b{i}", 10 * (i + 1), i, i) for i in range(5)]
    for p in all_plans(bs).values():
        assert p.arena_size == 50 == lower_bound(bs)
        assert set(p.offsets.values()) == {0}


def test_zero_size_and_empty():
    assert lower_bound([]) == 0
    for s in STRATEGIES:
        p = plan([], s)
        check_no_overlap(p)
        assert p.arena_size == 0
    p = plan([Buffer("z", 0, 0, 3), Buffer("a", 8, 0, 3)], "best-fit")
    check_no_overlap(p)
    assert p.arena_size == 8


def test_check_no_overlap_catches_collisions():
    bs = [Buffer("A", 10, 0, 2), Buffer("B", 10, 1, 3)]
    with pytest.raises(MemoryPlanError, match="overlaps"):
        check_no_overlap(Plan("bad", bs, {"A": 0, "B": 5}, 15))
    with pytest.raises(MemoryPlanError, match="outside arena"):
        check_no_overlap(Plan("bad", bs, {"A": 0, "B": 10}, 15))
    check_no_overlap(Plan("ok", bs, {"A": 0, "B": 10}, 20))
    # not live together: the same bytes are fine
    check_no_overlap(Plan("ok", [Buffer("A", 10, 0, 1), Buffer("B", 10, 2, 3)], {"A": 0, "B": 0}, 10))


def test_unknown_strategy():
    with pytest.raises(MemoryPlanError, match="unknown strategy"):
        plan([Buffer("A", 1, 0, 0)], "random")


# --------------------------------------------------------------------------- random


@pytest.mark.parametrize("seed", range(6))
def test_random_intervals(seed):
    rng = random.Random(seed)
    for _ in range(40):
        n, steps = rng.randint(1, 40), rng.randint(1, 30)
        bs = []
        for i in range(n):
            a = rng.randrange(steps)
            b = min(steps - 1, a + int(rng.expovariate(0.3)))
            bs.append(Buffer(f"b{i}", rng.choice([0, 1, 3, 16, 64, 100, 1000, rng.randint(1, 5000)]), a, b))
        plans = all_plans(bs)
        bound = lower_bound(bs)
        for p in plans.values():
            assert p.arena_size >= bound
            assert p.arena_size <= sum(b.size_bytes for b in bs)
        assert plans["best-fit"].arena_size <= min(plans["greedy-by-size"].arena_size,
                                                   plans["first-fit"].arena_size)


# --------------------------------------------------------------------------- IR


def parse(text: str) -> ModuleOp:
    return Parser(make_context(), text).parse_module()


def test_sizes():
    assert tensor_bytes(TensorType(f32, [1, 4, 2, 3])) == 96
    assert tensor_bytes(TensorType(IntegerType(8), [2, 3])) == 6
    assert tensor_bytes(TensorType(IntegerType(1), [1, 3, 3])) == 2  # 9 bits -> 2 bytes
    assert tensor_bytes(TensorType(IntegerType(1), [1, 16])) == 2
    assert tensor_bytes(TensorType(IntegerType(32), [])) == 4


def test_live_intervals_constants_views_masks():
    module = parse("""
    func.func @f(%x: tensor<1x4x2x3xf32>) -> tensor<4x6xf32> {
      %c = arith.constant dense<1.0> : tensor<1x4x2x3xf32>
      %a = nn.add %x, %c : (tensor<1x4x2x3xf32>, tensor<1x4x2x3xf32>) -> tensor<1x4x2x3xf32>
      %r = nn.reshape %a : (tensor<1x4x2x3xf32>) -> tensor<4x6xf32>
      %m = nn.relu %r : (tensor<4x6xf32>) -> tensor<4x6xf32>
      %k = train.clamp_mask %m from %r : (tensor<4x6xf32>, tensor<4x6xf32>) -> tensor<4x6xi1>
      func.return %m : tensor<4x6xf32>
    }""")
    bs = {b.name: b for b in live_intervals(find_func(module))}
    # constant: flash; reshape: a view of %a, which lives until the reshape's last use
    assert set(bs) == {"x", "a", "m", "k"}
    assert bs["x"] == Buffer("x", 96, 0, 1)
    assert bs["a"] == Buffer("a", 96, 1, 4)
    assert bs["m"] == Buffer("m", 96, 3, 5)
    assert bs["k"] == Buffer("k", 3, 4, 4)  # 24 one-bit mask elements
    assert "x" not in {b.name for b in live_intervals(find_func(module), include_args=False)}
    for p in all_plans(list(bs.values())).values():
        assert p.arena_size >= lower_bound(list(bs.values())) == 96 + 96 + 3


# --------------------------------------------------------------------------- shared models


def run(module: ModuleOp, spec: str) -> ModuleOp:
    PassPipeline.parse_spec(get_tinymlir_passes(), spec).apply(make_context(), module)
    return module


@cache
def mcunet_stages():
    from tinymlir.frontend import import_onnx

    module = run(import_onnx(str(shared_model("mcunet-5fps-int8.onnx"))), "fuse-qdq")
    forward = module.clone()
    scheme = SCHEMES / "mcunet-5fps-99kb.scheme"
    run(module, f'autodiff{{num-classes=10}},qas,sparse-update{{scheme="{scheme}"}}')
    sparse = module.clone()
    pruned = run(module.clone(), "prune-backward")
    reordered = run(pruned.clone(), "reorder-update")
    return forward, sparse, pruned, reordered


def test_mcunet_inference_plan():
    forward = mcunet_stages()[0]
    func = find_func(forward)
    bs = live_intervals(func)
    assert len({b.name for b in bs}) == len(bs)
    # the int8 quantized input: 1x3x128x128 one byte each
    assert any(b.size_bytes == 3 * 128 * 128 for b in bs)
    bound = lower_bound(bs)
    for p in all_plans(bs).values():
        assert p.arena_size >= bound
    report = memory_report(func)
    assert report["lower_bound"] == bound
    assert report["trainable_bytes"] == 0
    assert sum(b["bytes"] for b in report["peak_live_buffers"]) == bound


@pytest.mark.parametrize("include_args", [True, False])
def test_mcunet_train_step_plans(include_args):
    _, sparse, pruned, reordered = mcunet_stages()
    bounds = []
    for module in (sparse, pruned, reordered):
        func = find_func(module, "train_step")
        bs = live_intervals(func, include_args)
        bound = lower_bound(bs)
        plans = all_plans(bs)
        for p in plans.values():
            assert p.arena_size >= bound
        assert plans["best-fit"].arena_size <= min(plans["greedy-by-size"].arena_size,
                                                   plans["first-fit"].arena_size)
        bounds.append(bound)
        masks = [b for b in bs if b.kind == "mask"]
        assert masks, "the saved 1-bit masks are arena buffers"
    # pruning the frozen layers' backward, then applying updates as soon as gradients are
    # ready, each lower the training arena's lower bound
    assert bounds[0] > bounds[1] > bounds[2]


def test_mcunet_report_trainable_bytes():
    reordered = mcunet_stages()[3]
    report = memory_report(find_func(reordered, "train_step"))
    assert report["trainable_bytes"] > 0
    assert report["optimizer_state_bytes"] == 0  # plain SGD
    assert set(report["arena_bytes"]) == set(STRATEGIES)
    assert min(report["arena_bytes"].values()) >= report["lower_bound"]
