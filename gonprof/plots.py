"""Plots (the ``plot`` extra: matplotlib).  Like render, plots only draw records."""

from __future__ import annotations

from pathlib import Path


class PlotError(RuntimeError):
    """matplotlib is missing; the message says how to install it."""


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
