"""Memory budgets: the largest batch that fits (:func:`fit_batch`) and how a step grows with the batch (:func:`scaling`).

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
gonprof.worker fit-trial``, :mod:`gonprof.budget_worker`): a trial that raises out-of-memory (``oom``) or dies
(``killed``: the OOM killer, or the trial's own RSS cap, by default twice the
budget and at most 80 % of the memory available) counts as too big; the
search goes on.  Any other error stops the search (``status="error"``).
With ``estimate=True`` trials are :func:`~gonprof.estimate.estimate_step_memory`
calls in this process: nothing real is allocated, ``cuda`` works without a GPU.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

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


def search_batch(
    trial: Callable[[int], BatchTrial], memory_bytes: int, max_batch: int = 65536,
    progress: Optional[Callable[[BatchTrial], None]] = None, start: Optional[int] = None,
) -> tuple[Optional[int], Optional[int], tuple[BatchTrial, ...], str, str]:
    """Largest ``b <= max_batch`` with ``trial(b)`` fitting: 1, 2, 4, ... then binary search.

    With ``start`` (a guess, e.g. from an estimate) the search gallops from it
    instead (start, start+1, start+2, start+4, ... or start-1, start-2, ...),
    then binary-searches: a right guess costs two trials.

    Returns ``(answer, first_too_big, trials, status, message)``; answer 0 when
    a batch of 1 does not fit, None when a trial errored (the message says
    which; ``first_too_big`` then holds the largest fit seen so far's successor
    bound if any).  Assumes the peak grows with the batch size.
    """
    trials: list[BatchTrial] = []
    seen: dict[int, BatchTrial] = {}

    def run(b: int) -> BatchTrial:
        if b in seen:
            return seen[b]
        t = classify(trial(b), memory_bytes)
        trials.append(t)
        seen[b] = t
        if progress is not None:
            progress(t)
        return t

    lo, hi = 0, None
    if start is not None:
        # gallop from the hint: +1, +2, +4, ... while it fits, or -1, -2, -4, ... while it does not
        b = max(1, min(int(start), max_batch))
        t = run(b)
        if t.status == "fits":
            lo, stride = b, 1
            while lo < max_batch:
                nb = min(lo + stride, max_batch)
                t = run(nb)
                if t.status == "fits":
                    lo, stride = nb, stride * 2
                elif t.status in TOO_BIG or t.status == "too-small":
                    hi = nb
                    break
                else:
                    return None, hi, tuple(trials), "error", f"batch {nb}: {t.message or t.status}"
        elif t.status in TOO_BIG or t.status == "too-small":
            hi, stride = b, 1
            while hi > 1:
                nb = max(1, hi - stride)
                t = run(nb)
                if t.status == "fits":
                    lo = nb
                    break
                elif t.status in TOO_BIG or t.status == "too-small":
                    hi, stride = nb, stride * 2
                else:
                    return None, hi, tuple(trials), "error", f"batch {nb}: {t.message or t.status}"
        else:
            return None, hi, tuple(trials), "error", f"batch {b}: {t.message or t.status}"
    else:
        b = 1
        while True:
            t = run(b)
            if t.status == "too-small":
                if b >= max_batch:
                    hi = b
                    break
                b = min(b * 2, max_batch)
            elif t.status == "fits":
                lo = b
                if b >= max_batch:
                    break
                b = min(b * 2, max_batch)
            elif t.status in TOO_BIG:
                hi = b
                break
            else:
                return None, hi, tuple(trials), "error", f"batch {b}: {t.message or t.status}"
    if hi is not None:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            t = run(mid)
            if t.status == "fits":
                lo = mid
            elif t.status in TOO_BIG or t.status == "too-small":
                hi = mid
            else:
                return None, hi, tuple(trials), "error", f"batch {mid}: {t.message or t.status}"
    msg = ""
    if lo == 0:
        small = [t.batch_size for t in trials if t.status == "too-small"]
        msg = "no batch size fits" + (f" (batch {', '.join(map(str, small))} too small to train)" if small else "")
    elif hi is None:
        msg = f"max_batch {max_batch} fits; the limit may be higher"
    return lo, hi, tuple(trials), "ok" if lo else "none-fits", msg


# --------------------------------------------------------------------------
# trials
# --------------------------------------------------------------------------


def _available_bytes() -> Optional[int]:
    import psutil

    return int(psutil.virtual_memory().available)


def default_cap(memory_bytes: int) -> Optional[int]:
    """RSS a measured CPU trial may grow by before it is killed: 2x the budget (+256 MiB), <= 80 % of MemAvailable."""
    cap = 2 * int(memory_bytes) + 256 * 2**20
    avail = _available_bytes()
    if avail is not None:
        cap = min(cap, int(avail * 0.8))
    return cap


def run_trial(arch: str, mode: str, batch_size: int, *, device: str = "cpu", generator: Optional[str] = None,
              preset: Optional[str] = None, input_shape: Any = None, hparams: Optional[dict] = None, seed: int = 0,
              steps: int = 2, time_steps: int = 1, cap_bytes: Optional[int] = None,
              timeout_s: float = 900.0) -> BatchTrial:
    """Measure one batch size in a fresh process (``python -m gonprof.worker fit-trial``); status ``measured``,
    ``oom``, ``killed`` or ``error``; ``peak_bytes`` = the compared figure (see the module docstring)."""
    import tempfile

    from .isolation import run_worker

    spec = dict(arch=arch, mode=mode, batch_size=int(batch_size), device=device, generator=generator,
                preset=preset, input_shape=list(input_shape) if input_shape else None, hparams=hparams or {},
                seed=seed, steps=steps, time_steps=time_steps, cap_bytes=cap_bytes)
    with tempfile.TemporaryDirectory(prefix="gonprof-trial-") as tmp:
        outcome = run_worker("fit-trial", spec, Path(tmp), timeout_s=timeout_s)
    if outcome.interrupted:
        raise KeyboardInterrupt
    return trial_from_outcome(int(batch_size), outcome, device)


def trial_from_outcome(batch_size: int, outcome, device: str = "cpu") -> BatchTrial:
    """The trial a worker's :class:`~gonprof.isolation.Outcome` describes (a death by signal is ``killed``)."""
    result, elapsed = outcome.result, outcome.wall_s
    if result is None:
        if outcome.timed_out or outcome.interrupted:  # not a verdict on the batch size
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
                      elapsed_s=elapsed, message=result.get("message", ""), **fields)


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


