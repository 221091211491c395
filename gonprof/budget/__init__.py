"""Memory budgets: the largest batch that fits (:func:`fit_batch`) and how a step grows with the batch
(:func:`scaling`).

Which peak is held against the budget (``FitRecord.compared``):

- ``device="cpu"``: the step's tensor-level peak, i.e. the LiveBytesTracker's
  ``peak_live_bytes`` (parameters, buffers, gradients, optimizer state,
  activations and temporaries alive at once) plus the input batch.  It is
  deterministic and what the estimate predicts.  The process's RSS peak over
  its pre-step baseline is measured and shown beside it (it adds the
  allocator's caching and pages, and varies run to run).
- ``device="cuda"``: ``torch.cuda.max_memory_allocated`` during the steps
  (includes the batch on the GPU); with ``estimate=True`` its estimate.

Measured trials each run in their own process (``python -m
gonprof.worker fit-trial``, :mod:`gonprof.budget_worker`), placed by an
executor (:mod:`gonprof.executors`: one at a time, ``--jobs N`` at once on
disjoint cores, or Ray tasks).  Scaling points are independent and run as
many at once as the executor holds; a fit is a search, so with room for
several trials it runs in rounds (:func:`search_batch`'s ``width``): the
trials of a round are independent, each round depends on the one before.
A trial that raises out-of-memory (``oom``) or dies
(``killed``: the OOM killer, Ray's memory monitor, or the trial's own RSS
cap, by default twice the budget, and locally at most 80 % of the memory
available shared by the trials at once: fewer run at once when the share
would be below the budget, :func:`local_width`) counts as too big; the
search goes on.  Any other error stops the search (``status="error"``).
With ``estimate=True`` trials are :func:`~gonprof.estimate.estimate_step_memory`
calls in this process: nothing real is allocated, ``cuda`` works without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..executors import Placement
from ..records import BatchTrial, Environment, FitRecord, ScalingRecord
from ..request import StepSpec
from .search import TOO_BIG, classify, least_squares, parse_bytes, search_batch
from .trials import (
    CAP_SLACK_BYTES,
    TRIAL_TIMEOUT_S,
    compared_figure,
    default_cap,
    estimate_trial,
    local_width,
    measured_rounds,
    run_trial,
    trial_from_outcome,
    trial_spec,
)

__all__ = [
    "CAP_SLACK_BYTES", "TOO_BIG", "TRIAL_TIMEOUT_S", "classify", "compared_figure", "default_cap",
    "estimate_trial", "fit_batch", "least_squares", "local_width", "measured_rounds", "parse_bytes",
    "run_trial", "scaling", "search_batch", "trial_from_outcome", "trial_spec",
]


def _trial_fn(spec: StepSpec, estimate: bool, steps: int,
              trial: Callable[[int], BatchTrial] | None) -> Callable[[int], BatchTrial] | None:
    """The in-process trial: the one given (tests), an estimate, or None (measured trials run on an executor)."""
    if trial is not None:
        return trial
    if estimate:
        return lambda b: estimate_trial(spec, b, steps=steps)
    return None


def _executor_notes(executor: Placement, width: int, what: str) -> list[str]:
    """What the record says about where its measured trials ran (nothing for one local trial at a time)."""
    if executor.default:
        return []
    if executor.executor == "ray":
        return [f"{what} ran as Ray tasks ({executor.describe()}), up to {width} at once"]
    return [f"{what} ran up to {width} at once, each in its own process pinned to its own cores (torch threads "
            f"to match; each one's cpus); step times were taken beside the others (memory bandwidth and caches "
            "shared), memory figures are each process's own"]


def _environment(device: str) -> Environment | None:
    try:
        return Environment.capture(device)
    except Exception:  # noqa: BLE001
        return None


def fit_batch(
    spec: StepSpec,
    *,
    memory_bytes: Any,
    estimate: bool = False,
    max_batch: int = 65536,
    steps: int = 2,
    time_steps: int = 1,
    cap_bytes: int | None = None,
    progress: Callable[[BatchTrial], None] | None = None,
    trial: Callable[[int], BatchTrial] | None = None,
    placement: Placement | None = None,
) -> FitRecord:
    """The largest batch size whose step peak stays within ``memory_bytes`` (an int or ``"4GiB"``).

    ``estimate=True``: trials are estimates (fast, nothing allocated, cuda
    without a GPU).  Otherwise each trial runs ``steps`` tracked steps and
    ``time_steps`` timed ones in its own process, capped at ``cap_bytes`` of
    RSS growth (default :func:`default_cap`).  ``progress(trial)`` is called
    after each trial; ``trial(batch_size) -> BatchTrial`` replaces the trial
    runner (tests).  Measured trials are guided: the answer is first found by
    estimates, then measured from there (two measured trials when the
    estimate is right, instead of about 2 log2(B)).  Errors in the
    request (unknown names) raise before any trial.

    ``placement`` (:class:`gonprof.executors.Placement`; default one local
    worker at a time) places the measured trials: with room for several at
    once (``--jobs N``, a Ray cluster) the search runs in rounds of that many
    trials (:func:`search_batch`'s ``width``), each trial's cap a share of the
    memory available (fewer at once when a share could not hold the budget,
    :func:`local_width`; a Ray trial's cap is not bounded by this machine's
    memory).  Ctrl-C keeps the finished trials in a record with
    status ``interrupted``.
    """
    memory_bytes = parse_bytes(memory_bytes)
    if trial is None:  # unknown names and bad settings fail here, not in every trial
        spec = spec.checked(need_device=False)
    arch, mode, device = spec.arch, spec.mode_name, spec.device
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    is_cpu = not str(device).startswith("cuda")
    executor = placement or Placement()
    fn = _trial_fn(spec, estimate, steps, trial)
    notes = []
    start = None
    if not estimate and trial is None:  # guided by the estimate's answer
        g = fit_batch(spec, memory_bytes=memory_bytes, estimate=True, max_batch=max_batch, steps=steps)
        if g.status == "interrupted":  # Ctrl-C or SIGTERM while estimating: stop here, as in a measured trial
            return g.replace(estimate=False, trials=(), message="interrupted (Ctrl-C) while the estimates guided "
                                                                 "the search; no trial was measured")
        if g.status == "ok" and g.batch_size:
            start = g.batch_size
            notes.append(f"guided: the estimate's answer {g.batch_size} was measured first "
                         f"({len(g.trials)} estimate trials not listed)")
    search = FitRecord.search
    if fn is not None:  # estimates (or given trials) in this process, one after another
        answer, first_bad, trials, status, message = search_batch(fn, memory_bytes, int(max_batch), progress, start)
    else:
        with executor.session() as session:
            width = session.width
            if cap_bytes is None and is_cpu:
                if executor.executor == "ray":  # the trials run on the cluster's nodes, not in this machine's memory
                    cap_bytes = default_cap(memory_bytes, available=False)
                else:
                    width, cap_bytes = local_width(memory_bytes, width)
                    if width < session.width:
                        notes.append(f"{width} trials at once, not {session.width}: the memory available holds "
                                     f"no more trials that each may grow to the budget")

            def spec_of(b: int) -> dict:
                return trial_spec(spec, b, steps=steps, time_steps=time_steps, cap_bytes=cap_bytes)

            answer, first_bad, trials, status, message = search_batch(
                None, memory_bytes, int(max_batch), progress, start, width=width,
                rounds=measured_rounds(session, spec_of, device))
        if width > 1:
            search = (f"rounds of up to {width} trials at once: the guess and the sizes above it, or 1, 2, 4, ... "
                      f"then the interval between the last fit and the first failure cut into {width + 1} parts")
        notes += _executor_notes(executor, width, "trials")
    if cap_bytes:
        notes.append(f"each trial ran in its own process, killed past {cap_bytes:,} B of RSS growth")
        if cap_bytes < memory_bytes + CAP_SLACK_BYTES:
            notes.append(f"the cap ({cap_bytes:,} B) was below the budget plus {CAP_SLACK_BYTES // 2**20} MiB: a "
                         "trial killed by it may have fitted, so the answer may be below the true one")
    if estimate:
        notes.append("trials estimated on meta tensors (gonprof.estimate); nothing real allocated")
    return FitRecord(status=status, message=message, arch=arch, mode=mode, generator=spec.generator,
                     device=str(device),
                     estimate=bool(estimate), memory_bytes=memory_bytes, batch_size=answer, first_too_big=first_bad,
                     max_batch=int(max_batch), compared=compared_figure(device, estimate), trials=trials,
                     environment=_environment(device), notes=tuple(notes), preset=spec.preset,
                     hparams=dict(spec.hparams), search=search, levers=spec.levers)


def scaling(
    spec: StepSpec,
    *,
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    estimate: bool = False,
    steps: int = 2,
    time_steps: int = 3,
    cap_bytes: int | None = None,
    progress: Callable[[BatchTrial], None] | None = None,
    trial: Callable[[int], BatchTrial] | None = None,
    placement: Placement | None = None,
) -> ScalingRecord:
    """Peak memory (and step time, when measured) at each batch size, fitted as fixed + per sample.

    ``memory_fit.intercept`` = fixed bytes, ``memory_fit.slope`` = bytes per
    sample (on ``peak_bytes``, see ``compared``); ``time_fit`` likewise in
    seconds (None for estimates).  Points that failed are kept with their
    status and left out of the fits.  Measured points each run in their own
    worker process, placed by ``placement`` (:class:`gonprof.executors.Placement`;
    default one local worker at a time; the points are independent, so
    ``--jobs N`` or a Ray cluster runs that many at once).  Ctrl-C keeps the
    finished points, fitted, in a record with status ``interrupted``.
    """
    if trial is None:  # unknown names and bad settings fail here, not in every point
        spec = spec.checked(need_device=False)
    arch, mode, device = spec.arch, spec.mode_name, spec.device
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    executor = placement or Placement()
    fn = _trial_fn(spec, estimate, steps, trial)
    done: dict[int, BatchTrial] = {}

    def finished(t: BatchTrial) -> None:
        done[t.batch_size] = t
        if progress is not None:
            progress(t)

    notes = ["fits: peak_bytes = intercept (fixed bytes) + slope (bytes per sample) x batch size; "
             "step time likewise in seconds"]
    interrupted = False
    try:
        if fn is not None:  # estimates (or given trials) in this process, one after another
            for b in sizes:
                finished(fn(b))
        else:
            with executor.session() as session:
                measured_rounds(session, lambda b: trial_spec(
                    spec, b, steps=steps, time_steps=time_steps, cap_bytes=cap_bytes), device)(sizes, finished)
            notes += _executor_notes(executor, session.width, "points")
    except KeyboardInterrupt:
        interrupted = True
    points = [done[b] for b in sizes if b in done]
    good = [p for p in points if p.status == "measured" and p.peak_bytes is not None]
    mem_fit = least_squares([p.batch_size for p in good],
                            [p.peak_bytes for p in good if p.peak_bytes is not None]) if good else None
    timed = [p for p in good if p.step_time_s is not None]
    time_fit = least_squares([p.batch_size for p in timed],
                             [p.step_time_s for p in timed if p.step_time_s is not None]) if timed else None
    bad = [p for p in points if p not in good]
    status, message = "ok", ""
    if bad:
        status = "error" if not good else "ok"
        message = "; ".join(f"batch {p.batch_size}: {p.status} {p.message}".strip() for p in bad)
    if interrupted:
        status = "interrupted"
        message = (f"interrupted (Ctrl-C) after {len(points)} of {len(sizes)} points; the finished ones are kept "
                   "and fitted" + (f"; {message}" if message else ""))
    if estimate:
        notes.append("estimated on meta tensors: no step times")
    return ScalingRecord(status=status, message=message, arch=arch, mode=mode, generator=spec.generator,
                         device=str(device), estimate=bool(estimate), compared=compared_figure(device, estimate),
                         points=tuple(points), memory_fit=mem_fit, time_fit=time_fit,
                         environment=_environment(device), notes=tuple(notes), preset=spec.preset,
                         hparams=dict(spec.hparams))
