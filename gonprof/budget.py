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

import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from .records import BatchTrial, FitRecord, LinearFit, ScalingRecord

#: Statuses of a trial that count as "does not fit" without stopping a search.
TOO_BIG = ("too-big", "oom", "killed")

#: Error messages that mean "this batch is too small to train" (the search then tries larger ones).
_TOO_SMALL = ("Expected more than 1 value per channel",)

_UNITS = {"b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30,
          "k": 2**10, "m": 2**20, "g": 2**30}


def parse_bytes(text: Any) -> int:
    """``"4GiB"`` -> 4294967296.  Units B, KB/KiB, MB/MiB, GB/GiB (KB = 1000, KiB = 1024; case-insensitive).

    A bare number is bytes; ``K`` / ``M`` / ``G`` alone are binary.  Anything else raises a one-line ValueError.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a memory size: {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), "b"
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS and m.group(2) != "":
            raise ValueError(f"not a memory size: {text!r} (use e.g. 512MiB, 4GiB, 2GB, 1000000B)")
        value, unit = float(m.group(1)), (m.group(2).lower() or "b")
    n = value * _UNITS[unit]
    if not math.isfinite(n) or n <= 0:
        raise ValueError(f"memory size must be positive: {text!r}")
    return int(round(n))


# --------------------------------------------------------------------------
# least squares
# --------------------------------------------------------------------------


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Fit ``y = intercept + slope * x``; needs two distinct x values (one point gives slope 0)."""
    n = len(xs)
    if n != len(ys) or n == 0:
        raise ValueError("least_squares needs equally many x and y values, at least one")
    my = statistics.fmean(ys)
    if len(set(xs)) > 1:
        slope, intercept = statistics.linear_regression(xs, ys)
    else:  # one distinct x: a constant
        slope, intercept = 0.0, my
    ss_tot = math.fsum((y - my) ** 2 for y in ys)
    ss_res = math.fsum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return LinearFit(intercept=float(intercept), slope=float(slope), r2=float(r2), n=n)


# --------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------


def classify(trial: BatchTrial, memory_bytes: int) -> BatchTrial:
    """A ``measured`` trial becomes ``fits`` or ``too-big`` by its ``peak_bytes``; an error that says the
    batch is too small to train (batch norm on one sample) becomes ``too-small``; others stay as they are."""
    import dataclasses

    if trial.status == "error" and any(s in trial.message for s in _TOO_SMALL):
        return dataclasses.replace(trial, status="too-small")
    if trial.status != "measured":
        return trial

    ok = trial.peak_bytes is not None and trial.peak_bytes <= memory_bytes
    return dataclasses.replace(trial, status="fits" if ok else "too-big")


#: Called with every trial of a round as it finishes (a round's trials may finish in any order).
Finished = Callable[[BatchTrial], None]


def _gallop(edge: int, stride: int, n: int, step: int, bound: int) -> list[int]:
    """The next ``n`` sizes of a gallop from ``edge``: ``edge + step*stride``, then the stride doubling each
    time, clamped to ``bound`` (max_batch going up, 1 going down); stops at the bound."""
    out = []
    while len(out) < n and edge != bound:
        edge = min(edge + stride, bound) if step > 0 else max(edge - stride, bound)
        out.append(edge)
        stride *= 2
    return out


