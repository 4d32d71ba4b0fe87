"""The budgeted scheme search (tinymlir/search): the evolution finds the best scheme of a
small space under a budget (checked against brute force), trusts only measured memory,
and the whole search runs on the bundled digits example through the compiled C, cached,
and from the `tinymlir search` / `tinymlir compile --scheme auto` command lines."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tinymlir.search import Budget, BudgetError, Memory, RunSettings, search_scheme
from tinymlir.search.contribution import Analysis, Measurement
from tinymlir.search.evolution import Searcher
from tinymlir.search.space import LayerInfo, SearchSpace, make_space, scheme_text
from tinymlir.search.task import digits_task, digits_to_input
from tinymlir.tools.compile import main


# --------------------------------------------------------------------------- evolution on a synthetic analysis


def synthetic(seed: int = 0) -> tuple[SearchSpace, Analysis]:
    """A space of 6 weight layers x 4 ratios and 5 bias depths with random gains and costs."""
    rng = np.random.default_rng(seed)
    layers = [LayerInfo(i, "conv", (8, 8, 1, 1), True) for i in range(12)]
    space = SearchSpace(tuple(layers), 11, (0, 2, 4, 6, 8), (5, 6, 7, 8, 9, 10))
    base = Measurement(0.5, 10_000, 1_000, 0.0)
    bias = {0: base, **{k: Measurement(0.5 + 0.02 * k + rng.uniform(-0.01, 0.01), 10_000 + 500 * k, 1_000 + 40 * k, 0.0)
                        for k in space.bias_grid if k}}
    weights = {}
    for i in space.weight_layers:
        gain, size = rng.uniform(-0.02, 0.08), int(rng.integers(2_000, 9_000))
        for r in space.ratios:
            weights[(i, r)] = Measurement(0.5 + gain * r ** 0.5, 10_000 + (300 if i < 7 else 0), 1_000 + int(size * r), 0.0)
    return space, Analysis(base, bias, weights, inference_arena=9_000, seconds=0.0, cached=0)


def brute_force(searcher: Searcher) -> float:
    space = searcher.space
    best = -1.0
    for g in itertools.product(range(len(space.bias_grid)), *[range(len(space.ratios) + 1)] * len(space.weight_layers)):
        if searcher.overflow(searcher.estimate(g)) == 0:
            best = max(best, searcher.score(g))
    return best


@pytest.mark.parametrize("seed, update", [(0, 12_000), (1, 20_000), (2, 6_000)])
def test_evolution_finds_the_brute_force_optimum_under_the_budget(seed, update):
    space, analysis = synthetic(seed)
    measured = []

    def measure(text: str) -> Memory:  # the estimate is exact in this synthetic space
        measured.append(text)
        return searcher.estimate(searcher_genome(searcher, text))

    searcher = Searcher(space, analysis, Budget(update=update), measure, seed=seed)
    result = searcher.run()
    assert result.memory.update(analysis.inference_arena) <= update
    assert result.score == pytest.approx(brute_force(searcher), abs=1e-12)
    assert measured and result.verifications == len(measured)


def searcher_genome(searcher: Searcher, text: str) -> tuple[int, ...]:
    """The genome of a scheme text (inverse of decode)."""
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    k = int(lines[0].split()[-1])
    weights = dict((int(a), float(b)) for a, b in (e.split(":") for e in (lines[1].split()[1:] if len(lines) > 1 else [])))
    sp = searcher.space
    return (sp.bias_grid.index(k), *[sp.ratios.index(weights[i]) + 1 if i in weights else 0 for i in sp.weight_layers])


def test_measured_memory_overrides_an_optimistic_estimate():
    """The arena estimate can be low (overlapping saved activations): the real figure of the
    winner replaces it and the search goes on until a measured winner fits."""
    space, analysis = synthetic(0)
    calls = []

    def measure(text: str) -> Memory:
        g = searcher_genome(searcher, text)
        est = searcher.estimate(g)
        calls.append(text)
        extra = 3_000 if any(g[1:]) and len(calls) < 3 else 0  # the first two weight schemes need more
        return Memory(est.arena_bytes + extra, est.trainable_bytes)

    searcher = Searcher(space, analysis, Budget(update=12_000), measure, seed=0)
    result = searcher.run()
    assert len(calls) >= 2  # at least one winner was rejected by its measurement
    assert result.memory.update(analysis.inference_arena) <= 12_000
    assert searcher.overflow(result.memory) == 0


def test_gains_within_the_measurement_noise_buy_no_memory():
    """A choice whose gain is below the runs' standard error (2.9 points at 70 % on 500
    images) is left out even when the budget would allow it; a clear gain is kept."""
    layers = [LayerInfo(i, "conv", (8, 8, 1, 1), True) for i in range(4)]
    space = SearchSpace(tuple(layers), 3, (0, 2), (1, 2))
    base = Measurement(0.70, 10_000, 1_000, 0.0)
    weights = {(1, r): Measurement(0.71, 10_000, 1_000 + int(4_000 * r), 0.0) for r in space.ratios}  # +1 point
    weights.update({(2, r): Measurement(0.70 + 0.06 * r, 10_000, 1_000 + int(4_000 * r), 0.0) for r in space.ratios})
    analysis = Analysis(base, {0: base, 2: Measurement(0.702, 10_000, 1_100, 0.0)}, weights, inference_arena=10_000,
                        seconds=0.0, cached=0, n_eval=500)
    assert analysis.standard_error() == pytest.approx((2 * 0.7 * 0.3 / 500) ** 0.5)
    searcher = Searcher(space, analysis, Budget(update=1_000_000), lambda t: searcher.estimate(searcher_genome(
        searcher, t)), seed=0)
    result = searcher.run()
    assert result.weights == {2: 1.0} and result.bias_last == 0
    loose = Searcher(space, analysis, Budget(update=1_000_000), lambda t: loose.estimate(searcher_genome(loose, t)),
                     seed=0, min_gain=0.0)
    assert loose.run().weights == {1: 0.125, 2: 1.0}  # +1 point at any ratio: the smallest


def test_a_budget_nothing_fits_is_a_one_line_error():
    space, analysis = synthetic(0)
    searcher = Searcher(space, analysis, Budget(total=5_000), lambda t: Memory(10_000, 1_000), seed=0)
    with pytest.raises(BudgetError, match="even training only the classifier needs arena 10,000 B"):
        searcher.run()


def test_same_seed_same_scheme():
    space, analysis = synthetic(3)
    runs = [Searcher(space, analysis, Budget(update=15_000), lambda t: Memory(10_000, 1_000), seed=7)
            for _ in range(2)]
    assert runs[0].evolve(np.random.default_rng(7)) == runs[1].evolve(np.random.default_rng(7))


def test_space_and_scheme_text():
    layers = [LayerInfo(i, "depthwise" if i % 3 == 1 else "conv", (4, 1 if i % 3 == 1 else 4, 3, 3), True)
              for i in range(20)] + [LayerInfo(20, "fc", (10, 4), True)]
    space = make_space(layers)
    assert space.classifier == 20 and space.bias_grid[0] == 0 and space.bias_grid[-1] == 20
    assert all(i >= 10 and i % 3 != 1 for i in space.weight_layers)
    assert scheme_text(3, {12: 0.25, 10: 1.0}) == "bias last 3\nweights 10:1 12:0.25\n"


def test_digits_task_shapes_and_range():
    task = digits_task((3, 32, 24), n_fit=40, n_eval=20)
    assert task.x_fit.shape == (40, 3, 32, 24) and task.x_eval.shape == (20, 3, 32, 24)
    assert task.x_fit.min() >= -1.0 and task.x_fit.max() <= 1.0
    x = digits_to_input(np.arange(64, dtype=np.float32).reshape(8, 8) % 17, (1, 16, 16))
    assert x.shape == (1, 1, 16, 16) and x[0, 0, 1, 1] == x[0, 0, 0, 0] == np.float32(0 / 8 - 1)


# --------------------------------------------------------------------------- end to end on the digits example


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    from tinymlir.examples.digits import make_example

    return make_example(tmp_path_factory.mktemp("search_example"), seed=0)


@pytest.fixture(scope="module")
def searched(example, tmp_path_factory):
    cache = tmp_path_factory.mktemp("search_cache")
    front = f'fold-batch-norm,quantize-ptq{{calibration="{example["calib"]}"}}'
    logs: list[str] = []
    outcome = search_scheme(example["onnx"], front, Budget(update=3 * 1024), settings=RunSettings(lr=0.01),
                            n_fit=120, n_eval=80, cache_dir=cache, jobs=2, log=logs.append)
    return front, cache, outcome, logs


def test_search_on_the_digits_example_measures_every_choice(searched):
    _, _, outcome, logs = searched
    a, space = outcome.analysis, outcome.space
    assert set(a.bias) == set(space.bias_grid) and set(a.weights) == {(i, r) for i in space.weight_layers
                                                                       for r in space.ratios}
    assert a.cached == 0 and any("[13/13]" in ln or "/13]" in ln for ln in logs)
    # training more layers keeps more params in SRAM: a whole weight costs more than 1/8 of it
    for i in space.weight_layers:
        assert a.weights[(i, 1.0)].trainable_bytes > a.weights[(i, 0.125)].trainable_bytes > a.baseline.trainable_bytes
    r = outcome.result
    assert r.memory.update(r.inference_arena) <= 3 * 1024


def test_trained_bytes_add_up_exactly_as_the_search_assumes(searched, example, tmp_path):
    """The trainable-bytes part of the estimate is exact: a two-choice scheme's measured SRAM
    params equal the baseline plus both choices' own additions."""
    from tinymlir.search import measure_scheme

    front, _, outcome, _ = searched
    a, space = outcome.analysis, outcome.space
    k, (i, j) = space.bias_grid[-1], space.weight_layers[:2]
    m = measure_scheme(example["onnx"], front, scheme_text(k, {i: 0.5, j: 1.0}), RunSettings(lr=0.01), tmp_path)
    base = a.baseline.trainable_bytes
    expect = base + (a.bias[k].trainable_bytes - base) + (a.weights[(i, 0.5)].trainable_bytes - base) \
        + (a.weights[(j, 1.0)].trainable_bytes - base)
    assert m.trainable_bytes == expect