def _resolve(arch: str, mode: Optional[str]) -> str:
    if mode:
        return mode
    from .modes.build import default_mode

    return default_mode(arch)


def _trial_fn(arch: str, mode: str, device: str, estimate: bool, generator: Optional[str], preset: Optional[str],
              input_shape: Any, hparams: Optional[dict], seed: int, steps: int, time_steps: int,
              cap_bytes: Optional[int], trial: Optional[Callable[[int], BatchTrial]]) -> Callable[[int], BatchTrial]:
    if trial is not None:
        return trial
    if estimate:
        return lambda b: estimate_trial(arch, mode, b, device=device, generator=generator, preset=preset,
                                        input_shape=input_shape, hparams=hparams, seed=seed, steps=steps)
    return lambda b: run_trial(arch, mode, b, device=device, generator=generator, preset=preset,
                               input_shape=input_shape, hparams=hparams, seed=seed, steps=steps,
                               time_steps=time_steps, cap_bytes=cap_bytes)


def _environment(device: str):
    try:
        from .records import Environment

        return Environment.capture(device)
    except Exception:  # noqa: BLE001
        return None


def _check_request(arch: str, mode: str, preset: Optional[str], hparams: Optional[dict]) -> None:
    """Unknown architecture, mode, preset or hyper-parameter names fail here, not in every trial."""
    from .arch import get_arch
    from .modes.base import get_mode

    get_arch(arch)
    get_mode(mode).hparams(preset, **(hparams or {}))


