"""Wall-time measurement: a Timer with an injectable clock, and robust statistics.

Statistics: median, p10, p90 (linear interpolation between order statistics,
numpy's default "linear" method), mean, min, max, n.  A series is flagged
``noisy`` when its relative spread ``(p90 - p10) / median`` exceeds
``noisy_threshold`` (default 0.2, i.e. the middle 80 % of steps span more than
20 % of the median): such a median is reported, but marked, never silently.

On a CUDA device the timer synchronises before reading the clock, so that
queued kernels are inside the interval they belong to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from gonprof.records import DEFAULT_NOISY_THRESHOLD, TimingStats

Clock = Callable[[], float]


def percentile(sorted_values: list[float], q: float) -> float:
    """``q`` in [0, 1]; linear interpolation between closest ranks (numpy 'linear')."""
    if not sorted_values:
        return math.nan
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be in [0, 1]")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def summarize(times: Iterable[float], noisy_threshold: float = DEFAULT_NOISY_THRESHOLD) -> TimingStats:
    """Statistics of a series of durations in seconds."""
    xs = sorted(float(t) for t in times)
    n = len(xs)
    if n == 0:
        nan = math.nan
        return TimingStats(0, nan, nan, nan, nan, nan, nan, nan, False, noisy_threshold)
    median = percentile(xs, 0.5)
    p10 = percentile(xs, 0.1)
    p90 = percentile(xs, 0.9)
    spread = (p90 - p10) / median if median > 0 else (0.0 if p90 == p10 else math.inf)
    return TimingStats(
        n=n,
        time_s_median=median,
        time_s_p10=p10,
        time_s_p90=p90,
        time_s_mean=sum(xs) / n,
        time_s_min=xs[0],
        time_s_max=xs[-1],
        spread=spread,
        noisy=bool(spread > noisy_threshold),
        noisy_threshold=noisy_threshold,
    )


def make_sync(device: Any) -> Callable[[], None] | None:
    """A function that waits for ``device`` (CUDA only); None when no wait is needed."""
    if device is None:
        return None
    dtype = getattr(device, "type", None) or str(device).split(":")[0]
    if dtype != "cuda":
        return None
    import torch

    dev = torch.device(device)

    def sync() -> None:
        torch.cuda.synchronize(dev)

    return sync


class Timer:
    """Collects durations.  ``with timer: ...`` or ``timer.start(); ...; timer.stop()``.

    ``clock`` defaults to :func:`time.perf_counter`; inject any zero-argument
    callable returning seconds (tests use a fake clock).  ``device``: when it is
    a CUDA device, ``torch.cuda.synchronize`` runs before each clock read.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        device: Any = None,
        noisy_threshold: float = DEFAULT_NOISY_THRESHOLD,
    ) -> None:
        self.clock: Clock = clock or time.perf_counter
        self.sync = make_sync(device)
        self.noisy_threshold = noisy_threshold
        self.times: list[float] = []
        self._t0: float | None = None

    def now(self) -> float:
        if self.sync is not None:
            self.sync()
        return self.clock()

    def start(self) -> None:
        self._t0 = self.now()

    def stop(self) -> float:
        if self._t0 is None:
            raise RuntimeError("Timer.stop() without start()")
        dt = self.now() - self._t0
        self._t0 = None
        self.times.append(dt)
        return dt

    def __enter__(self) -> Timer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stats(self) -> TimingStats:
        return summarize(self.times, self.noisy_threshold)

    def reset(self) -> None:
        self.times.clear()
        self._t0 = None
