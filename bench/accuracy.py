"""Transfer-learning accuracy of MCUNet-5fps on scikit-learn's digits: the int8 training
step compiled to C (with and without QAS, sparse schemes) against PyTorch fp32.

The accuracy experiment of Lin et al. 2022 ("On-Device Training Under 256KB Memory",
table 2 style) at the scale of this machine. Every int8 row is trained by the GENERATED C:
the training pipeline, `LOWER_TRAIN`, `emit_c`, `build_host` -> a shared library, loaded
with ctypes; Python loops over the samples calling `model_train_step` (batch 1, plain SGD)
and evaluates with `model_infer` (argmax of the int8 logits).

Data: `sklearn.datasets.load_digits` (1797 images, 8x8, values 0..16, 10 classes), split
75/25 stratified with `random_state=0` (1347 train / 450 test). Each image is scaled to
the range the model was trained on, [-1, 1]: `v / 8 - 1` (i.e. `(v/16 - 0.5) / 0.5`),
upscaled to 128x128 by nearest neighbour (each pixel a 16x16 block) and repeated over
the 3 channels (NCHW float32). The int8 models' input is quantized with the int8 model's
own input quantization (scale 1/127.5, zero point 0 for MCUNet-5fps) by
`tinymlir.pipelines.quantize_nhwc` (NHWC int8, as `int8-io` makes the functions take it).

Configurations (same trainable set as the paper's 99kb scheme unless said otherwise; the
classifier is replaced by a new 10-way one, initialised from `numpy.random.default_rng(seed)`
both in tinymlir's `autodiff{seed=...}` and in `bench/onnx_to_torch.replace_classifier`):

  fp32-99kb        PyTorch fp32 (the fp32 twin, converted by bench/onnx_to_torch.py), the
                   99kb scheme's biases/weights; partly trained weights (ratio < 1) train
                   only their selected output channels (gradient masked, largest L2 norm
                   first, as tinymlir's `sparse-update`)
  int8-noqas-99kb  C, `train_pipeline(scheme=99kb)` without `qas` (SGD on the integers)
  int8-qas-99kb    C, `train_pipeline(scheme=99kb)` (QAS)
  int8-bias-only   C, QAS, `sparse-update{bias-last=22}`: biases of the 22 layers before
                   the classifier + the classifier, no other weight
  searched-100kb   C, QAS, the scheme `tinymlir search` finds for an update budget of 100 KB
                   (tinymlir/search: contribution runs of the compiled C on 500 + 300 images of
                   the training split, never the test split; cached in ~/.cache/tinymlir/search)
  fp32-full        PyTorch fp32, every weight and bias
  int8-qas-49kb,   C, QAS, the paper's other MCUNet schemes, for the accuracy-vs-memory
  int8-qas-148kb   plot (in the default run, not in --quick)
  searched-50kb .. searched-150kb: C, QAS, searched schemes at 50/75/125/150 KB, the
                   accuracy-vs-budget curve (update memory = arena + trained params - the
                   inference arena; in the default run, not in --quick)

Training: batch 1, SGD without momentum, a cosine learning-rate decay from lr to 0 over the
whole run, `--epochs` passes over the training split in an order drawn from
`numpy.random.default_rng(seed)`. The seed also sets the classifier init. Learning rates:
the defaults in `LRS` were chosen with `--sweep` (grid `GRIDS`, seed 0, one epoch over 400
images of an 80/20 stratified split of the training set, accuracy on its 270 validation
images; never on the test split, with nearest rounding); see docs/benchmarks/accuracy.md.
The int8 updates round stochastically (tinymlir's default; `int8-qas-99kb-nearest` is the
99kb row with round-to-nearest, for comparison: small updates then vanish).

    python bench/accuracy.py                       # the default run (3 seeds)
    python bench/accuracy.py --quick               # ~2 min smoke run: 1 seed, 400 train / 150 test images
    python bench/accuracy.py --configs int8-qas-99kb fp32-99kb --seeds 0 1 --epochs 2 --json out.json
    python bench/accuracy.py --sweep               # the learning-rate sweep (validation split)
    python bench/accuracy.py --plot-from a.json b.json --plot docs/benchmarks/accuracy.png

torch runs with one thread (`torch.set_num_threads(1)`; the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS_DIR = Path(os.environ.get("TINYMLIR_MODELS", REPO.parent / "shared" / "models"))
INT8_MODEL = "mcunet-5fps-int8.onnx"
FP32_MODEL = "mcunet-5fps-fp32.onnx"
SCHEMES = REPO / "schemes"
NUM_CLASSES = 10
SIZE = 128


# --------------------------------------------------------------------------- data


def load_split(test_size: float = 0.25, random_state: int = 0):
    """(x_train, y_train, x_test, y_test): 8x8 images (float32, 0..16) and int labels,
    the fixed stratified split (`tinymlir.search.task.digits_split`)."""
    from tinymlir.search.task import digits_split

    return digits_split(test_size, random_state)


def validation_split(x: np.ndarray, y: np.ndarray, val_size: float = 0.2, random_state: int = 0):
    """(x_fit, y_fit, x_val, y_val): a stratified split of the training set for the lr sweep."""
    from sklearn.model_selection import train_test_split

    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=val_size, random_state=random_state, stratify=y)
    return x_fit, y_fit, x_val, y_val


def to_input(images: np.ndarray) -> np.ndarray:
    """8x8 digits (N, 8, 8) or (8, 8), values 0..16 -> (N, 3, 128, 128) float32 in [-1, 1]:
    v / 8 - 1, nearest-neighbour upscaling (16x16 blocks), the gray channel repeated."""
    from tinymlir.search.task import digits_to_input

    return digits_to_input(images, (3, SIZE, SIZE))


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    kind: str                  # "c" (int8, generated C), "torch" (fp32), "skip"
    trainable: str             # what trains, for the table
    scheme: str | None = None  # scheme file name under schemes/, or None
    bias_last: int | None = None
    qas: bool = True
    full: bool = False
    rounding: str = "stochastic"
    note: str = ""
    budget_kb: int | None = None  # searched: the scheme `tinymlir search` finds for this update budget


CONFIGS = {c.key: c for c in [
    Config("fp32-99kb", "(i) PyTorch fp32, 99kb scheme", "torch", "99kb scheme", scheme="mcunet-5fps-99kb.scheme"),
    Config("int8-noqas-99kb", "(ii) int8 C, no QAS, 99kb scheme", "c", "99kb scheme",
           scheme="mcunet-5fps-99kb.scheme", qas=False),
    Config("int8-qas-99kb", "(iii) int8 C, QAS, 99kb scheme", "c", "99kb scheme", scheme="mcunet-5fps-99kb.scheme"),
    Config("int8-bias-only", "(iv) int8 C, QAS, biases only", "c", "bias last 22 + classifier", bias_last=22),
    Config("searched-100kb", "(v) int8 C, QAS, searched scheme at 100 KB", "c", "searched, 100 KB", budget_kb=100),
    Config("fp32-full", "(vi) PyTorch fp32, full update", "torch", "all", full=True),
    Config("int8-qas-99kb-nearest", "int8 C, QAS, 99kb scheme, round to nearest", "c", "99kb scheme",
           scheme="mcunet-5fps-99kb.scheme", rounding="nearest"),
    Config("int8-qas-49kb", "int8 C, QAS, 49kb scheme", "c", "49kb scheme", scheme="mcunet-5fps-49kb.scheme"),
    Config("int8-qas-148kb", "int8 C, QAS, 148kb scheme", "c", "148kb scheme", scheme="mcunet-5fps-148kb.scheme"),
]}
for _kb in (50, 75, 125, 150):  # the accuracy-vs-budget curve
    CONFIGS[f"searched-{_kb}kb"] = Config(f"searched-{_kb}kb", f"int8 C, QAS, searched scheme at {_kb} KB", "c",
                                          f"searched, {_kb} KB", budget_kb=_kb)
BUDGET_CONFIGS = ["searched-50kb", "searched-75kb", "searched-100kb", "searched-125kb", "searched-150kb"]
PAPER_CONFIGS = ["fp32-99kb", "int8-noqas-99kb", "int8-qas-99kb", "int8-bias-only", "searched-100kb", "fp32-full"]
MEMORY_CONFIGS = ["int8-qas-49kb", "int8-qas-99kb", "int8-qas-148kb"]
DEFAULT_CONFIGS = PAPER_CONFIGS + ["int8-qas-99kb-nearest", "int8-qas-49kb", "int8-qas-148kb"] + [k for k in BUDGET_CONFIGS
                                                                         if k not in PAPER_CONFIGS]

# learning-rate grids of --sweep, and the rates it chose (docs/benchmarks/accuracy.md)
GRIDS = {
    "fp32-99kb": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "int8-noqas-99kb": (1.0, 10.0, 100.0, 1000.0, 10000.0),
    "int8-qas-99kb": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "int8-bias-only": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),  # extended: 3e-2 was the edge
    "fp32-full": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3),
}
GRIDS["int8-qas-49kb"] = GRIDS["int8-qas-148kb"] = GRIDS["int8-qas-99kb"]
LRS = {  # --sweep's choices (validation accuracy, docs/benchmarks/accuracy.md)
    "fp32-99kb": 3e-3,
    "int8-noqas-99kb": 1000.0,
    "int8-qas-99kb": 3e-3,
    "int8-bias-only": 3e-2,
    "fp32-full": 1e-4,
}
LRS["int8-qas-49kb"] = LRS["int8-qas-148kb"] = LRS["int8-qas-99kb-nearest"] = LRS["int8-qas-99kb"]  # not swept separately
for _k in BUDGET_CONFIGS:
    LRS[_k] = LRS["int8-qas-99kb"]


def searched_scheme(cfg: Config, workdir: Path, models_dir: Path = MODELS_DIR, log=print) -> tuple[Config, dict]:
    """`cfg` with the scheme the search finds for its update budget (the contribution runs
    are cached in ~/.cache/tinymlir/search, or $TINYMLIR_CACHE/search), and what the search
    reported. The search's task is drawn from the training split only (never the test split)."""
    from tinymlir.search import Budget, RunSettings, search_scheme

    outcome = search_scheme(models_dir / INT8_MODEL, "fuse-qdq", Budget(update=cfg.budget_kb * 1024),
                            settings=RunSettings(num_classes=NUM_CLASSES), log=lambda s: log(f"  {s}"))
    r = outcome.result
    path = workdir / f"{cfg.key}.scheme"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(r.scheme)
    info = {"scheme": r.scheme, "predicted_gain": r.score, "update_bytes": r.memory.update(r.inference_arena),
            "search_s": outcome.seconds, "contribution_runs_cached": outcome.analysis.cached}
    log(f"  searched {cfg.budget_kb} KB: {' '.join(r.scheme.split(chr(10))[1:]).strip()} "
        f"(update memory {info['update_bytes'] / 1024:.1f} KB, {outcome.seconds:.0f} s)")
    return replace(cfg, scheme=str(path), trainable=cfg.trainable + ": " + " ".join(r.scheme.split("\n")[1:]).strip()), info