def fit_batch(
    arch: str,
    mode: Optional[str] = None,
    *,
    memory_bytes: Any,
    device: str = "cpu",
    estimate: bool = False,
    generator: Optional[str] = None,
    preset: Optional[str] = None,
    input_shape: Any = None,
    hparams: Optional[dict] = None,
    seed: int = 0,
    max_batch: int = 65536,
    steps: int = 2,
    time_steps: int = 1,
    cap_bytes: Optional[int] = None,
    progress: Optional[Callable[[BatchTrial], None]] = None,
    trial: Optional[Callable[[int], BatchTrial]] = None,
    guide: bool = False,
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
    """
    memory_bytes = parse_bytes(memory_bytes)
    mode = _resolve(arch, mode)
    if trial is None:
        _check_request(arch, mode, preset, hparams)
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    is_cpu = not str(device).startswith("cuda")
    if cap_bytes is None and is_cpu and not estimate and trial is None:
        cap_bytes = default_cap(memory_bytes)
    fn = _trial_fn(arch, mode, device, estimate, generator, preset, input_shape, hparams, seed, steps, time_steps,
                   cap_bytes, trial)
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
    answer, first_bad, trials, status, message = search_batch(fn, memory_bytes, int(max_batch), progress, start)
    if cap_bytes:
        notes.append(f"each trial ran in its own process, killed past {cap_bytes:,} B of RSS growth")
    if estimate:
        notes.append("trials estimated on meta tensors (gonprof.estimate); nothing real allocated")
    return FitRecord(status=status, message=message, arch=arch, mode=mode, generator=generator, device=str(device),
                     estimate=bool(estimate), memory_bytes=memory_bytes, batch_size=answer, first_too_big=first_bad,
                     max_batch=int(max_batch), compared=compared_figure(device, estimate), trials=trials,
                     environment=_environment(device), notes=tuple(notes), preset=preset,
                     hparams=dict(hparams or {}))


def scaling(
    arch: str,
    mode: Optional[str] = None,
    *,
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    device: str = "cpu",
    estimate: bool = False,
    generator: Optional[str] = None,
    preset: Optional[str] = None,
    input_shape: Any = None,
    hparams: Optional[dict] = None,
    seed: int = 0,
    steps: int = 2,
    time_steps: int = 3,
    cap_bytes: Optional[int] = None,
    progress: Optional[Callable[[BatchTrial], None]] = None,
    trial: Optional[Callable[[int], BatchTrial]] = None,
) -> ScalingRecord:
    """Peak memory (and step time, when measured) at each batch size, fitted as fixed + per sample.

    ``memory_fit.intercept`` = fixed bytes, ``memory_fit.slope`` = bytes per
    sample (on ``peak_bytes``, see ``compared``); ``time_fit`` likewise in
    seconds (None for estimates).  Points that failed are kept with their
    status and left out of the fits.
    """
    mode = _resolve(arch, mode)
    if trial is None:
        _check_request(arch, mode, preset, hparams)
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    fn = _trial_fn(arch, mode, device, estimate, generator, preset, input_shape, hparams, seed, steps, time_steps,
                   cap_bytes, trial)
    points = []
    for b in sizes:
        t = fn(b)
        points.append(t)
        if progress is not None:
            progress(t)
    good = [p for p in points if p.status == "measured" and p.peak_bytes is not None]
    mem_fit = least_squares([p.batch_size for p in good], [p.peak_bytes for p in good]) if good else None
    timed = [p for p in good if p.step_time_s is not None]
    time_fit = least_squares([p.batch_size for p in timed], [p.step_time_s for p in timed]) if timed else None
    bad = [p for p in points if p not in good]
    status, message = "ok", ""
    if bad:
        status = "error" if not good else "ok"
        message = "; ".join(f"batch {p.batch_size}: {p.status} {p.message}".strip() for p in bad)
    notes = ["fits: peak_bytes = intercept (fixed bytes) + slope (bytes per sample) x batch size; "
             "step time likewise in seconds"]
    if estimate:
        notes.append("estimated on meta tensors: no step times")
    return ScalingRecord(status=status, message=message, arch=arch, mode=mode, generator=generator,
                         device=str(device), estimate=bool(estimate), compared=compared_figure(device, estimate),
                         points=tuple(points), memory_fit=mem_fit, time_fit=time_fit,
                         environment=_environment(device), notes=tuple(notes), preset=preset,
                         hparams=dict(hparams or {}))
