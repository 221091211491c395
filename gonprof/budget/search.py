"""The search for the largest batch that fits a memory budget, and the least-squares fit of a scaling curve:
pure arithmetic over :class:`~gonprof.records.BatchTrial` results, no torch and no processes."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from ..records import BatchTrial, LinearFit

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
    out: list[int] = []
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
    search = _Search(trial, memory_bytes, max_batch, progress, width, rounds)
    try:
        if start is not None:
            search.from_guess(max(1, min(int(start), max_batch)))
        else:
            search.doubling()
        search.bisect()
    except _Stopped as stop:
        t = stop.trial
        return None, search.hi, tuple(search.trials), "error", f"batch {t.batch_size}: {t.message or t.status}"
    except KeyboardInterrupt:
        return None, search.hi, tuple(search.trials), "interrupted", (
            f"interrupted (Ctrl-C) after {len(search.trials)} finished trials, kept in this record")
    lo, hi, trials = search.lo, search.hi, search.trials
    msg = ""
    if lo == 0:
        small = [t.batch_size for t in trials if t.status == "too-small"]
        msg = "no batch size fits" + (f" (batch {', '.join(map(str, small))} too small to train)" if small else "")
    elif hi is None:
        msg = f"max_batch {max_batch} fits; the limit may be higher"
    return lo, hi, tuple(trials), "ok" if lo else "none-fits", msg


class _Stopped(Exception):
    """A trial that neither fitted nor was too big (an error): the search stops on it."""

    def __init__(self, trial: BatchTrial) -> None:
        super().__init__(trial.message)
        self.trial = trial


class _Search:
    """The state of one :func:`search_batch`: the trials so far and the interval (``lo`` fits, ``hi`` does
    not) that the phases (a gallop from a guess or the doubling, then the bisection) narrow."""

    def __init__(self, trial: Callable[[int], BatchTrial] | None, memory_bytes: int, max_batch: int,
                 progress: Callable[[BatchTrial], None] | None, width: int,
                 rounds: Callable[[list[int], Finished], None] | None) -> None:
        self.trial, self.memory_bytes, self.max_batch = trial, memory_bytes, max_batch
        self.progress, self.width, self.rounds = progress, max(1, int(width)), rounds
        self.trials: list[BatchTrial] = []
        self.seen: dict[int, BatchTrial] = {}
        self.lo: int = 0
        self.hi: int | None = None

    def finished(self, t: BatchTrial) -> None:
        t = classify(t, self.memory_bytes)
        self.trials.append(t)
        self.seen[t.batch_size] = t
        if self.progress is not None:
            self.progress(t)

    def run(self, sizes: list[int]) -> list[BatchTrial]:
        todo = [b for b in dict.fromkeys(sizes) if b not in self.seen]
        if self.rounds is not None and todo:
            self.rounds(todo, self.finished)
        else:
            assert self.trial is not None, "search_batch needs a trial or rounds"
            for b in todo:
                self.finished(self.trial(b))
        return [self.seen[b] for b in sizes]

    @staticmethod
    def too_big(t: BatchTrial) -> bool:
        """Whether ``t`` bounds the answer from above; an error stops the search."""
        if t.status in TOO_BIG or t.status == "too-small":
            return True
        if t.status != "fits":
            raise _Stopped(t)
        return False

    def from_guess(self, b: int) -> None:
        """Gallop from the guess ``b``: +1, +2, +4, ... while it fits, or -1, -2, -4, ... until one does."""
        first, *ups = self.run([b] + _gallop(b, 1, self.width - 1, +1, self.max_batch))
        if not self.too_big(first):
            self.lo, stride = b, 1
            while self.lo < self.max_batch and self.hi is None:
                for t in ups:
                    if self.too_big(t):
                        self.hi = t.batch_size
                        break
                    self.lo, stride = t.batch_size, stride * 2
                if self.hi is None and self.lo < self.max_batch:
                    ups = self.run(_gallop(self.lo, stride, self.width, +1, self.max_batch))
            return
        self.hi, stride = b, 1
        while self.hi > 1 and not self.lo:
            for t in self.run(_gallop(self.hi, stride, self.width, -1, 1)):
                if not self.too_big(t):
                    self.lo = t.batch_size
                    break
                self.hi, stride = t.batch_size, stride * 2

    def doubling(self) -> None:
        """1, 2, 4, ... until a size does not fit (or ``max_batch`` is reached)."""
        b, done = 1, False
        while not done:
            for t in self.run(_doubling(b, self.width, self.max_batch)):
                b = t.batch_size
                if t.status == "too-small":
                    if b >= self.max_batch:
                        self.hi, done = b, True
                        break
                elif not self.too_big(t):
                    self.lo = b
                    if b >= self.max_batch:
                        done = True
                        break
                else:
                    self.hi, done = b, True
                    break
            b = min(b * 2, self.max_batch)

    def bisect(self) -> None:
        """Binary search of (lo, hi), or the interval split into ``width + 1`` parts."""
        while self.hi is not None and self.hi - self.lo > 1:
            lo, hi = self.lo, self.hi
            cut = sorted({lo + (hi - lo) * j // (self.width + 1) for j in range(1, self.width + 1)} - {lo, hi})
            for t in self.run(cut):
                if self.too_big(t):
                    self.hi = t.batch_size
                    break
                self.lo = t.batch_size


def _doubling(b: int, n: int, max_batch: int) -> list[int]:
    """``b``, ``2b``, ``4b``, ... (``n`` sizes at most), clamped to and stopping at ``max_batch``."""
    out = [b]
    while len(out) < n and out[-1] < max_batch:
        out.append(min(out[-1] * 2, max_batch))
    return out