def c_spec(cfg: Config, seed: int) -> str:
    """The training pipeline of an int8 configuration: `train_pipeline`'s, with autodiff's
    seed, without `qas` for the no-QAS row, `bias-last=` for the biases-only row."""
    from tinymlir.pipelines import train_pipeline

    spec = train_pipeline(scheme=SCHEMES / cfg.scheme if cfg.scheme else None, num_classes=NUM_CLASSES,
                          trainable="all", rounding=cfg.rounding, seed=seed)  # (without a scheme: sparse-update{bias-last=} restricts it)
    if not cfg.qas:
        assert ",qas," in spec
        spec = spec.replace(",qas,", ",", 1)
    if cfg.bias_last is not None:
        assert "sparse-update" not in spec
        spec = spec.replace(",prune-backward", f",sparse-update{{bias-last={cfg.bias_last}}},prune-backward", 1)
    return spec


# --------------------------------------------------------------------------- int8: the generated C


def compile_c(spec: str, outdir: Path, models_dir: Path = MODELS_DIR, tag: str = "model"):
    """import -> `spec` -> LOWER_TRAIN -> emit_c -> build_host: a `TrainingLibrary`."""
    from tinymlir.codegen.host_lib import build_training_library
    from tinymlir.frontend.onnx_importer import import_onnx
    from tinymlir.pipelines import run_pipeline

    t0 = time.perf_counter()
    module = run_pipeline(import_onnx(str(models_dir / INT8_MODEL)), spec)
    lib = build_training_library(module, outdir, name=f"lib{tag}.so")
    lib.compile_s = time.perf_counter() - t0
    return lib


