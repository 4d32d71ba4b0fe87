"""Contribution analysis: what each choice of a scheme is worth, measured by fine-tuning.

Every run compiles one scheme to host C (the real pipeline: training passes, LOWER_TRAIN,
emit_c, gcc), fine-tunes it on the task's fit set by calling `model_train_step` (batch 1,
plain SGD, cosine decay of the learning rate, one fixed sample order, stochastic rounding
of the int8 updates by default: no Python inside a step) and reads the accuracy of
`model_infer` on the eval set.

First a probe: the new classifier alone is trained over the fit set (at `probe_lr`) and
its parameters saved; every run below starts from that classifier (written into the
library's parameter storage). Measured from a random classifier instead, a short run
mostly measures how fast the head learns, and backbone updates driven by a random head
only hurt (on MCUNet-5fps every conv weight choice scored below the classifier alone).
The runs:
- the baseline: only the (probed) classifier trains on;
- for each k of the bias grid: classifier + biases of the last k layers;
- for each weight layer i and ratio r: classifier + layer i's weights at ratio r.
The contribution of a choice is its accuracy minus the baseline's (the paper's
ΔAcc_b[k] and ΔAcc_{W_i, r}); the search sums them. Every run also reports what the
compiled step needs: the arena and the trained (SRAM) parameter bytes of the generated C.

Runs go to a process pool (`jobs`, default: the cores) and are cached on disk, one JSON
file per (model, front, task, settings): an interrupted analysis resumes, a second search
over the same model (another budget) costs nothing. Delete the directory to re-measure.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tinymlir.search.space import SearchSpace, scheme_text
from tinymlir.search.task import Task

#: Bumped when what a run measures changes (invalidates the caches).
ANALYSIS_VERSION = 2


@dataclass(frozen=True)
class RunSettings:
    """How a contribution run trains (part of the cache key)."""

    lr: float = 3e-3
    epochs: int = 1
    seed: int = 0
    rounding: str = "stochastic"
    num_classes: int | None = 10
    probe_lr: float = 1e-2  # the classifier-only run every choice starts from


@dataclass(frozen=True)
class Measurement:
    accuracy: float
    arena_bytes: int
    trainable_bytes: int
    seconds: float


@dataclass
class Analysis:
    """The measured runs of one search space."""

    baseline: Measurement
    bias: dict[int, Measurement]
    weights: dict[tuple[int, float], Measurement]
    inference_arena: int
    seconds: float  # wall time of the runs made now (0 when all came from the cache)
    cached: int     # how many runs came from the cache
    probe: Measurement | None = None  # the classifier trained alone from its random init
    n_eval: int = 0                   # evaluation samples per run

    def standard_error(self) -> float:
        """The standard error of the difference of two runs' accuracies (as independent
        binomials at the baseline's accuracy): the noise a contribution is measured with."""
        p = min(max(self.baseline.accuracy, 1.0 / max(self.n_eval, 1)), 1.0 - 1.0 / max(self.n_eval, 1))
        return math.sqrt(2.0 * p * (1.0 - p) / self.n_eval) if self.n_eval else 0.0

    def delta_bias(self, k: int) -> float:
        return self.bias[k].accuracy - self.baseline.accuracy if k else 0.0

    def delta_weight(self, layer: int, ratio: float) -> float:
        return self.weights[(layer, ratio)].accuracy - self.baseline.accuracy

    def table(self) -> str:
        b = self.baseline
        rows = ["| choice | accuracy % | Δ points | arena KB | trained params KB |", "| --- | --- | --- | --- | --- |"]
        if self.probe is not None:
            rows.append(f"| (probe: the new classifier from its random init) | {self.probe.accuracy * 100:.1f} | | | |")
        rows.append(f"| classifier only | {b.accuracy * 100:.1f} | 0 | {b.arena_bytes / 1024:.1f} | "
                    f"{b.trainable_bytes / 1024:.1f} |")
        for k, m in sorted(self.bias.items()):
            if k:
                rows.append(f"| bias last {k} | {m.accuracy * 100:.1f} | {self.delta_bias(k) * 100:+.1f} | "
                            f"{m.arena_bytes / 1024:.1f} | {m.trainable_bytes / 1024:.1f} |")
        for (i, r), m in sorted(self.weights.items()):
            rows.append(f"| weights {i}:{r:g} | {m.accuracy * 100:.1f} | {self.delta_weight(i, r) * 100:+.1f} | "
                        f"{m.arena_bytes / 1024:.1f} | {m.trainable_bytes / 1024:.1f} |")
        return "\n".join(rows)