def search_batch(
    trial: Callable[[int], BatchTrial] | None, memory_bytes: int, max_batch: int = 65536,
    progress: Callable[[BatchTrial], None] | None = None, start: int | None = None, width: int = 1,
    rounds: Callable[[list[int], Finished], None] | None = None,
) -> tuple[int | None, int | None, tuple[BatchTrial, ...], str, str]:
    """Largest ``b <= max_batch`` with ``trial(b)`` fitting: 1, 2, 4, ... then binary search.

    With ``start`` (a guess, e.g. from an estimate) the search gallops from it
    instead (start, start+1, start+3, start+7, ... or start-1, start-3, ...),
    then binary-searches: a right guess costs two trials.

    ``width`` > 1 runs the search in rounds of up to ``width`` trials at once
    through ``rounds(sizes, finished)``, which runs the sizes (e.g. on an
    executor, :mod:`gonprof.executors`) and calls ``finished(trial)`` as each
    ends: a round takes the next ``width`` sizes of the doubling (or of the
    gallop: a guess and the sizes above it), and the binary search splits the
    interval into ``width + 1`` parts instead of two.  Within a round the
    trials are read from the smallest size up, as the one-at-a-time search
    would have run them; sizes past the first that does not fit were run for
    nothing.  ``width=1`` is the one-at-a-time search exactly.

    Returns ``(answer, first_too_big, trials, status, message)``; answer 0 when
    a batch of 1 does not fit, None when a trial errored (the message says
    which; ``first_too_big`` then holds the largest fit seen so far's successor
    bound if any).  Ctrl-C (KeyboardInterrupt from a trial or a round) ends
    the search with status ``interrupted`` and the trials that finished.
    ``trials`` are in the order they finished.  Assumes the peak grows with
    the batch size.
    """
    trials: list[BatchTrial] = []
    seen: dict[int, BatchTrial] = {}
    width = max(1, int(width))

    def finished(t: BatchTrial) -> None:
        t = classify(t, memory_bytes)
        trials.append(t)
        seen[t.batch_size] = t
        if progress is not None:
            progress(t)

    def run(sizes: list[int]) -> list[BatchTrial]:
        todo = [b for b in dict.fromkeys(sizes) if b not in seen]
        if rounds is not None and todo:
            rounds(todo, finished)
        else:
            for b in todo:
                finished(trial(b))
        return [seen[b] for b in sizes]

    def stop(t: BatchTrial):
        return None, hi, tuple(trials), "error", f"batch {t.batch_size}: {t.message or t.status}"

    lo, hi = 0, None
    try:
        if start is not None:
            b = max(1, min(int(start), max_batch))
            first, *ups = run([b] + _gallop(b, 1, width - 1, +1, max_batch))
            if first.status == "fits":
                # gallop up from the guess: +1, +2, +4, ... while it fits
                lo, stride = b, 1
                while lo < max_batch and hi is None:
                    for t in ups:
                        if t.status == "fits":
                            lo, stride = t.batch_size, stride * 2
                        elif t.status in TOO_BIG or t.status == "too-small":
                            hi = t.batch_size
                            break
                        else:
                            return stop(t)
                    if hi is None and lo < max_batch:
                        ups = run(_gallop(lo, stride, width, +1, max_batch))
            elif first.status in TOO_BIG or first.status == "too-small":
                # gallop down from the guess: -1, -2, -4, ... until one fits
                hi, stride = b, 1
                while hi > 1 and not lo:
                    for t in run(_gallop(hi, stride, width, -1, 1)):
                        if t.status == "fits":
                            lo = t.batch_size
                            break
                        elif t.status in TOO_BIG or t.status == "too-small":
                            hi, stride = t.batch_size, stride * 2
                        else:
                            return stop(t)
            else:
                return stop(first)
        else:
            b, done = 1, False
            while not done:
                for t in run(_doubling(b, width, max_batch)):
                    b = t.batch_size
                    if t.status == "too-small":
                        if b >= max_batch:
                            hi, done = b, True
                            break
                    elif t.status == "fits":
                        lo = b
                        if b >= max_batch:
                            done = True
                            break
                    elif t.status in TOO_BIG:
                        hi, done = b, True
                        break
                    else:
                        return stop(t)
                b = min(b * 2, max_batch)
        while hi is not None and hi - lo > 1:
            # binary search, or the interval split into width + 1 parts
            cut = sorted({lo + (hi - lo) * j // (width + 1) for j in range(1, width + 1)} - {lo, hi})
            for t in run(cut):
                if t.status == "fits":
                    lo = t.batch_size
                elif t.status in TOO_BIG or t.status == "too-small":
                    hi = t.batch_size
                    break
                else:
                    return stop(t)
    except KeyboardInterrupt:
        return None, hi, tuple(trials), "interrupted", (f"interrupted (Ctrl-C) after {len(trials)} finished "
                                                        "trials, kept in this record")
    msg = ""
    if lo == 0:
        small = [t.batch_size for t in trials if t.status == "too-small"]
        msg = "no batch size fits" + (f" (batch {', '.join(map(str, small))} too small to train)" if small else "")
    elif hi is None:
        msg = f"max_batch {max_batch} fits; the limit may be higher"
    return lo, hi, tuple(trials), "ok" if lo else "none-fits", msg


def _doubling(b: int, n: int, max_batch: int) -> list[int]:
    """``b``, ``2b``, ``4b``, ... (``n`` sizes at most), clamped to and stopping at ``max_batch``."""
    out = [b]
    while len(out) < n and out[-1] < max_batch:
        out.append(min(out[-1] * 2, max_batch))
    return out


# --------------------------------------------------------------------------
# trials
# --------------------------------------------------------------------------


def _available_bytes() -> int | None:
    import psutil

    return int(psutil.virtual_memory().available)


#: RSS a trial that fits the budget may grow by beyond it (the allocator's caching and pages, the step's
#: own bookkeeping); a cap below budget + this could kill a trial that fits.
CAP_SLACK_BYTES = 256 * 2**20


def default_cap(memory_bytes: int, at_once: int = 1, available: bool = True) -> int | None:
    """RSS a measured CPU trial may grow by before it is killed: 2x the budget (+256 MiB), and with
    ``available`` at most 80 % of this machine's MemAvailable shared by the ``at_once`` trials that run
    together (without: the trials run elsewhere, on Ray nodes whose memory Ray's monitor guards)."""
    cap = 2 * int(memory_bytes) + CAP_SLACK_BYTES
    avail = _available_bytes() if available else None
    if avail is not None:
        cap = min(cap, int(avail * 0.8) // max(1, at_once))
    return cap


def local_width(memory_bytes: int, width: int) -> tuple[int, int]:
    """``(trials at once, each one's cap)`` for measured CPU trials on this machine: the most trials, up to
    ``width``, whose share of the memory available (:func:`default_cap`) still holds a trial that fits the
    budget (budget + :data:`CAP_SLACK_BYTES`), so that running trials side by side never turns a batch that
    fits into one killed as too big.  A one-line RequestError when not even one trial has room."""
    from .records import RequestError

    need = int(memory_bytes) + CAP_SLACK_BYTES
    for w in range(max(1, int(width)), 0, -1):
        cap = default_cap(memory_bytes, w)
        if cap is None or cap >= need:
            return w, cap
    raise RequestError(f"--memory {int(memory_bytes):,} B: a trial that fits it may need {need:,} B, but this "
                       f"machine has {int((_available_bytes() or 0) * 0.8):,} B (80 % of the memory available) "
                       "for it; free memory or ask for a smaller budget")


#: Seconds a measured trial may run before its worker is stopped (its trial then says so, status error).
TRIAL_TIMEOUT_S = 900.0


def trial_spec(arch: str, mode: str, batch_size: int, *, device: str = "cpu", generator: str | None = None,
               preset: str | None = None, input_shape: Any = None, hparams: dict | None = None, seed: int = 0,
               steps: int = 2, time_steps: int = 1, cap_bytes: int | None = None) -> dict:
    """The spec of one measured trial (``python -m gonprof.worker fit-trial``, :mod:`gonprof.budget_worker`)."""
    return dict(arch=arch, mode=mode, batch_size=int(batch_size), device=device, generator=generator,
                preset=preset, input_shape=list(input_shape) if input_shape else None, hparams=hparams or {},
                seed=seed, steps=steps, time_steps=time_steps, cap_bytes=cap_bytes)


def measured_rounds(session, spec_of: Callable[[int], dict], device: str = "cpu",
                    timeout_s: float | None = TRIAL_TIMEOUT_S) -> Callable[[list[int], Finished], None]:
    """``rounds(sizes, finished)`` for :func:`search_batch` and :func:`scaling`: each size a measured trial in
    its own worker process on an executor's ``session`` (:mod:`gonprof.executors`), ``finished(trial)`` as
    each ends, with the cores it ran on.  Ctrl-C stops the running trials and raises KeyboardInterrupt once
    the finished ones are reported."""
    from .executors import Job

    def rounds(sizes: list[int], finished: Finished) -> None:
        import dataclasses

        cores: dict[int, list | None] = {}

        def started(k: int, spec: dict) -> None:
            cores[k] = spec.get("cpus")

        def done(k: int, outcome) -> None:
            t = trial_from_outcome(sizes[k], outcome, device)  # the cores the worker saw, or those it was given
            finished(t if t.cpus else dataclasses.replace(t, cpus=cores.get(k)))

        session.run([Job("fit-trial", spec_of(b), timeout_s=timeout_s) for b in sizes], on_start=started,
                    on_done=done)
        if session.interrupted:
            raise KeyboardInterrupt

    return rounds


def run_trial(arch: str, mode: str, batch_size: int, *, device: str = "cpu", generator: str | None = None,
              preset: str | None = None, input_shape: Any = None, hparams: dict | None = None, seed: int = 0,
              steps: int = 2, time_steps: int = 1, cap_bytes: int | None = None,
              timeout_s: float = TRIAL_TIMEOUT_S) -> BatchTrial:
    """Measure one batch size in a fresh process (``python -m gonprof.worker fit-trial``); status ``measured``,
    ``oom``, ``killed`` or ``error``; ``peak_bytes`` = the compared figure (see the module docstring)."""
    from .executors import Executor

    spec = trial_spec(arch, mode, batch_size, device=device, generator=generator, preset=preset,
                      input_shape=input_shape, hparams=hparams, seed=seed, steps=steps, time_steps=time_steps,
                      cap_bytes=cap_bytes)
    got: list[BatchTrial] = []
    with Executor().session() as session:
        measured_rounds(session, lambda b: spec, device, timeout_s)([int(batch_size)], got.append)
    return got[0]


def trial_from_outcome(batch_size: int, outcome, device: str = "cpu") -> BatchTrial:
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
    fields = {k: result.get(k) for k in ("peak_live_bytes", "input_bytes", "peak_rss_delta_bytes", "peak_rss_bytes",
                                          "rss_baseline_bytes", "cuda_max_memory_allocated_bytes",
                                          "cuda_max_memory_reserved_bytes", "step_time_s")}
    peak = None
    if result.get("status") == "measured":
        if device.startswith("cuda"):
            peak = fields["cuda_max_memory_allocated_bytes"]
        elif fields["peak_live_bytes"] is not None:
            peak = fields["peak_live_bytes"] + (fields["input_bytes"] or 0)
    return BatchTrial(batch_size=batch_size, status=result.get("status", "error"), peak_bytes=peak,
                      elapsed_s=elapsed, message=result.get("message", ""), cpus=result.get("cpus"), **fields)


def estimate_trial(arch: str, mode: str, batch_size: int, *, device: str = "cpu", **kwargs: Any) -> BatchTrial:
    """One batch size by :func:`~gonprof.estimate.estimate_step_memory` (no real allocation)."""
    from .estimate import estimate_step_memory

    t0 = time.perf_counter()
    try:
        e = estimate_step_memory(arch, mode, batch_size=batch_size, device=device, **kwargs)
    except MemoryError as exc:  # pragma: no cover - meta allocates nothing
        return BatchTrial(batch_size=batch_size, status="oom", message=str(exc))
    except Exception as exc:  # noqa: BLE001
        return BatchTrial(batch_size=batch_size, status="error", elapsed_s=time.perf_counter() - t0,
                          message=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    return BatchTrial(batch_size=batch_size, status="measured", peak_bytes=e.peak_bytes,
                      peak_live_bytes=e.peak_live_bytes, input_bytes=e.input_bytes,
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


def _resolve(arch: str, mode: str | None) -> str:
    if mode:
        return mode
    from .modes.build import default_mode

    return default_mode(arch)


def _trial_fn(arch: str, mode: str, device: str, estimate: bool, generator: str | None, preset: str | None,
              input_shape: Any, hparams: dict | None, seed: int, steps: int,
              trial: Callable[[int], BatchTrial] | None) -> Callable[[int], BatchTrial] | None:
    """The in-process trial: the one given (tests), an estimate, or None (measured trials run on an executor)."""
    if trial is not None:
        return trial
    if estimate:
        return lambda b: estimate_trial(arch, mode, b, device=device, generator=generator, preset=preset,
                                        input_shape=input_shape, hparams=hparams, seed=seed, steps=steps)
    return None


def _executor_notes(executor, width: int, what: str) -> list[str]:
    """What the record says about where its measured trials ran (nothing for one local trial at a time)."""
    if executor.default:
        return []
    if executor.name == "ray":
        return [f"{what} ran as Ray tasks ({executor.describe()}), up to {width} at once"]
    return [f"{what} ran up to {width} at once, each in its own process pinned to its own cores (torch threads "
            f"to match; each one's cpus); step times were taken beside the others (memory bandwidth and caches "
            "shared), memory figures are each process's own"]


def _environment(device: str):
    try:
        from .records import Environment

        return Environment.capture(device)
    except Exception:  # noqa: BLE001
        return None


def _check_request(arch: str, mode: str, preset: str | None, hparams: dict | None) -> None:
    """Unknown architecture, mode, preset or hyper-parameter names fail here, not in every trial."""
    from .arch import get_arch
    from .modes.base import get_mode

    get_arch(arch)
    get_mode(mode).hparams(preset, **(hparams or {}))


def fit_batch(
    arch: str,
    mode: str | None = None,
    *,
    memory_bytes: Any,
    device: str = "cpu",
    estimate: bool = False,
    generator: str | None = None,
    preset: str | None = None,
    input_shape: Any = None,
    hparams: dict | None = None,
    seed: int = 0,
    max_batch: int = 65536,
    steps: int = 2,
    time_steps: int = 1,
    cap_bytes: int | None = None,
    progress: Callable[[BatchTrial], None] | None = None,
    trial: Callable[[int], BatchTrial] | None = None,
    guide: bool = False,
    executor: Any = None,
) -> FitRecord:
    """The largest batch size whose step peak stays within ``memory_bytes`` (an int or ``"4GiB"``).

    ``estimate=True``: trials are estimates (fast, nothing allocated, cuda
    without a GPU).  Otherwise each trial runs ``steps`` tracked steps and
    ``time_steps`` timed ones in its own process, capped at ``cap_bytes`` of
    RSS growth (default :func:`default_cap`).  ``progress(trial)`` is called
    after each trial; ``trial(batch_size) -> BatchTrial`` replaces the trial
    runner (tests).  ``guide=True`` (measured trials only): first find the
    answer by estimates, then measure from there (two measured trials when
    the estimate is right, instead of about 2 log2(B)).  Errors in the
    request (unknown names) raise before any trial.

    ``executor`` (:class:`gonprof.executors.Executor`; default one local
    worker at a time) places the measured trials: with room for several at
    once (``--jobs N``, a Ray cluster) the search runs in rounds of that many
    trials (:func:`search_batch`'s ``width``), each trial's cap a share of the
    memory available (fewer at once when a share could not hold the budget,
    :func:`local_width`; a Ray trial's cap is not bounded by this machine's
    memory).  Ctrl-C keeps the finished trials in a record with
    status ``interrupted``.
    """
    memory_bytes = parse_bytes(memory_bytes)
    mode = _resolve(arch, mode)
    if trial is None:
        _check_request(arch, mode, preset, hparams)
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    is_cpu = not str(device).startswith("cuda")
    from .executors import Executor

    executor = executor or Executor()
    fn = _trial_fn(arch, mode, device, estimate, generator, preset, input_shape, hparams, seed, steps, trial)
    notes = []
    start = None
    if guide and not estimate and trial is None:
        g = fit_batch(arch, mode, memory_bytes=memory_bytes, device=device, estimate=True, generator=generator,
                      preset=preset, input_shape=input_shape, hparams=hparams, seed=seed, max_batch=max_batch,
                      steps=steps)
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
                if executor.name == "ray":  # the trials run on the cluster's nodes, not in this machine's memory
                    cap_bytes = default_cap(memory_bytes, available=False)
                else:
                    width, cap_bytes = local_width(memory_bytes, width)
                    if width < session.width:
                        notes.append(f"{width} trials at once, not {session.width}: the memory available holds "
                                     f"no more trials that each may grow to the budget")

            def spec_of(b: int) -> dict:
                return trial_spec(arch, mode, b, device=device, generator=generator, preset=preset,
                                  input_shape=input_shape, hparams=hparams, seed=seed, steps=steps,
                                  time_steps=time_steps, cap_bytes=cap_bytes)

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
    return FitRecord(status=status, message=message, arch=arch, mode=mode, generator=generator, device=str(device),
                     estimate=bool(estimate), memory_bytes=memory_bytes, batch_size=answer, first_too_big=first_bad,
                     max_batch=int(max_batch), compared=compared_figure(device, estimate), trials=trials,
                     environment=_environment(device), notes=tuple(notes), preset=preset,
                     hparams=dict(hparams or {}), search=search)


def scaling(
    arch: str,
    mode: str | None = None,
    *,
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    device: str = "cpu",
    estimate: bool = False,
    generator: str | None = None,
    preset: str | None = None,
    input_shape: Any = None,
    hparams: dict | None = None,
    seed: int = 0,
    steps: int = 2,
    time_steps: int = 3,
    cap_bytes: int | None = None,
    progress: Callable[[BatchTrial], None] | None = None,
    trial: Callable[[int], BatchTrial] | None = None,
    executor: Any = None,
) -> ScalingRecord:
    """Peak memory (and step time, when measured) at each batch size, fitted as fixed + per sample.

    ``memory_fit.intercept`` = fixed bytes, ``memory_fit.slope`` = bytes per
    sample (on ``peak_bytes``, see ``compared``); ``time_fit`` likewise in
    seconds (None for estimates).  Points that failed are kept with their
    status and left out of the fits.  Measured points each run in their own
    worker process, placed by ``executor`` (:class:`gonprof.executors.Executor`;
    default one local worker at a time; the points are independent, so
    ``--jobs N`` or a Ray cluster runs that many at once).  Ctrl-C keeps the
    finished points, fitted, in a record with status ``interrupted``.
    """
    mode = _resolve(arch, mode)
    if trial is None:
        _check_request(arch, mode, preset, hparams)
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    from .executors import Executor

    executor = executor or Executor()
    fn = _trial_fn(arch, mode, device, estimate, generator, preset, input_shape, hparams, seed, steps, trial)
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
                    arch, mode, b, device=device, generator=generator, preset=preset, input_shape=input_shape,
                    hparams=hparams, seed=seed, steps=steps, time_steps=time_steps, cap_bytes=cap_bytes),
                    device)(sizes, finished)
            notes += _executor_notes(executor, session.width, "points")
    except KeyboardInterrupt:
        interrupted = True
    points = [done[b] for b in sizes if b in done]
    good = [p for p in points if p.status == "measured" and p.peak_bytes is not None]
    mem_fit = least_squares([p.batch_size for p in good], [p.peak_bytes for p in good]) if good else None
    timed = [p for p in good if p.step_time_s is not None]
    time_fit = least_squares([p.batch_size for p in timed], [p.step_time_s for p in timed]) if timed else None
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
    return ScalingRecord(status=status, message=message, arch=arch, mode=mode, generator=generator,
                         device=str(device), estimate=bool(estimate), compared=compared_figure(device, estimate),
                         points=tuple(points), memory_fit=mem_fit, time_fit=time_fit,
                         environment=_environment(device), notes=tuple(notes), preset=preset,
                         hparams=dict(hparams or {}))