class CNet:
    """A loaded generated training step (`tinymlir.codegen.host_lib.HostNet`) fed 8x8 digits."""

    def __init__(self, net) -> None:
        self.net = net

    @property
    def skipped(self) -> int:
        return self.net.skipped

    def step(self, image: np.ndarray, label: int, lr: float) -> float:
        return self.net.step(self.net.quantize(to_input(image)), label, lr)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.net.predict(self.net.quantize(to_input(images)))


# --------------------------------------------------------------------------- fp32: PyTorch


class TorchNet:
    """The fp32 twin in PyTorch (bench/onnx_to_torch.py), new classifier from `seed`, the
    trainable set of a scheme (or everything), SGD."""

    def __init__(self, cfg: Config, seed: int, models_dir: Path = MODELS_DIR) -> None:
        import torch

        from bench.onnx_to_torch import replace_classifier, set_trainable, torch_model_from_onnx
        from tinymlir.passes.scheme import load_scheme
        from tinymlir.passes.sparse_update import channel_count

        torch.set_num_threads(1)
        self.torch = torch
        m = torch_model_from_onnx(models_dir / FP32_MODEL)
        replace_classifier(m, NUM_CLASSES, seed)
        n = len(m.layers)
        cls = n - 1
        if cfg.full:
            params = set_trainable(m, biases=range(n), weights=range(n))
        else:
            scheme = load_scheme(SCHEMES / cfg.scheme)
            ratios = scheme.ratios()
            params = set_trainable(m, biases=[*range(cls - scheme.bias_last, cls), cls], weights=[*ratios, cls])
            for i, r in ratios.items():
                w = m.layers[i].weight
                k = channel_count(r, w.shape[0])
                if k == w.shape[0]:
                    continue
                norms = np.sqrt((w.detach().double().reshape(w.shape[0], -1).numpy() ** 2).sum(axis=1))
                mask = torch.zeros(w.shape[0], *([1] * (w.dim() - 1)))
                mask[np.argsort(-norms, kind="stable")[:k]] = 1.0
                w.register_hook(lambda g, mask=mask: g * mask)  # only the selected output channels train
        self.model = m.train()
        self.opt = torch.optim.SGD(params, lr=0.0)
        self.params = params
        self.skipped = 0

    def step(self, image: np.ndarray, label: int, lr: float) -> float:
        torch = self.torch
        for g in self.opt.param_groups:
            g["lr"] = float(lr)
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.model(torch.from_numpy(to_input(image))),
                                                 torch.tensor([int(label)]))
        loss.backward()
        self.opt.step()
        return loss.item()

    def predict(self, images: np.ndarray, batch: int = 25) -> np.ndarray:
        torch = self.torch
        out = []
        with torch.no_grad():
            for s in range(0, len(images), batch):
                out.append(self.model(torch.from_numpy(to_input(images[s : s + batch]))).argmax(1).numpy())
        return np.concatenate(out)


