"""The memory budget tools: estimates, fits, scaling fits."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from .formats import _mib, _ms, format_bytes, format_seconds
from .sheet import Note, Sheet, to_rich

# -- memory budgets: estimates, fits, scaling ------------------------------------

def render_estimate(e, measured=None) -> Group:
    """A :class:`~gonprof.records.MemoryEstimate` for the terminal (:func:`estimate_blocks`)."""
    return to_rich(estimate_blocks(e, measured))


def estimate_blocks(e, measured=None) -> list[Sheet | Note]:
    """A :class:`~gonprof.records.MemoryEstimate`; with ``measured`` (a ProfileRecord) the measured figures
    beside it."""
    t = Sheet(title=f"estimated step memory: {e.arch} / {e.mode} / batch {e.batch_size} on {e.device} "
                    f"({e.method} tensors, nothing allocated)", header_style="bold")
    t.add_column("figure")
    t.add_column("estimate (MiB)", "right")
    if measured is not None:
        t.add_column("measured (MiB)", "right")
    t.add_column("what it counts")
    lm = measured.live_memory if measured is not None else None

    def row(name, est, meas, what):
        cells = [name, _mib(est)] + ([meas if isinstance(meas, str) else _mib(meas)] if measured is not None
                                     else []) + [what]
        t.add_row(*cells)

    if e.cuda_max_memory_allocated_bytes is not None:
        cm = measured.cuda_memory if measured is not None else None
        row("CUDA max allocated", e.cuda_max_memory_allocated_bytes,
            cm.max_memory_allocated_bytes if cm else None, "live storages rounded to 512 B + input batch")
    row("peak live tensors", e.peak_live_bytes, lm.peak_live_bytes if lm else None,
        "tensor storages incl. persistent state")
    row("  parameters", e.peak_live_param_bytes, lm.peak_live_param_bytes if lm else None, "at the peak")
    row("  gradients", e.peak_live_grad_bytes, lm.peak_live_grad_bytes if lm else None, "at the peak")
    row("  optimizer state", e.peak_live_optimizer_state_bytes, lm.peak_live_optimizer_state_bytes if lm else None,
        "at the peak")
    row("  activations + temporaries", e.peak_live_activation_bytes, lm.peak_live_activation_bytes if lm else None,
        "at the peak")
    row("  external", e.peak_live_external_bytes, lm.peak_live_external_bytes if lm else None,
        "at the peak: the part of the batch the step read (made before it)")
    row("input batch", e.input_bytes, "" if measured is not None else None,
        "float32 images + int64 labels, made before the step; the budget figure holds all of it")
    if e.persistent is not None:
        row("persistent state", e.persistent.total_bytes,
            measured.persistent.total_bytes if measured is not None and measured.persistent else None,
            "params + buffers + grads + optimizer state, end of step")
    row("budget figure", e.peak_bytes, None, "what `gonprof fit --estimate` compares")
    notes = Note("\n".join(f"- {n}" for n in e.notes), style="dim")
    return [t, Note(f"rounding: {e.rounding}", style="dim"), notes]


def _trial_row(t, cores: bool = False) -> list:
    style = {"fits": "green", "measured": "green", "too-big": "yellow"}.get(t.status, "red")
    return [str(t.batch_size), Text(t.status, style=style), _mib(t.peak_bytes), _mib(t.peak_live_bytes),
            _mib(t.peak_rss_delta_bytes), _mib(t.cuda_max_memory_allocated_bytes),
            _mib(t.cuda_max_memory_reserved_bytes), _ms(t.step_time_s)] + (
        [",".join(map(str, t.cpus)) if t.cpus else "-"] if cores else []) + [(t.message or "")[:80]]


_TRIAL_COLUMNS = ("batch (samples)", "status", "compared peak (MiB)", "peak live tensors (MiB)",
                  "peak RSS delta (MiB)", "CUDA max allocated (MiB)", "CUDA max reserved (MiB)", "step (ms)", "note")


def _trial_sheet(title: str, trials) -> Sheet:
    """Trials or points, one row each; a ``cores`` column when some ran pinned to cores (--jobs)."""
    cores = any(t.cpus for t in trials)
    t = Sheet(title=title, header_style="bold")
    for col in _TRIAL_COLUMNS[:-1] + (("cores",) if cores else ()) + _TRIAL_COLUMNS[-1:]:
        t.add_column(col, "left" if col in ("status", "note", "cores") else "right")
    for tr in trials:
        t.add_row(*_trial_row(tr, cores))
    return t


def render_fit(rec) -> Group:
    """A :class:`~gonprof.records.FitRecord` for the terminal (:func:`fit_blocks`)."""
    return to_rich(fit_blocks(rec))


def fit_blocks(rec) -> list[Sheet | Note]:
    """A :class:`~gonprof.records.FitRecord`: the answer, then every trial in batch-size order."""
    budget = format_bytes(rec.memory_bytes)
    if rec.status != "ok":
        head = Text(f"fit {rec.arch} / {rec.mode} on {rec.device} in {budget}: search stopped: {rec.message}",
                    style="red")
    else:
        nxt = "" if rec.first_too_big is None else f"; {rec.first_too_big} does not"
        head = Text.assemble(("largest batch", "bold"), f" for {rec.arch} / {rec.mode} on {rec.device} in {budget}"
                             f"{' (estimated)' if rec.estimate else ''}: ", (str(rec.batch_size), "bold green"),
                             nxt + (f" ({rec.message})" if rec.message else ""))
    t = _trial_sheet("trials (MiB = 2**20 bytes)", sorted(rec.trials, key=lambda x: x.batch_size))
    foot = Note(f"compared with the budget: {rec.compared}\nsearch: {rec.search}"
                + "".join(f"\n- {n}" for n in rec.notes), style="dim")
    return [Note(head), t, foot]


def render_scaling(rec) -> Group:
    """A :class:`~gonprof.records.ScalingRecord` for the terminal (:func:`scaling_blocks`)."""
    return to_rich(scaling_blocks(rec))


def scaling_blocks(rec) -> list[Sheet | Note]:
    """A :class:`~gonprof.records.ScalingRecord`: the points and the fixed + per-sample fits."""
    t = _trial_sheet(f"scaling: {rec.arch} / {rec.mode} on {rec.device}{' (estimated)' if rec.estimate else ''}",
                     rec.points)
    f = Sheet(title="least-squares fits: fixed + per sample x batch", header_style="bold")
    for col in ("quantity", "fixed", "per sample", "R^2", "points"):
        f.add_column(col, "left" if col == "quantity" else "right")
    if rec.memory_fit is not None:
        m = rec.memory_fit
        f.add_row("peak memory", format_bytes(m.intercept), format_bytes(m.slope), f"{m.r2:.4f}", str(m.n))
    if rec.time_fit is not None:
        s = rec.time_fit
        f.add_row("step time", format_seconds(s.intercept), format_seconds(s.slope), f"{s.r2:.4f}", str(s.n))
    notes = Note(f"memory figure: {rec.compared}" + "".join(f"\n- {n}" for n in rec.notes), style="dim")
    parts: list[Sheet | Note] = [t, f, notes]
    if rec.message:
        parts.insert(0, Note(rec.message, style="red" if rec.status != "ok" else "yellow"))
    return parts
