"""Budgeted sparse-update scheme search (`tinymlir compile --scheme auto`, `tinymlir search`).

The paper's recipe, on tinymlir's own compiled training step:
1. `contribution.analyze`: fine-tune the compiled host C once per choice (biases of the
   last k layers; one layer's weights at a ratio of its channels) on a calibration task
   (`task.py`; scikit-learn's digits by default) and record each choice's accuracy gain and
   the memory its generated C needs. Cached on disk.
2. `evolution.Searcher`: maximize the summed gains under the memory budget; the winner's
   memory is measured by compiling it (the real pipeline and C emitter's arena).

    result = search_scheme("mcunet-5fps-int8.onnx", "fuse-qdq", Budget(update=100 * 1024))
    print(result.scheme)

What is measured and how: docs/scheme-search.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinymlir.search.contribution import Analysis, RunSettings, analyze, training_spec
from tinymlir.search.evolution import Budget, BudgetError, Memory, Searcher, SearchResult
from tinymlir.search.space import SearchSpace, make_space, model_layers
from tinymlir.search.task import Task, TaskError, digits_task, load_task

__all__ = ["Analysis", "Budget", "BudgetError", "Memory", "RunSettings", "SearchOutcome", "SearchResult",
           "SearchSpace", "Task", "TaskError", "digits_task", "load_task", "search_scheme", "measure_scheme", "prepare"]


@dataclass
class SearchOutcome:
    space: SearchSpace
    analysis: Analysis
    result: SearchResult
    seconds: float


def prepare(model: str | Path, front: str, num_classes: int | None):
    """(layers, the quantized input type after int8-io, the float input shape (C, H, W))."""
    from tinymlir.frontend.onnx_importer import import_onnx
    from tinymlir.pipelines import input_type, run_pipeline

    opts = f"num-classes={num_classes} " if num_classes is not None else ""
    module = run_pipeline(import_onnx(str(model)), f'{front},autodiff{{{opts}trainable="all"}}')
    layers = model_layers(module)
    shape = tuple(input_type(module, "forward").get_shape())
    infer = run_pipeline(import_onnx(str(model)), f"{front},int8-io")
    if len(shape) != 4:
        raise TaskError(f"the scheme search needs an image model (N, C, H, W input), this one takes {list(shape)}")
    return layers, input_type(infer, "forward"), shape[1:]


def measure_scheme(model: str | Path, front: str, text: str, settings: RunSettings, workdir: Path) -> Memory:
    """The arena and trained-param bytes of the generated C of scheme `text` (no build)."""
    from tinymlir.codegen.emit_c import emit_c_info
    from tinymlir.frontend.onnx_importer import import_onnx
    from tinymlir.pipelines import LOWER_TRAIN, run_pipeline

    workdir.mkdir(parents=True, exist_ok=True)
    f = workdir / f"measure-{abs(hash(text)) % 10**12}.scheme"
    f.write_text(text)
    module = run_pipeline(import_onnx(str(model)), training_spec(front, f, settings) + "," + LOWER_TRAIN)
    info = emit_c_info(module, prefix="model")[1]
    return Memory(info.arena_bytes, info.trainable_bytes)


def search_scheme(model: str | Path, front: str, budget: Budget, *, settings: RunSettings = RunSettings(),
                  task: Task | Callable[[tuple[int, int, int]], Task] | None = None, n_fit: int = 500, n_eval: int = 500,
                  first_weight_layer: int | None = None, cache_dir: Path | None = None, jobs: int | None = None,
                  seed: int = 0, min_gain: float | None = None,
                  log: Callable[[str], None] = lambda s: None) -> SearchOutcome:
    """Contribution analysis (cached) + evolutionary search; see the package docstring.
    `task`: the calibration task, or a function of the model's (C, H, W) input shape that
    makes it (default: digits shaped to the model)."""
    from tinymlir.search.contribution import default_cache_dir

    t0 = time.perf_counter()
    layers, itype, shape = prepare(model, front, settings.num_classes)
    space = make_space(layers, first_weight_layer)
    log(f"search space: {space.describe()}")
    task = task(shape) if callable(task) else task or digits_task(shape, n_fit, n_eval)
    analysis = analyze(model, front, space, task, settings, itype, cache_dir, jobs, log)
    workdir = (cache_dir or default_cache_dir()) / "measure"
    searcher = Searcher(space, analysis, budget, lambda text: measure_scheme(model, front, text, settings, workdir),
                        seed=seed, min_gain=min_gain, log=log)
    log(f"gains below {searcher.min_gain * 100:.1f} points (the runs' standard error) count as 0")
    result = searcher.run()
    return SearchOutcome(space, analysis, result, time.perf_counter() - t0)
