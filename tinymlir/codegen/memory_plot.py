"""Write the arena plans `plan-memory` made (`memory_plan.arena_report` dicts) as a JSON
report and as a picture (`tinymlir-opt --memory-report out.json --memory-plot out.svg`).

JSON: `{"format": "tinymlir-memory-report", "version": 1, "functions": [report, ...]}`,
one report per planned function in planning order (the keys are documented in
`memory_plan.arena_report`).

Plot (matplotlib, Agg backend, imported only here): one panel per function; each buffer
is a rectangle over its live steps (x: op step) and its bytes (y: arena address, in KB
from 16 KB on, else in bytes),
colored by kind (activation, saved, gradient, mask, scratch); a dashed line marks the
arena's peak, a red one the budget if set; the title names the function and the peak in
KB. The format follows the file's extension: .svg, .png or .pdf. The same reports give
the same bytes (fixed SVG hash salt, no dates or software version in the metadata).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PLOT_FORMATS", "KIND_COLORS", "report_document", "write_report", "write_plot"]

PLOT_FORMATS = ("svg", "png", "pdf")
KIND_COLORS = {
    "activation": "#4C72B0",
    "saved": "#8172B2",
    "gradient": "#DD8452",
    "mask": "#55A868",
    "scratch": "#937860",
}
_OTHER = "#8C8C8C"


def report_document(reports: Sequence[dict]) -> dict:
    return {"format": "tinymlir-memory-report", "version": 1, "functions": list(reports)}


def write_report(reports: Sequence[dict], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report_document(reports), indent=2) + "\n")


def plot_format(path: str | Path) -> str:
    """The plot format of `path` (its extension), or ValueError."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise ValueError(f"cannot plot to '{path}': unknown format '.{ext}' (expected "
                         f"{', '.join('.' + f for f in PLOT_FORMATS)})")
    return ext


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n / 1024:.3f} KB"


def _draw(ax, r: dict) -> None:
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.ticker import MaxNLocator

    top = max(r["arena_bytes"], r.get("budget") or 0)
    kib, unit = (1024.0, "KB") if top >= 16 * 1024 else (1.0, "bytes")
    steps = max(r["num_steps"], 1)
    kinds_seen: list[str] = []
    for b in r["buffers"]:
        if b["size"] <= 0:
            continue
        color = KIND_COLORS.get(b["kind"], _OTHER)
        ax.add_patch(Rectangle((b["first"] - 0.5, b["offset"] / kib), b["last"] - b["first"] + 1, b["size"] / kib,
                               facecolor=color, edgecolor="black", linewidth=0.3, alpha=0.85))
        if b["kind"] not in kinds_seen:
            kinds_seen.append(b["kind"])
    ax.axhline(r["arena_bytes"] / kib, color="black", linestyle="--", linewidth=1.0,
               label=f"peak {_kb(r['arena_bytes'])}")
    if r.get("budget") is not None:
        ax.axhline(r["budget"] / kib, color="red", linestyle=":", linewidth=1.5, label=f"budget {_kb(r['budget'])}")
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(0, max(top, 1) / kib * 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("op step")
    ax.set_ylabel(f"arena address ({unit})")
    ax.set_title(f"@{r['function']}: arena {_kb(r['arena_bytes'])} ({r['arena_bytes']} bytes, {r['strategy']}; "
                 f"lower bound {r['lower_bound']} bytes)")
    handles, _ = ax.get_legend_handles_labels()
    order = [k for k in KIND_COLORS if k in kinds_seen] + [k for k in kinds_seen if k not in KIND_COLORS]
    handles += [Patch(facecolor=KIND_COLORS.get(k, _OTHER), edgecolor="black", label=k) for k in order]
    ax.legend(handles=handles, loc="upper right", fontsize="small")


def write_plot(reports: Sequence[dict], path: str | Path) -> None:
    """Draw every report into one figure at `path` (format from the extension)."""
    fmt = plot_format(path)
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = max(len(reports), 1)
    with matplotlib.rc_context({"svg.hashsalt": "tinymlir", "svg.fonttype": "path", "path.simplify": False}):
        fig = Figure(figsize=(10, 4 * n), layout="constrained")
        axes = fig.subplots(n, 1, squeeze=False)[:, 0]
        for ax, r in zip(axes, reports):
            _draw(ax, r)
        if not reports:
            axes[0].text(0.5, 0.5, "no function planned", ha="center", va="center")
            axes[0].set_axis_off()
        metadata = {"svg": {"Date": None, "Creator": None},
                    "png": {"Software": None},
                    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}}[fmt]
        fig.savefig(path, format=fmt, metadata=metadata)
