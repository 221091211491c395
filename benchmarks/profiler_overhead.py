"""The Profiler's overhead: median step time profiled / unprofiled, measured side by side in one run.

    python benchmarks/profiler_overhead.py [--rounds 12] [--steps-per-round 2] [--threads 1]
        [--pairs gon-mnist-mlp:gon,inception-k32:lsgan] [--gon-inner-steps 20] [--json PATH]

For each (architecture, mode) pair the script builds the step once (gonprof.modes.build_step),
draws batches from one shared stream (the embedded MNIST test split, as ``gonprof profile``
does) and runs ``--rounds`` rounds; each round is one **unprofiled block** and one
**profiled block**, in alternating order (ABBA), so that other processes on the machine slow
both sides alike.  Other processes here come and go in phases of tens of seconds, about a
few inception-k32 steps, so blocks are short (default 2 timed steps) and rounds many:

* unprofiled block: the loop of ``gonprof.runner.profile_step`` without the Profiler:
  ``next(batches)``, ``step.step(real, labels, phase=no_phase)``, the loss finiteness check;
  first the same number of untimed steps as the profiled block, then ``--steps-per-round``
  steps timed with ``time.perf_counter`` (the Profiler's default clock) from one step
  boundary to the next (the boundary is where ``prof.step()`` would be called);
* profiled block: the same loop under ``gonprof.Profiler(warmup=1, active=K)`` with
  ``phase=prof.phase``, exactly as ``profile_step`` runs it: one untimed measuring step
  (FLOP counter and live-bytes tracker; excluded), then K timed steps, whose times are the
  Profiler's own figures (``record.steps[i].step_time_s``).

The ratio is median(profiled timed steps) / median(unprofiled steps), over all rounds; the
output adds a bootstrap 90% interval of it and the min / median / max of the per-round
ratios (each from two adjacent blocks, the estimate least affected by slow drift).  A
second ratio ("loop") times the profiled loop from outside, between consecutive returns of
``prof.step()``, so that it also counts the Profiler's per-step bookkeeping that falls
outside its own clock (the VmHWM reset before the clock starts and the VmHWM read after it
stops).  An empty-step micro-benchmark prints that bookkeeping's cost in microseconds, the
figure that noise does not blur.

Before any round, both sides are warmed up (``--warmup-steps`` unprofiled steps and one
whole profiled block, discarded): first-call costs such as lazy imports (torch._dynamo from
the optimizers, the FLOP counter's and tracker's modules), allocator growth and the
cosine learning-rate table are paid there, not in the figures.

GON (gon-mnist-mlp, fast default path, batch 64): its inner loop early-stops per sample, so
the number of inner iterations would vary from step to step and differ between the sides.
The script sets ``early_stop_eps=0`` (the early-stop test can then never pass) and
``inner_steps=--gon-inner-steps`` (default 20, against the default cap 1000 of which about
440 run with early stop on), and checks after every step that exactly that many ran: both
sides do identical work.  A shorter step is the harsher test of a fixed per-step cost.

LSGAN (inception-k32, GAS's defaults: batch 32, 1 D update then 4 G updates with
gas-generator): fixed work per step as it is.

Threads: ``--threads 1`` by default.  On this shared 2-core machine, with other processes
running, two OpenMP threads collapse (a 20-iteration GON step measured 0.2 s with one thread
and 6-12 s with two), which would drown any overhead in noise; ``--threads 0`` keeps torch's
default.  The target from issue 5: ratio <= 1.03.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time

DEFAULT_PAIRS = "gon-mnist-mlp:gon,inception-k32:lsgan"
TARGET = 1.03
#: The measuring step with per-module attribution and the timeline against the tracker before them (issue 23).
TRACKER_TARGET = 1.5
CARRY = ("timed steps carry only: the clock (time.perf_counter at the step's start and end, two more "
         "reads around each `with prof.phase(...)` block), the RSS high-water mark (VmHWM reset by "
         "writing 5 to /proc/self/clear_refs and reading /proc/self/status before the clock starts, "
         "VmHWM read after it stops) and one StepRecord; the FLOP counter, the live-bytes tracker and "
         "torch.profiler's memory events (the allocator-level peak) run only on the untimed measuring step "
         "(and, for torch.compile'd steps, an untimed allocator step), which are excluded")


def _load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return math.nan
    i = (len(s) - 1) * q
    lo, hi = int(math.floor(i)), int(math.ceil(i))
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def _bootstrap_ratio(num: list[float], den: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """5th and 95th percentiles of median(num*) / median(den*) over resamples."""
    rng = random.Random(seed)
    rs = []
    for _ in range(n):
        a = [num[rng.randrange(len(num))] for _ in num]
        b = [den[rng.randrange(len(den))] for _ in den]
        rs.append(statistics.median(a) / statistics.median(b))
    return _pct(rs, 0.05), _pct(rs, 0.95)


# -- the two loops ------------------------------------------------------------------------------
class Pair:
    """One built step, its data stream and the loops run on it."""

    def __init__(self, arch: str, mode: str, seed: int, gon_inner_steps: int) -> None:
        import torch

        from gonprof.arch import get_arch
        from gonprof.modes.build import build_step

        self.arch, self.mode = arch, mode
        self.hparams: dict = {}
        if mode == "gon":
            self.hparams = {"inner_steps": int(gon_inner_steps), "early_stop_eps": 0.0}
        self.step = build_step(mode, arch, seed=seed, **self.hparams)
        self.batch_size = int(self.step.hparams.get("batch_size", 64))
        self.dev = torch.device(self.step.device)
        shape = tuple(get_arch(arch).input_shape)
        try:
            from gonprof.api import _profile_data  # what `gonprof profile` feeds the step

            data = _profile_data(None, shape)
        except ImportError:  # pragma: no cover
            from gonprof.data import load_dataset, synthetic

            data = load_dataset()
            if tuple(data.shape) != shape:
                data = synthetic(2048, shape)
        self.data_name = data.name
        self.batches = data.batches(self.batch_size, seed=seed)
        self.expect_iters = int(gon_inner_steps) if mode == "gon" else None
        self._torch = torch

    def _check(self, losses: dict) -> None:
        torch = self._torch
        bad = [k for k, v in losses.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise RuntimeError(f"{self.arch}/{self.mode}: non-finite {', '.join(bad)}")
        if self.expect_iters is not None and self.step.last_iters != self.expect_iters:
            raise RuntimeError(f"gon ran {self.step.last_iters} inner iterations, expected {self.expect_iters} "
                               f"(early stop not disabled?)")

    def unprofiled(self, untimed: int, k: int) -> list[float]:
        """``untimed`` + ``k`` steps without the Profiler; the times of the last ``k``."""
        from gonprof.modes.base import no_phase

        if untimed < 1:
            raise ValueError("untimed must be >= 1 (it mirrors the Profiler's measuring step)")
        clock, step, dev, batches = time.perf_counter, self.step, self.dev, self.batches
        marks = []
        for _ in range(untimed + k):
            real, labels = next(batches)
            losses = step.step(real.to(dev, non_blocking=True), labels.to(dev), phase=no_phase)
            marks.append(clock())  # the step boundary (where prof.step() would be)
            self._check(losses)
        marks = marks[untimed - 1:]
        return [b - a for a, b in zip(marks, marks[1:])]

    def profiled(self, untimed: int, k: int):
        """One Profiler block as profile_step runs it; (profiler's times, outside times, record)."""
        from gonprof.profiler import Profiler

        clock, step, dev, batches = time.perf_counter, self.step, self.dev, self.batches
        prof = Profiler(models=step.models, optimizers=step.optimizers, warmup=untimed, active=k, device=dev,
                        arch=self.arch, mode=self.mode, batch_size=self.batch_size)
        marks = []
        with prof:
            while not prof.done:
                real, labels = next(batches)
                losses = step.step(real.to(dev, non_blocking=True), labels.to(dev), phase=prof.phase)
                prof.step()
                marks.append(clock())  # after prof.step() returned: includes its bookkeeping
                self._check(losses)
        rec = prof.report()
        if rec.status != "ok" or rec.timed_steps != k:
            raise RuntimeError(f"{self.arch}/{self.mode}: profiler status {rec.status} {rec.message}")
        outside = [b - a for a, b in zip(marks[prof.untimed_steps - 1:], marks[prof.untimed_steps:])]
        return [s.step_time_s for s in rec.steps], outside, rec


def bookkeeping_us(n: int = 2000, repeats: int = 5) -> dict:
    """Per-step cost of the Profiler around an empty step with two phases (median of repeats), in us."""
    import torch

    from gonprof.modes.base import no_phase
    from gonprof.profiler import Profiler

    clock = time.perf_counter
    plain, prof_t, inside = [], [], []
    for _ in range(repeats):
        t = clock()
        for _ in range(n):
            with no_phase("sample"):
                pass
            with no_phase("update"):
                pass
        plain.append((clock() - t) / n)
        prof = Profiler(models={"empty": torch.nn.Identity()}, warmup=0, active=n, measure=False, device="cpu")
        with prof:
            t = clock()
            while not prof.done:
                with prof.phase("sample"):
                    pass
                with prof.phase("update"):
                    pass
                prof.step()
            prof_t.append((clock() - t) / n)
        inside.append(statistics.median(s.step_time_s for s in prof.report().steps))
        method = prof.report().rss.method if prof.report().rss else "none"
    return {"loop_us": (statistics.median(prof_t) - statistics.median(plain)) * 1e6,
            "inside_clock_us": statistics.median(inside) * 1e6, "rss_method": method, "steps": n}


def load_tracker(path: str):
    """The ``LiveBytesTracker`` class of a memory.py at ``path`` (e.g. an earlier version, from ``git show``),
    wrapped to take the arguments the Profiler passes today (an earlier one may not take ``state``)."""
    import importlib.util
    import inspect

    spec = importlib.util.spec_from_file_location("gonprof_baseline_memory", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline-tracker: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = module.LiveBytesTracker
    takes = set(inspect.signature(cls).parameters)

    def make(models=None, optimizers=None, round_bytes=None, **kwargs):
        return cls(models, optimizers, round_bytes, **{k: v for k, v in kwargs.items() if k in takes})

    return make


def tracker_cost(pair: Pair, rounds: int, baseline) -> dict:
    """The measuring step's time (the Profiler's own figure: FLOP counter, live-bytes tracker and allocator
    events together) with this tree's tracker and with ``baseline``'s, in alternating order (ABBA), one
    profiled block of one measuring step and one timed step per side and round."""
    import gonprof.measure.memory as memory

    current = memory.LiveBytesTracker
    new, old = [], []
    pair.profiled(1, 1)  # first-call costs, discarded
    for r in range(rounds):
        for side in (("new", "old") if r % 2 == 0 else ("old", "new")):
            memory.LiveBytesTracker = current if side == "new" else baseline
            try:
                _, _, rec = pair.profiled(1, 1)
            finally:
                memory.LiveBytesTracker = current
            (new if side == "new" else old).append(rec.measuring_step_time_s)
    ratio = statistics.median(new) / statistics.median(old)
    per_round = [a / b for a, b in zip(new, old)]  # adjacent blocks: the least affected by slow drift
    return {"ratio_per_round": per_round, "ratio_per_round_median": statistics.median(per_round),
            "arch": pair.arch, "mode": pair.mode, "rounds": rounds, "measuring_new_s": new, "measuring_old_s": old,
            "median_new_s": statistics.median(new), "median_old_s": statistics.median(old), "ratio": ratio,
            "target": TRACKER_TARGET, "met": ratio <= TRACKER_TARGET,
            "ratio_bootstrap_90": list(_bootstrap_ratio(new, old))}


def run_pair(pair: Pair, rounds: int, k: int, warmup_steps: int) -> dict:
    untimed = 1
    load_before = _load()
    t_pair = time.perf_counter()
    # warm-up, discarded: both sides' first-call costs
    if warmup_steps > 0:
        pair.unprofiled(1, warmup_steps - 1)
    _, _, rec0 = pair.profiled(untimed, 1)
    plain, prof_clock, prof_outside, per_round = [], [], [], []
    measuring = []
    for r in range(rounds):
        order = ("u", "p") if r % 2 == 0 else ("p", "u")
        got: dict = {}
        for side in order:
            if side == "u":
                got["u"] = pair.unprofiled(untimed, k)
            else:
                inside, outside, rec = pair.profiled(untimed, k)
                got["p"], got["o"] = inside, outside
                measuring.append(rec.measuring_step_time_s)
        plain += got["u"]
        prof_clock += got["p"]
        prof_outside += got["o"]
        per_round.append(statistics.median(got["p"]) / statistics.median(got["u"]))
    mu, mp, mo = statistics.median(plain), statistics.median(prof_clock), statistics.median(prof_outside)
    lo, hi = _bootstrap_ratio(prof_clock, plain)
    rss = rec0.rss.method if rec0.rss else "none"
    return {
        "arch": pair.arch, "mode": pair.mode, "batch_size": pair.batch_size, "data": pair.data_name,
        "hparams_overrides": pair.hparams, "rounds": rounds, "steps_per_round": k,
        "untimed_steps_per_block": untimed, "n_unprofiled": len(plain), "n_profiled": len(prof_clock),
        "median_unprofiled_s": mu, "median_profiled_s": mp, "median_profiled_outside_s": mo,
        "p10_unprofiled_s": _pct(plain, 0.1), "p90_unprofiled_s": _pct(plain, 0.9),
        "p10_profiled_s": _pct(prof_clock, 0.1), "p90_profiled_s": _pct(prof_clock, 0.9),
        "ratio": mp / mu, "ratio_loop": mo / mu, "ratio_bootstrap_90": [lo, hi],
        "ratio_per_round": per_round, "target": TARGET, "met": mp / mu <= TARGET,
        "rss_method": rss, "measuring_step_s_median": statistics.median(measuring) if measuring else None,
        "load_average_before": load_before, "load_average_after": _load(),
        "wall_s": time.perf_counter() - t_pair,
        "unprofiled_s": plain, "profiled_s": prof_clock, "profiled_outside_s": prof_outside,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=DEFAULT_PAIRS, help=f"comma-separated arch:mode (default {DEFAULT_PAIRS})")
    ap.add_argument("--rounds", type=int, default=12, help="interleaved rounds (default 12)")
    ap.add_argument("--steps-per-round", type=int, default=2,
                    help="timed steps per block and side (default 2: short blocks share the noise best)")
    ap.add_argument("--warmup-steps", type=int, default=2,
                    help="unprofiled warm-up steps before the discarded profiled warm-up block (default 2)")
    ap.add_argument("--gon-inner-steps", type=int, default=20,
                    help="fixed GON inner iterations per step, early stop off (default 20)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads; 0 = torch's default (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="write the figures (and every step time) to PATH")
    ap.add_argument("--baseline-tracker", metavar="MEMORY_PY",
                    help="also time the measuring step with the LiveBytesTracker of this file (an earlier "
                         "gonprof/measure/memory.py, e.g. from `git show REV:gonprof/measure/memory.py`) against "
                         "this tree's, side by side, --rounds rounds")
    ap.add_argument("--tracker-only", action="store_true",
                    help="with --baseline-tracker: only that comparison, not the timed-step overhead")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.steps_per_round < 1:
        ap.error("--rounds and --steps-per-round must be >= 1")
    pairs = []
    for item in args.pairs.split(","):
        arch, sep, mode = item.strip().partition(":")
        if not sep or not arch or not mode:
            ap.error(f"--pairs: expected arch:mode, got {item!r}")
        pairs.append((arch, mode))

    t_start = time.perf_counter()
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"gonprof Profiler overhead: torch {torch.__version__}, {threads} torch thread(s), "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}, load average {_load()} (1/5/15 min)")
    print(f"schedule: after warm-up ({args.warmup_steps} unprofiled steps + 1 profiled block, discarded), "
          f"{args.rounds} rounds x {args.steps_per_round} timed steps per side, unprofiled and profiled blocks "
          f"alternating (ABBA); each block starts with 1 untimed step (the profiled one is the measuring step)")
    print(CARRY + ".")
    book: dict = {}
    if not (args.tracker_only and args.baseline_tracker):
        book = bookkeeping_us()
        print(f"profiler bookkeeping per timed step, empty step with 2 phases ({book['steps']} steps): "
              f"{book['loop_us']:.1f} us per loop iteration in all, {book['inside_clock_us']:.1f} us of it inside "
              f"the profiler's own clock; RSS method {book['rss_method']}")

    results, tracker = [], []
    baseline = load_tracker(args.baseline_tracker) if args.baseline_tracker else None
    for arch, mode in pairs:
        pair = Pair(arch, mode, args.seed, args.gon_inner_steps)
        if baseline is not None:
            tc = tracker_cost(pair, args.rounds, baseline)
            tracker.append(tc)
            lo, hi = tc["ratio_bootstrap_90"]
            print(f"\n{arch} under {mode}: measuring step with this tracker {tc['median_new_s'] * 1e3:.1f} ms, with "
                  f"{args.baseline_tracker}'s {tc['median_old_s'] * 1e3:.1f} ms (medians of {args.rounds} each, "
                  f"alternating): ratio {tc['ratio']:.3f} (target <= {TRACKER_TARGET}: "
                  f"{'met' if tc['met'] else 'NOT met'}; bootstrap 90% interval {lo:.3f}-{hi:.3f}; median of the "
                  f"per-round ratios {tc['ratio_per_round_median']:.3f})")
            if args.tracker_only:
                continue
        res = run_pair(pair, args.rounds, args.steps_per_round, args.warmup_steps)
        res["bookkeeping_fraction_of_step"] = book["loop_us"] * 1e-6 / res["median_unprofiled_s"]
        results.append(res)
        what = f"batch {res['batch_size']}, data {res['data']}"
        if mode == "gon":
            what += (f", inner_steps={args.gon_inner_steps} with early stop off (early_stop_eps=0; checked: "
                     f"every step ran exactly {args.gon_inner_steps} inner iterations, both sides)")
        lo, hi = res["ratio_bootstrap_90"]
        pr = res["ratio_per_round"]
        verdict = "met" if res["met"] else "NOT met"
        print()
        print(f"{arch} under {mode} ({what})")
        print(f"  median unprofiled step: {res['median_unprofiled_s'] * 1e3:9.2f} ms  "
              f"(p10 {res['p10_unprofiled_s'] * 1e3:.2f}, p90 {res['p90_unprofiled_s'] * 1e3:.2f}; "
              f"n = {res['n_unprofiled']} steps)")
        print(f"  median profiled step:   {res['median_profiled_s'] * 1e3:9.2f} ms  "
              f"(p10 {res['p10_profiled_s'] * 1e3:.2f}, p90 {res['p90_profiled_s'] * 1e3:.2f}; "
              f"n = {res['n_profiled']} timed steps, the Profiler's own clock)")
        print(f"  ratio profiled / unprofiled: {res['ratio']:.3f}  (target <= {TARGET}: {verdict}; bootstrap 90% "
              f"interval {lo:.3f}-{hi:.3f}; per round min/median/max {min(pr):.3f}/{statistics.median(pr):.3f}/"
              f"{max(pr):.3f})")
        print(f"  loop ratio, timed from outside incl. the bookkeeping around the clock: {res['ratio_loop']:.3f}; "
              f"bookkeeping {book['loop_us']:.1f} us = {res['bookkeeping_fraction_of_step']:.5%} of the step")
        print(f"  load average before / after: {res['load_average_before']} | {res['load_average_after']}; "
              f"torch threads {threads}; RSS method {res['rss_method']}; measuring step (excluded) median "
              f"{res['measuring_step_s_median'] * 1e3:.1f} ms; {res['wall_s']:.0f} s for this pair")
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")

    if args.json:
        doc = {"benchmark": "profiler_overhead", "target": TARGET, "torch": torch.__version__,
               "torch_threads": threads, "cpus": os.cpu_count(), "python": platform.python_version(),
               "argv": sys.argv[1:] if argv is None else list(argv), "carry": CARRY, "bookkeeping": book,
               "pairs": results, "tracker_cost": tracker, "total_s": total}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
