"""`tinymlir search`: the sparse-update scheme with the largest measured accuracy gain that
fits a memory budget (the paper's contribution analysis + evolutionary search).

    tinymlir search mcunet-5fps-int8.onnx --num-classes 10 --update-budget 100KB -o mcunet-100kb.scheme
    tinymlir compile mcunet-5fps-int8.onnx --train --num-classes 10 --scheme auto --update-budget 100KB

Budgets: `--update-budget` bounds what training adds to the deployed model (arena +
trained params - the inference arena), the paper's "49kb / 99kb / 148kb" axis;
`--budget` bounds the whole step's SRAM (arena + trained params + `--stack`). Give one or
both. The contribution runs fine-tune the compiled host C on a calibration task
(`--task digits`, scikit-learn's digits shaped to the model's input, or an .npz with x and
y) and are cached (`--search-cache`, default ~/.cache/tinymlir/search): a search over a
new budget reuses them. How it works: tinymlir/search/ and docs/scheme-search.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinymlir.tools.opt import ToolError

PROG = "tinymlir search"


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the search, shared by `tinymlir search` and `tinymlir compile --scheme auto`."""
    g = p.add_argument_group("scheme search (tinymlir search, tinymlir compile --scheme auto)")
    g.add_argument("--update-budget", help="memory training may add to inference (arena + trained params - the "
                                           "inference arena), e.g. 100KB")
    g.add_argument("--task", default="digits", help="calibration task: 'digits' (default) or an .npz with x (N,C,H,W) "
                                                   "and y (N,)")
    g.add_argument("--task-fit", type=int, default=500, help="samples each contribution run trains on (default 500)")
    g.add_argument("--task-eval", type=int, default=500, help="samples it is evaluated on (default 500)")
    g.add_argument("--search-lr", type=float, default=None, help="learning rate of the contribution runs "
                                                                "(default: see docs/scheme-search.md)")
    g.add_argument("--search-probe-lr", type=float, default=None,
                   help="learning rate of the classifier probe every run starts from (default 1e-2)")
    g.add_argument("--search-epochs", type=int, default=1, help="passes over the fit samples (default 1)")
    g.add_argument("--search-first-layer", type=int, default=None,
                   help="first layer whose weights may train (default: the second half of the network)")
    g.add_argument("--search-jobs", type=int, default=None, help="parallel contribution runs (default: the cores)")
    g.add_argument("--search-cache", type=Path, default=None, help="cache directory (default ~/.cache/tinymlir/search "
                                                                   "or $TINYMLIR_CACHE/search)")
    g.add_argument("--search-seed", type=int, default=0, help="seed of the runs and the evolution (default 0)")
    g.add_argument("--search-min-gain", type=float, default=None, metavar="POINTS",
                   help="smallest accuracy gain (percentage points) a choice must show to count (default: the "
                        "runs' standard error)")


def make_search_parser(sub) -> argparse.ArgumentParser:
    from tinymlir.tools.opt import one_line_usage_error

    s = sub.add_parser("search", help="find the best sparse-update scheme under a memory budget")
    s.error = lambda message: one_line_usage_error(PROG, message)  # type: ignore[method-assign]
    s.add_argument("model", help="ONNX model (int8 QDQ, or float with --calibration)")
    s.add_argument("-o", "--output", type=Path, help="write the scheme file here")
    s.add_argument("--num-classes", type=int, default=10, help="classes of the task's new classifier (default 10)")
    s.add_argument("--calibration", help="calibration inputs (.npy) to quantize a float model")
    s.add_argument("--rounding", choices=("nearest", "stochastic"), default="stochastic",
                   help="rounding of the int8 updates (default stochastic: docs/scheme-search.md)")
    s.add_argument("--budget", help="SRAM budget of the whole step (arena + trained params + stack), e.g. 256KB")
    s.add_argument("--stack", default="2KiB", help="stack allowance counted in --budget (default 2KiB)")
    add_search_arguments(s)
    return s


def run_search(args: argparse.Namespace, model: Path, front: str, log) -> "object":
    """Run the search of `args` (budgets, task, settings); returns the SearchOutcome."""
    from tinymlir.search import Budget, BudgetError, RunSettings, TaskError, load_task, search_scheme
    from tinymlir.tools.compile import parse_bytes

    total = parse_bytes(args.budget) if args.budget else None
    update = parse_bytes(args.update_budget, "--update-budget") if args.update_budget else None
    if total is None and update is None:
        raise ToolError("the scheme search needs a budget: --update-budget SIZE and/or --budget SIZE")
    for name in ("task_fit", "task_eval", "search_epochs"):
        if getattr(args, name) < 1:
            raise ToolError(f"--{name.replace('_', '-')} must be at least 1")
    if args.search_jobs is not None and args.search_jobs < 1:
        raise ToolError("--search-jobs must be at least 1")
    lr = args.search_lr if args.search_lr is not None else RunSettings().lr
    probe_lr = args.search_probe_lr if args.search_probe_lr is not None else RunSettings().probe_lr
    for flag, value in (("--search-lr", lr), ("--search-probe-lr", probe_lr)):
        if not value > 0:
            raise ToolError(f"{flag} {value}: expected a positive learning rate")
    settings = RunSettings(lr=lr, epochs=args.search_epochs, seed=args.search_seed, rounding=args.rounding,
                           num_classes=args.num_classes, probe_lr=probe_lr)
    budget = Budget(total=total, update=update, stack=parse_bytes(args.stack, "--stack"))
    try:
        # a user's task is loaded once the search knows the model's input shape
        task = None if args.task == "digits" else (
            lambda shape: load_task(args.task, shape, args.task_fit, args.task_eval))
        return search_scheme(model, front, budget, settings=settings, task=task, n_fit=args.task_fit,
                             n_eval=args.task_eval, first_weight_layer=args.search_first_layer,
                             cache_dir=args.search_cache, jobs=args.search_jobs, seed=args.search_seed,
                             min_gain=None if args.search_min_gain is None else args.search_min_gain / 100.0, log=log)
    except (BudgetError, TaskError) as e:
        raise ToolError(str(e)) from None


def report(outcome) -> list[str]:
    """The lines `tinymlir search` prints: the contributions, the scheme, its memory."""
    r = outcome.result
    a = outcome.analysis
    m = r.memory
    return [
        "contribution of each choice (accuracy after fine-tuning the compiled C on the task):",
        a.table(),
        "",
        f"searched scheme (Δaccuracy {r.score * 100:+.1f} points summed over its choices):",
        r.scheme.rstrip(),
        f"memory (generated C): arena {m.arena_bytes:,} B + trained params {m.trainable_bytes:,} B = "
        f"{m.arena_bytes + m.trainable_bytes:,} B; update memory {m.update(r.inference_arena):,} B over the "
        f"inference arena {r.inference_arena:,} B",
        f"search: {len(a.bias) + len(a.weights)} contribution runs ({a.cached} cached, {a.seconds:.0f} s), "
        f"{r.evaluations:,} genomes scored, {r.verifications} scheme(s) compiled to check memory; "
        f"{outcome.seconds:.0f} s in all",
    ]


def search_command(args: argparse.Namespace) -> None:
    import sys

    from tinymlir.tools.compile import front_pipeline

    model = Path(args.model)
    if not model.is_file():
        raise ToolError(f"{model}: no such file")
    front = front_pipeline(model, args.calibration)
    outcome = run_search(args, model, front, lambda s: print(s, file=sys.stderr, flush=True))
    lines = report(outcome)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(outcome.result.scheme)
        lines.append(f"wrote {args.output}")
    print("\n".join(lines))
