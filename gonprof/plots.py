"""Plots (the ``plot`` extra: matplotlib).  Like render, plots only draw records."""

from __future__ import annotations

from pathlib import Path


class PlotError(RuntimeError):
    """A plot cannot be drawn: matplotlib is missing (the message says how to install it), or the record lacks
    what the plot draws (the message says what)."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plots need matplotlib: pip install 'gonprof[plot]'") from None
    return plt


def compare_plot(rows, path) -> Path:
    """Quality (FID) against peak memory, Pareto-optimal rows marked (needs the [plot] extra)."""
    from .records import pareto_front, peak_memory_bytes

    plt = _pyplot()
    front = pareto_front(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, r in enumerate(rows):
        mem = peak_memory_bytes(r)
        if r.kind != "run" or r.quality is None or mem is None:
            continue
        ax.scatter(mem / 2**20, r.quality.fid, marker="*" if i in front else "o", s=120 if i in front else 40)
        ax.annotate(r.label, (mem / 2**20, r.quality.fid), textcoords="offset points", xytext=(4, 4), fontsize=8)
    floor = next((r for r in rows if r.kind == "floor" and r.quality is not None), None)
    if floor is not None:
        ax.axhline(floor.quality.fid, linestyle="--", linewidth=1, color="grey")
        ax.annotate(f"real-vs-real floor (N={floor.quality.n_samples})", (0, floor.quality.fid),
                    xycoords=("axes fraction", "data"), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlabel("peak live tensor memory per step (MiB)")
    ax.set_ylabel("FID, gonprof MNIST features (lower is better)")
    ax.set_title("gonprof compare: quality vs memory (* Pareto-optimal)")
    fig.tight_layout()
    path = Path(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fit_plot(rec, path) -> Path:
    """A fit's trials: compared peak memory against batch size, the budget as a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ok = [t for t in rec.trials if t.peak_bytes]
    for status, marker in (("fits", "o"), ("too-big", "x")):
        pts = sorted((t.batch_size, t.peak_bytes / 2**20) for t in ok if t.status == status)
        if pts:
            ax.plot(*zip(*pts), marker, label=status)
    ax.axhline(rec.memory_bytes / 2**20, linestyle="--", color="grey", label="budget")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("step peak (MiB)")
    ax.set_title(f"gonprof fit: {rec.arch} / {rec.mode} on {rec.device}")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def timeline_plot(rec, path) -> Path:
    """A profile's measuring step as live bytes against op index, stacked by category, phases shaded and
    named, the peak marked, the time from the step's start on the top axis (the view of
    :func:`gonprof.render.timeline.timeline_view`, as the HTML report's SVG draws it).  A PlotError, one line,
    where the record has no timeline (made by an older gonprof) or matplotlib is missing."""
    from .render.timeline import CATEGORY_COLOURS, CATEGORY_NAMES, missing_timeline, timeline_view

    view = timeline_view(rec)
    if view is None:
        raise PlotError(missing_timeline(rec))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.6))
    xs = [*view.op_index, view.x_end]
    for band in view.bands:
        ax.fill_between(xs, [*band.bottom_mib, band.bottom_mib[-1]], [*band.top_mib, band.top_mib[-1]], step="post",
                        color=CATEGORY_COLOURS.get(band.category, "#999999"), alpha=0.85, linewidth=0,
                        label=CATEGORY_NAMES.get(band.category, band.category))
    for i, p in enumerate(view.phases):
        end = min(p.last_op + 1, view.x_end)
        ax.axvspan(p.first_op, end, color="#dde3ea" if i % 2 == 0 else "#f1f3f6", zorder=0)
        ax.annotate(p.name, ((p.first_op + end) / 2, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -12),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.axvline(view.peak_op, color="#bb0000", linestyle="--", linewidth=1)
    ax.plot([view.peak_op], [view.peak_mib], "o", color="#bb0000")
    right = view.peak_op > view.op_index[0] + 0.6 * (view.x_end - view.op_index[0])
    ax.annotate(view.peak_label, (view.peak_op, view.peak_mib), xytext=(-6 if right else 6, 6),
                textcoords="offset points", ha="right" if right else "left", color="#bb0000", fontsize=9,
                fontweight="bold")
    ax.set_xlim(view.op_index[0], view.x_end)
    ax.set_ylim(0, view.peak_mib * 1.15 or 1)
    ax.set_xlabel("op index of the measuring step")
    ax.set_ylabel("live tensor bytes (MiB)")
    ops, times = [float(o) for o in xs], [view.time_at(o) for o in xs]
    if times[-1] > times[0]:
        import numpy as np

        top = ax.secondary_xaxis("top", functions=(lambda o: np.interp(o, ops, times),
                                                   lambda t: np.interp(t, times, ops)))
        top.set_xlabel("time from the step's start (ms)")
    ax.set_title(view.title, fontsize=10, pad=28 if times[-1] > times[0] else 6)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.text(0.01, 0.01, view.caption, fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
