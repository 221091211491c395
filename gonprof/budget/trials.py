"""One trial of a memory budget: a batch size measured in its own worker process (``python -m gonprof.worker
fit-trial``, :mod:`gonprof.budget_worker`) or estimated on meta tensors, and the caps that keep a measured
trial from taking the machine."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ..executors import Job, Placement, Session
from ..guard import available_bytes
from ..isolation import Outcome
from ..records import BatchTrial, RequestError
from ..request import StepSpec
from .search import Finished

# --------------------------------------------------------------------------
# trials
# --------------------------------------------------------------------------


#: RSS a trial that fits the budget may grow by beyond it (the allocator's caching and pages, the step's
#: own bookkeeping); a cap below budget + this could kill a trial that fits.
CAP_SLACK_BYTES = 256 * 2**20


def default_cap(memory_bytes: int, at_once: int = 1, available: bool = True) -> int | None:
    """RSS a measured CPU trial may grow by before it is killed: 2x the budget (+256 MiB), and with
    ``available`` at most 80 % of this machine's MemAvailable shared by the ``at_once`` trials that run
    together (without: the trials run elsewhere, on Ray nodes whose memory Ray's monitor guards)."""
    cap = 2 * int(memory_bytes) + CAP_SLACK_BYTES
    avail = available_bytes() if available else None
    if avail is not None:
        cap = min(cap, int(avail * 0.8) // max(1, at_once))
    return cap


def local_width(memory_bytes: int, width: int) -> tuple[int, int | None]:
    """``(trials at once, each one's cap)`` for measured CPU trials on this machine: the most trials, up to
    ``width``, whose share of the memory available (:func:`default_cap`) still holds a trial that fits the
    budget (budget + :data:`CAP_SLACK_BYTES`), so that running trials side by side never turns a batch that
    fits into one killed as too big.  A one-line RequestError when not even one trial has room."""
    need = int(memory_bytes) + CAP_SLACK_BYTES
    for w in range(max(1, int(width)), 0, -1):
        cap = default_cap(memory_bytes, w)
        if cap is None or cap >= need:
            return w, cap
    raise RequestError(f"--memory {int(memory_bytes):,} B: a trial that fits it may need {need:,} B, but this "
                       f"machine has {int((available_bytes() or 0) * 0.8):,} B (80 % of the memory available) "
                       "for it; free memory or ask for a smaller budget")


#: Seconds a measured trial may run before its worker is stopped (its trial then says so, status error).
TRIAL_TIMEOUT_S = 900.0


def trial_spec(spec: StepSpec, batch_size: int, *, steps: int = 2, time_steps: int = 1,
               cap_bytes: int | None = None) -> dict[str, Any]:
    """The job spec of one measured trial of ``spec`` at ``batch_size`` (``python -m gonprof.worker
    fit-trial``, :mod:`gonprof.budget_worker`)."""
    return {"step": spec.replace(batch_size=int(batch_size)).to_dict(), "steps": steps, "time_steps": time_steps,
            "cap_bytes": cap_bytes}


def measured_rounds(session: Session, spec_of: Callable[[int], dict], device: str = "cpu",
                    timeout_s: float | None = TRIAL_TIMEOUT_S) -> Callable[[list[int], Finished], None]:
    """``rounds(sizes, finished)`` for :func:`search_batch` and :func:`scaling`: each size a measured trial in
    its own worker process on an executor's ``session`` (:mod:`gonprof.executors`), ``finished(trial)`` as
    each ends, with the cores it ran on.  Ctrl-C stops the running trials and raises KeyboardInterrupt once
    the finished ones are reported."""
    def rounds(sizes: list[int], finished: Finished) -> None:
        cores: dict[int, list | None] = {}

        def started(k: int, spec: dict) -> None:
            cores[k] = spec.get("cpus")

        def done(k: int, outcome: Outcome) -> None:
            t = trial_from_outcome(sizes[k], outcome, device)  # the cores the worker saw, or those it was given
            finished(t if t.cpus else dataclasses.replace(t, cpus=cores.get(k)))

        session.run([Job("fit-trial", spec_of(b), timeout_s=timeout_s) for b in sizes], on_start=started,
                    on_done=done)
        if session.interrupted:
            raise KeyboardInterrupt

    return rounds


def run_trial(spec: StepSpec, *, steps: int = 2, time_steps: int = 1, cap_bytes: int | None = None,
              timeout_s: float = TRIAL_TIMEOUT_S) -> BatchTrial:
    """Measure ``spec`` at its batch size in a fresh process (``python -m gonprof.worker fit-trial``); status
    ``measured``, ``oom``, ``killed`` or ``error``; ``peak_bytes`` = the compared figure (see
    :mod:`gonprof.budget`)."""
    batch_size = spec.effective_batch_size()
    job = trial_spec(spec, batch_size, steps=steps, time_steps=time_steps, cap_bytes=cap_bytes)
    got: list[BatchTrial] = []
    with Placement().session() as session:
        measured_rounds(session, lambda b: job, spec.device, timeout_s)([batch_size], got.append)
    return got[0]


def trial_from_outcome(batch_size: int, outcome: Outcome, device: str = "cpu") -> BatchTrial:
    """The trial a worker's :class:`~gonprof.isolation.Outcome` describes (a death by signal, or by Ray's
    memory monitor, is ``killed``; a Ray worker or node that died, or any other Ray error, ``lost``)."""
    result, elapsed = outcome.result, outcome.wall_s
    if result is None:
        if outcome.oom and not outcome.interrupted:
            return BatchTrial(batch_size=batch_size, status="killed", elapsed_s=elapsed, message=outcome.oom)
        if outcome.lost:
            return BatchTrial(batch_size=batch_size, status="lost", elapsed_s=elapsed, message=outcome.lost)
        if outcome.timed_out or outcome.interrupted or outcome.error:  # not a verdict on the batch size
            _, message = outcome.failure()
            return BatchTrial(batch_size=batch_size, status="error", elapsed_s=elapsed, message=message)
        if outcome.signal_name:
            return BatchTrial(batch_size=batch_size, status="killed", elapsed_s=elapsed,
                              message=f"trial process killed by {outcome.signal_name} (out of memory?)")
        _, message = outcome.failure()
        return BatchTrial(batch_size=batch_size, status="error", elapsed_s=elapsed,
                          message=f"trial process failed: {message}"[:300])
    fields = {k: result.get(k) for k in ("peak_live_bytes", "peak_live_external_bytes", "input_bytes",
                                          "peak_rss_delta_bytes", "peak_rss_bytes",
                                          "rss_baseline_bytes", "cuda_max_memory_allocated_bytes",
                                          "cuda_max_memory_reserved_bytes", "step_time_s")}
    peak = None
    if result.get("status") == "measured":
        if device.startswith("cuda"):
            peak = fields["cuda_max_memory_allocated_bytes"]
        elif fields["peak_live_bytes"] is not None:
            # the whole batch in place of the part of it the step read (external storages)
            peak = fields["peak_live_bytes"] - (fields["peak_live_external_bytes"] or 0) + (fields["input_bytes"] or 0)
    return BatchTrial(batch_size=batch_size, status=result.get("status", "error"), peak_bytes=peak,
                      elapsed_s=elapsed, message=result.get("message", ""), cpus=result.get("cpus"), **fields)


def estimate_trial(spec: StepSpec, batch_size: int, steps: int = 2) -> BatchTrial:
    """``spec`` at ``batch_size`` by :func:`~gonprof.estimate.estimate_step_memory` (no real allocation)."""
    from ..estimate import estimate_step_memory

    t0 = time.perf_counter()
    try:
        e = estimate_step_memory(spec.replace(batch_size=int(batch_size)), steps=steps)
    except MemoryError as exc:  # pragma: no cover - meta allocates nothing
        return BatchTrial(batch_size=batch_size, status="oom", message=str(exc))
    except Exception as exc:  # noqa: BLE001
        return BatchTrial(batch_size=batch_size, status="error", elapsed_s=time.perf_counter() - t0,
                          message=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    return BatchTrial(batch_size=batch_size, status="measured", peak_bytes=e.peak_bytes,
                      peak_live_bytes=e.peak_live_bytes, peak_live_external_bytes=e.peak_live_external_bytes,
                      input_bytes=e.input_bytes,
                      cuda_max_memory_allocated_bytes=e.cuda_max_memory_allocated_bytes,
                      elapsed_s=time.perf_counter() - t0, message="estimated")


def compared_figure(device: str, estimate: bool) -> str:
    if str(device).startswith("cuda"):
        if estimate:
            return ("estimated torch.cuda.max_memory_allocated: live tensor storages each rounded up to 512 B "
                    "plus the input batch (reserved memory, workspaces and the CUDA context not included)")
        return "torch.cuda.max_memory_allocated during the steps (incl. the input batch)"
    what = "estimated" if estimate else "measured"
    return (f"{what} tensor-level peak: peak live tensor bytes of the step (params, buffers, grads, optimizer "
            "state, activations; LiveBytesTracker) + the input batch"
            + ("" if estimate else "; peak RSS over the pre-step baseline shown beside it, not compared"))