# --------------------------------------------------------------------------- training


def train(net, x: np.ndarray, y: np.ndarray, lr: float, epochs: int, seed: int) -> dict:
    """Batch 1, the order from default_rng(seed), cosine decay from lr to 0; returns
    the mean loss of the last epoch and the step rate."""
    rng = np.random.default_rng(seed)
    total, t = epochs * len(x), 0
    t0 = time.perf_counter()
    losses = []
    for _ in range(epochs):
        losses = []
        for i in rng.permutation(len(x)):
            lr_t = lr * 0.5 * (1.0 + math.cos(math.pi * t / total))
            losses.append(net.step(x[i], int(y[i]), lr_t))
            t += 1
    dt = time.perf_counter() - t0
    return {"train_s": dt, "steps_per_s": total / dt, "last_epoch_loss": float(np.mean(losses)),
            "skipped_steps": int(net.skipped)}


def accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    return float((net.predict(x) == y).mean())


def make_net(cfg: Config, seed: int, builds: dict, workdir: Path, models_dir: Path, log=print):
    """A freshly initialised network of `cfg` for `seed` (C: compiled once per config and
    seed — the seed sets the new classifier's init in autodiff — then reloaded per run)."""
    if cfg.kind == "torch":
        return TorchNet(cfg, seed, models_dir), None
    key = (cfg.key, seed)
    if key not in builds:
        spec = c_spec(cfg, seed)
        builds[key] = compile_c(spec, workdir / f"{cfg.key}-s{seed}", models_dir, tag=f"{cfg.key}-s{seed}".replace("-", "_"))
        b = builds[key]
        log(f"  compiled {cfg.key} seed {seed} in {b.compile_s:.1f} s (arena {b.arena_bytes / 1024:.1f} KB, "
            f"trainable {b.trainable_bytes / 1024:.1f} KB): {spec}")
    return CNet(builds[key].load()), builds[key]