def training_spec(front: str, scheme_file: Path, settings: RunSettings) -> str:
    """The level-4 pipeline of one scheme: `train_pipeline`'s, with the run's seed."""
    from tinymlir.pipelines import train_pipeline

    return train_pipeline(scheme=scheme_file, num_classes=settings.num_classes, trainable="all",
                          rounding=settings.rounding, front=front, seed=settings.seed)


def finetune(net, x_fit: np.ndarray, y_fit: np.ndarray, settings: RunSettings) -> None:
    """Batch-1 SGD over the (int8 NHWC) fit set, cosine decay from lr to 0, the sample
    order from default_rng(seed)."""
    rng = np.random.default_rng(settings.seed)
    total, t = settings.epochs * len(x_fit), 0
    for _ in range(settings.epochs):
        for i in rng.permutation(len(x_fit)):
            net.step(x_fit[i][None], int(y_fit[i]), settings.lr * 0.5 * (1.0 + math.cos(math.pi * t / total)))
            t += 1


def run_scheme(model: str, front: str, text: str, settings: RunSettings, data: str, workdir: str,
               start: str | None = None, save: tuple[str, str] | None = None) -> dict:
    """One run (in a worker process): compile `text`, fine-tune, evaluate. `start`: an .npz
    of trained params (name -> bytes) to start from; `save` = (path, prefix): write the
    params whose names start with prefix there after training (the probe)."""
    from tinymlir.codegen.host_lib import build_training_library
    from tinymlir.frontend.onnx_importer import import_onnx
    from tinymlir.pipelines import run_pipeline

    t0 = time.perf_counter()
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    scheme_file = wd / "scheme.scheme"
    scheme_file.write_text(text)
    module = run_pipeline(import_onnx(model), training_spec(front, scheme_file, settings))
    lib = build_training_library(module, wd)
    arrays = np.load(data)
    net = lib.load()
    if start is not None:
        params = net.params()
        for name, value in np.load(start).items():
            if name not in params or params[name].nbytes != value.nbytes:
                raise ValueError(f"the probe's {name} does not match this scheme's parameters")
            params[name][:] = value
    finetune(net, arrays["x_fit"], arrays["y_fit"], settings)
    if save is not None:
        np.savez(save[0], **{n: v.copy() for n, v in net.params().items() if n.startswith(save[1])
                             and not n.endswith(".rng")})
    acc = float((net.predict(arrays["x_eval"]) == arrays["y_eval"]).mean())
    return asdict(Measurement(acc, lib.arena_bytes, lib.trainable_bytes, time.perf_counter() - t0))


def inference_arena(model: str, front: str) -> int:
    """The arena of the generated inference alone (int8 I/O): what training adds is measured
    against it."""
    from tinymlir.codegen.emit_c import emit_c_info
    from tinymlir.frontend.onnx_importer import import_onnx
    from tinymlir.pipelines import LOWER_INFER, run_pipeline

    module = run_pipeline(import_onnx(model), f"{front},{LOWER_INFER}")
    return emit_c_info(module, prefix="model")[1].arena_bytes


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class RunCache:
    """scheme text -> Measurement, in `dir/runs.json` (rewritten atomically after each run)."""

    def __init__(self, directory: Path, key: dict) -> None:
        self.dir = directory
        self.path = directory / "runs.json"
        self.key = key
        self.runs: dict[str, dict] = {}
        if self.path.exists():
            try:
                stored = json.loads(self.path.read_text())
                if stored.get("key") == key:
                    self.runs = stored["runs"]
            except (OSError, ValueError, KeyError):
                self.runs = {}  # unreadable: measure again

    def get(self, text: str) -> Measurement | None:
        r = self.runs.get(text)
        return Measurement(**r) if r else None

    def put(self, text: str, m: dict) -> None:
        self.runs[text] = m
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": self.key, "runs": self.runs}, indent=1, sort_keys=True))
        tmp.replace(self.path)


def default_cache_dir() -> Path:
    return Path(os.environ.get("TINYMLIR_CACHE", Path.home() / ".cache" / "tinymlir")) / "search"