def test_second_search_comes_from_the_cache_and_is_deterministic(searched, example):
    front, cache, first, _ = searched
    again = search_scheme(example["onnx"], front, Budget(update=3 * 1024), settings=RunSettings(lr=0.01),
                          n_fit=120, n_eval=80, cache_dir=cache, jobs=2)
    assert again.analysis.cached == len(first.analysis.bias) - 1 + len(first.analysis.weights) + 1
    assert again.analysis.seconds == 0.0
    assert again.result.scheme == first.result.scheme
    runs = json.loads(next(cache.glob("*/runs.json")).read_text())["runs"]
    assert first.result.scheme not in runs  # the cache holds the measured choices, not results


def test_search_command_writes_a_scheme_the_compiler_accepts(searched, example, tmp_path, capsys):
    _, cache, _, _ = searched
    out = tmp_path / "found.scheme"
    argv = ["search", str(example["onnx"]), "--calibration", str(example["calib"]), "--update-budget", "3KB",
            "--search-lr", "0.01", "--task-fit", "120", "--task-eval", "80", "--search-cache", str(cache), "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "contribution of each choice" in text and "searched scheme" in text and "update memory" in text
    assert out.read_text().startswith("# searched: update memory <= 3,072 B\nbias last ")
    proj = tmp_path / "proj"
    argv = ["compile", str(example["onnx"]), "--calibration", str(example["calib"]), "--train", "--num-classes", "10",
            "--scheme", "auto", "--update-budget", "3KB", "--search-lr", "0.01", "--task-fit", "120",
            "--task-eval", "80", "--search-cache", str(cache), "--target", "host", "-o", str(proj)]
    assert main(argv) == 0
    assert (proj / "auto.scheme").read_text() == out.read_text()
    assert "searched scheme" in (proj / "summary.txt").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--update-budget", "1B"], "no scheme fits update memory <= 1 B"),
    ([], "needs a budget"),
    (["--update-budget", "3KB", "--task-fit", "0"], "--task-fit must be at least 1"),
    (["--update-budget", "3KB", "--task", "missing.npz"], "cannot read x and y"),
])
def test_search_errors_are_one_line(searched, example, capsys, extra, message):
    _, cache, _, _ = searched
    argv = ["search", str(example["onnx"]), "--calibration", str(example["calib"]), "--search-lr", "0.01",
            "--task-fit", "120", "--task-eval", "80", "--search-cache", str(cache), *extra]
    assert main(argv) == 1
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("tinymlir search:")]
    assert len(err) == 1 and message in err[0], err


def test_a_user_task_from_npz(example, tmp_path, capsys):
    """`--task x.npz`: the runs train and evaluate on the user's samples (their count is in
    the table's accuracies: multiples of 1/10 with 10 evaluation samples)."""
    x = np.load(example["test_x"])[:40].astype(np.float32)
    y = np.load(example["test_y"])[:40]
    np.savez(tmp_path / "task.npz", x=x, y=y)
    argv = ["search", str(example["onnx"]), "--calibration", str(example["calib"]), "--update-budget", "3KB",
            "--search-lr", "0.01", "--task", str(tmp_path / "task.npz"), "--task-fit", "30", "--task-eval", "10",
            "--search-cache", str(tmp_path / "cache"), "--search-jobs", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [ln.split("|") for ln in out.splitlines() if ln.startswith("| classifier only") or ln.startswith("| weights")]
    assert rows and all(float(r[2]) % 10 == 0 for r in rows), rows  # accuracies in %: multiples of 1/10
    assert "searched scheme" in out