_INFERENCE_ARENA: dict = {}


def inference_arena_bytes(models_dir: Path = MODELS_DIR) -> int:
    """The arena of the int8 model's generated inference: a step's update memory is its
    SRAM (arena + trained params) minus this, the axis of the paper's 49/99/148kb schemes."""
    from tinymlir.search.contribution import inference_arena

    if models_dir not in _INFERENCE_ARENA:
        _INFERENCE_ARENA[models_dir] = inference_arena(str(models_dir / INT8_MODEL), "fuse-qdq")
    return _INFERENCE_ARENA[models_dir]


def run_config(cfg: Config, data, lr: float, epochs: int, seeds: list[int], workdir: Path,
               models_dir: Path = MODELS_DIR, log=print) -> dict:
    """Train and test `cfg` for each seed; accuracy on (x_test, y_test) of `data`."""
    x, y, xt, yt = data
    search = None
    if cfg.budget_kb is not None:
        cfg, search = searched_scheme(cfg, workdir, models_dir, log)
    res: dict = {"label": cfg.label, "kind": cfg.kind, "trainable": cfg.trainable, "lr": lr, "epochs": epochs,
                 "seeds": seeds, "acc": [], "runs": []}
    if search is not None:
        res["search"] = search
    builds: dict = {}
    for seed in seeds:
        t0 = time.perf_counter()
        net, build = make_net(cfg, seed, builds, workdir, models_dir, log)
        info = train(net, x, y, lr, epochs, seed)
        info["eval_s"] = -time.perf_counter()
        acc = accuracy(net, xt, yt)
        info["eval_s"] += time.perf_counter()
        info["acc"] = acc
        info["seed"] = seed
        info["total_s"] = time.perf_counter() - t0
        if build is not None:
            info["compile_s"] = build.compile_s
            res["arena_bytes"], res["trainable_bytes"] = build.arena_bytes, build.trainable_bytes
            res["sram_bytes"] = build.arena_bytes + build.trainable_bytes
            res["update_bytes"] = res["sram_bytes"] - inference_arena_bytes(models_dir)
        res["acc"].append(acc)
        res["runs"].append(info)
        log(f"  {cfg.key} seed {seed}: test accuracy {acc * 100:.2f}% ({info['steps_per_s']:.1f} steps/s, "
            f"last-epoch loss {info['last_epoch_loss']:.3f}, {info['total_s']:.0f} s"
            + (f", {info['skipped_steps']} steps skipped non-finite updates" if info["skipped_steps"] else "") + ")")
    a = np.array(res["acc"]) * 100
    res["mean"], res["std"] = float(a.mean()), float(a.std())
    return res


def sweep(cfg: Config, grid, data, epochs: int, workdir: Path, models_dir: Path = MODELS_DIR, log=print) -> dict:
    """Validation accuracy of each lr of `grid` (seed 0); the best (ties: the smaller lr)."""
    x, y, xv, yv = data
    scores = {}
    builds: dict = {}
    for lr in grid:
        net, _ = make_net(cfg, 0, builds, workdir, models_dir, log)
        train(net, x, y, lr, epochs, 0)
        scores[lr] = accuracy(net, xv, yv)
        log(f"  {cfg.key} lr {lr:g}: validation accuracy {scores[lr] * 100:.2f}%")
    best = max(scores, key=lambda lr: (scores[lr], -lr))
    return {"scores": {str(k): v for k, v in scores.items()}, "best": best}


# --------------------------------------------------------------------------- report