def analyze(model: str | Path, front: str, space: SearchSpace, task: Task, settings: RunSettings,
            input_type, cache_dir: Path | None = None, jobs: int | None = None,
            log: Callable[[str], None] = lambda s: None) -> Analysis:
    """Measure every choice of `space` (see the module docstring). `input_type` is the
    model's quantized input type (after int8-io), to quantize the task once."""
    from tinymlir.pipelines import quantize_nhwc

    model = str(Path(model).resolve())
    key = {"version": ANALYSIS_VERSION, "model": file_hash(model), "front": _front_key(front),
           "task": task.fingerprint(), "settings": asdict(settings)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    directory = (cache_dir or default_cache_dir()) / f"{Path(model).stem}-{digest}"
    cache = RunCache(directory, key)
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "task.npz"
    if not data.exists():
        np.savez(data, x_fit=quantize_nhwc(task.x_fit, input_type), y_fit=task.y_fit,
                 x_eval=quantize_nhwc(task.x_eval, input_type), y_eval=task.y_eval)

    choices: list[tuple[str, object]] = [("base", None)]
    choices += [("bias", k) for k in space.bias_grid if k]
    choices += [("weight", (i, r)) for i in space.weight_layers for r in space.ratios]
    texts = {c: _choice_text(*c) for c in choices}
    probe, probe_text = directory / "probe.npz", "# probe\n" + texts[("base", None)]
    todo = [c for c in choices if cache.get(texts[c]) is None]
    cached = len(choices) - len(todo)
    log(f"contribution analysis: {len(choices)} runs ({cached} cached) in {directory}")
    t0 = time.perf_counter()
    if todo and (cache.get(probe_text) is None or not probe.exists()):
        log("probe: training the new classifier alone first (every run starts from it)")
        m = run_scheme(model, front, texts[("base", None)], replace(settings, lr=settings.probe_lr), str(data),
                       str(directory / "work" / "probe"), save=(str(probe), f"layer{space.classifier}."))
        cache.put(probe_text, m)
        log(f"probe: accuracy {m['accuracy'] * 100:.1f}% ({m['seconds']:.1f} s)")
    if todo:
        jobs = jobs or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
            futures = {pool.submit(run_scheme, model, front, texts[c], settings, str(data),
                                   str(directory / "work" / f"{c[0]}-{_slug(c[1])}"), str(probe)): c for c in todo}
            for done, f in enumerate(as_completed(futures), start=1):
                c = futures[f]
                m = f.result()
                cache.put(texts[c], m)
                log(f"[{done}/{len(todo)}] {texts[c].strip().splitlines()[-1]}: accuracy {m['accuracy'] * 100:.1f}% "
                    f"({m['seconds']:.1f} s, {time.perf_counter() - t0:.0f} s elapsed)")
    base = cache.get(texts[("base", None)])
    bias = {0: base}
    bias.update({k: cache.get(texts[("bias", k)]) for k in space.bias_grid if k})
    weights = {(i, r): cache.get(texts[("weight", (i, r))]) for i in space.weight_layers for r in space.ratios}
    arena = _cached_inference_arena(cache, model, front)
    return Analysis(base, bias, weights, arena, time.perf_counter() - t0 if todo else 0.0, cached,
                    cache.get(probe_text), len(task.y_eval))


def _choice_text(kind: str, value) -> str:
    if kind == "base":
        return scheme_text(0, {}, "classifier only")
    if kind == "bias":
        return scheme_text(value, {}, f"bias last {value}")
    i, r = value
    return scheme_text(0, {i: r}, f"weights {i}:{r:g}")


def _slug(value) -> str:
    return "x".join(f"{v:g}" for v in value) if isinstance(value, tuple) else str(value)


def _front_key(front: str) -> str:
    """The front pipeline with each quoted file replaced by its content hash."""
    import re

    return re.sub(r'"([^"]+)"', lambda m: f'"{file_hash(m.group(1))}"' if Path(m.group(1)).is_file() else m.group(0),
                  front)


def _cached_inference_arena(cache: RunCache, model: str, front: str) -> int:
    entry = cache.get("# inference\n")
    if entry is None:
        arena = inference_arena(model, front)
        cache.put("# inference\n", asdict(Measurement(0.0, arena, 0, 0.0)))
        return arena
    return entry.arena_bytes