def table(results: dict) -> str:
    lines = ["| configuration | trainable | lr | test accuracy % (mean ± std) | per seed | steps/s | SRAM KB "
             "| update KB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, r in results.items():
        if r.get("skipped"):
            lines.append(f"| {r['label']} | - | - | {r['skipped']} | - | - | - | - |")
            continue
        per = " ".join(f"{a * 100:.2f}" for a in r["acc"])
        rate = np.mean([run["steps_per_s"] for run in r["runs"]])
        sram = f"{r['sram_bytes'] / 1024:.1f}" if "sram_bytes" in r else "-"
        upd = f"{r['update_bytes'] / 1024:.1f}" if "update_bytes" in r else "-"
        lines.append(f"| {r['label']} | {r['trainable']} | {r['lr']:g} | {r['mean']:.2f} ± {r['std']:.2f} | {per} "
                     f"| {rate:.1f} | {sram} | {upd} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = {k: r for k, r in results.items() if not r.get("skipped")}
    series = {name: sorted((ran[k]["update_bytes"] / 1024, ran[k]["mean"], ran[k]["std"], k) for k in keys
                           if k in ran and "update_bytes" in ran[k])
              for name, keys in (("the paper's schemes", MEMORY_CONFIGS), ("searched schemes", BUDGET_CONFIGS))}
    curve = any(len(v) >= 2 for v in series.values())
    fig, axes = plt.subplots(1, 2 if curve else 1, figsize=(12 if curve else 8, 4.8), squeeze=False)
    ax = axes[0][0]
    keys = [k for k in results]
    means = [results[k].get("mean", 0.0) for k in keys]
    stds = [results[k].get("std", 0.0) for k in keys]
    colors = ["#999999" if results[k].get("skipped") else ("#4c72b0" if results[k]["kind"] == "torch" else "#dd8452")
              for k in keys]
    bars = ax.bar(range(len(keys)), means, yerr=stds, capsize=4, color=colors)
    for b, k in zip(bars, keys):
        r = results[k]
        text = "not run" if r.get("skipped") else f"{r['mean']:.1f}"
        ax.text(b.get_x() + b.get_width() / 2, (r.get("mean") or 0) + (r.get("std") or 0) + 1, text,
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([k for k in keys], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy, % (mean ± std over seeds)")
    ax.set_ylim(0, 105)
    ax.set_title("MCUNet-5fps -> digits (blue: PyTorch fp32, orange: int8 generated C)", fontsize=9)
    if curve:
        ax2 = axes[0][1]
        for (name, pts), marker in zip(series.items(), ("s", "o")):
            if not pts:
                continue
            ax2.errorbar([m[0] for m in pts], [m[1] for m in pts], yerr=[m[2] for m in pts], marker=marker,
                         capsize=4, label=name, linestyle="-" if name.startswith("searched") else "none")
            for kb, acc, _, k in pts:
                ax2.annotate(k.replace("int8-qas-", "paper ").replace("searched-", "≤"), (kb, acc),
                             textcoords="offset points", xytext=(5, -12), fontsize=8)
        if "fp32-full" in ran:
            ax2.axhline(ran["fp32-full"]["mean"], color="#4c72b0", linestyle=":", label="PyTorch fp32, full update")
        ax2.set_xlabel("update memory of the C training step, KB (arena + trained params - inference arena)")
        ax2.set_ylabel("test accuracy, %")
        ax2.set_title("int8 + QAS: accuracy vs memory budget", fontsize=9)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"uname": " ".join(platform.uname()), "nproc": os.cpu_count(), "cpu": cpu,
            "loadavg": os.getloadavg(), "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS),
                    help=f"default: {' '.join(DEFAULT_CONFIGS)}")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (--quick: 0)")
    ap.add_argument("--epochs", type=int, default=1, help="passes over the training split (default 1)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 400 training / 150 test images, only the paper's rows (the "
                         "searched one runs the search: ~10 min the first time, cached after)")
    ap.add_argument("--train-subset", type=int, default=None, help="use the first N training images")
    ap.add_argument("--test-subset", type=int, default=None, help="use the first N test images")
    ap.add_argument("--lr", action="append", default=[], metavar="CONFIG=LR", help="override a learning rate")
    ap.add_argument("--sweep", action="store_true", help="the learning-rate sweep on the validation split")
    ap.add_argument("--sweep-fit", type=int, default=400, help="--sweep: training images used (default 400)")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    ap.add_argument("--plot", type=Path, help="write the plot (e.g. docs/benchmarks/accuracy.png)")
    ap.add_argument("--plot-from", type=Path, nargs="+", help="only plot (and print) the merged results of JSON files")
    ap.add_argument("--workdir", type=Path, help="where the C builds go (default: a temporary directory)")
    args = ap.parse_args(argv)

    if args.plot_from:
        results: dict = {}
        for p in args.plot_from:
            results.update(json.loads(p.read_text())["results"])
        print(table(results))
        if args.plot:
            plot(results, args.plot)
        return 0

    if not (MODELS_DIR / INT8_MODEL).exists():
        print(f"accuracy: {MODELS_DIR / INT8_MODEL} not found (set TINYMLIR_MODELS)", file=sys.stderr)
        return 1
    configs = args.configs or (PAPER_CONFIGS if args.quick else DEFAULT_CONFIGS)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    lrs = dict(LRS)
    for item in args.lr:
        k, v = item.split("=", 1)
        if k not in CONFIGS:
            ap.error(f"--lr {item}: unknown configuration {k}")
        lrs[k] = float(v)
    ntrain = args.train_subset or (400 if args.quick else None)
    ntest = args.test_subset or (150 if args.quick else None)

    x_tr, y_tr, x_te, y_te = load_split()
    t_start = time.perf_counter()
    meta = {**machine(), "command": "python bench/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "epochs": args.epochs, "seeds": seeds}
    print(f"{meta['date_utc']} UTC, {meta['cpu']}, {meta['nproc']} cores, load {meta['loadavg'][0]:.1f}")

    with tempfile.TemporaryDirectory(prefix="tinymlir-accuracy-") as tmp:
        workdir = args.workdir or Path(tmp)
        if args.sweep:
            x_fit, y_fit, x_val, y_val = validation_split(x_tr, y_tr)
            x_fit, y_fit = x_fit[: args.sweep_fit], y_fit[: args.sweep_fit]
            print(f"lr sweep: seed 0, {args.epochs} epoch(s) over {len(x_fit)} images of the training split's "
                  f"fit part, accuracy on its {len(x_val)} validation images")
            out = {}
            for k in configs:
                cfg = CONFIGS[k]
                if cfg.kind == "skip" or k not in GRIDS:
                    continue
                out[k] = sweep(cfg, GRIDS[k], (x_fit, y_fit, x_val, y_val), args.epochs, workdir, log=print)
                print(f"{k}: " + ", ".join(f"{lr}: {a * 100:.1f}" for lr, a in out[k]["scores"].items())
                      + f" -> lr {out[k]['best']:g}", flush=True)
            if args.json:
                args.json.write_text(json.dumps({"meta": meta, "sweep": out}, indent=1))
            print(f"{time.perf_counter() - t_start:.0f} s")
            return 0

        x, y = x_tr[:ntrain], y_tr[:ntrain]
        xt, yt = x_te[:ntest], y_te[:ntest]
        print(f"{len(x)} training / {len(xt)} test images, {args.epochs} epoch(s), seeds {seeds}")
        results = {}
        for k in configs:
            cfg = CONFIGS[k]
            if cfg.kind == "skip":
                results[k] = {"label": cfg.label, "kind": cfg.kind, "skipped": cfg.note}
                print(f"{k}: {cfg.note}")
                continue
            print(f"{k} (lr {lrs[k]:g}):", flush=True)
            results[k] = run_config(cfg, (x, y, xt, yt), lrs[k], args.epochs, seeds, workdir,
                                    log=lambda s: print(s, flush=True))
            print(f"{k}: {results[k]['mean']:.2f} ± {results[k]['std']:.2f} %", flush=True)

    elapsed = time.perf_counter() - t_start
    meta["runtime_s"] = elapsed
    meta["train_images"], meta["test_images"] = len(x), len(xt)
    print()
    print(f"MCUNet-5fps -> digits: {len(x)} training / {len(xt)} test images, batch 1, SGD (cosine decay), "
          f"{args.epochs} epoch(s), seeds {seeds}; test accuracy (mean ± std over seeds)")
    print(table(results))
    if "int8-qas-99kb" in results and "fp32-99kb" in results:
        gap = results["fp32-99kb"]["mean"] - results["int8-qas-99kb"]["mean"]
        print(f"\nint8+QAS vs PyTorch fp32, 99kb scheme: {gap:+.2f} points (target: within 1 point) -> "
              f"{'met' if gap <= 1.0 else 'NOT met'}" + (" (a --quick smoke run: not the measurement)" if args.quick else ""))
    if "searched-100kb" in results and "fp32-full" in results and not results["searched-100kb"].get("skipped"):
        gap = results["fp32-full"]["mean"] - results["searched-100kb"]["mean"]
        print(f"searched 100 KB scheme (int8 C) vs full update (PyTorch fp32): {gap:+.2f} points (target: within 1 "
              f"point) -> {'met' if gap <= 1.0 else 'NOT met'}")
    print(f"runtime {elapsed:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
