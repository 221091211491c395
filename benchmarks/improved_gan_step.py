"""Improved-GAN's training step on improved-gan-mlp: one pass through D for the D step against one per batch.

    python benchmarks/improved_gan_step.py [--threads 1] [--steps 20] [--rounds 5] [--labels 100]

The D step scores three batches of 100 (real, G(z), labelled examples).  The step
runs them through D in one forward pass of 300 rows (``ImprovedGANStep.one_pass``,
the default for a discriminator without batch norm) rather than three passes of 100,
so each weight-normalised layer normalises its weight once and multiplies one larger
matrix, and the backward runs once through one graph.  Both paths run in this one
process on the same models, interleaved: each round times ``--steps`` whole training
steps (D step and G step, optimiser updates included) of each path, so a slow spell of
a shared machine hits both alike.  Prints the median milliseconds per step of each
path over the rounds and their ratio (three passes / one pass), and, from
torch.profiler on a few steps of the one-pass path, where a step's CPU time goes
(the top ops by self CPU time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch  # noqa: E402


def make_step(labels: int):
    from gonprof.data import load_split
    from gonprof.request import StepSpec
    from gonprof.train import TrainConfig, default_make_step

    spec = StepSpec(mode="improved-gan", arch="improved-gan-mlp", hparams={"labels": labels}, seed=0)
    data, _ = load_split(spec.data, spec.selection())
    step = default_make_step(data.shape)(TrainConfig(step=spec, steps=1))
    return step, data


def ms_per_step(step, batches, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        step.step(*next(batches))
    return (time.perf_counter() - t) / steps * 1e3


def top_ops(step, batches, steps: int = 3, top: int = 8) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step.step(*next(batches))
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:top]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="steps per path per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--labels", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    step, data = make_step(args.labels)
    batches = data.batches(int(step.hparams["batch_size"]), 0, 0)
    for one in (True, False):  # warm-up, and the labelled set collected from the first batches
        step.one_pass = one
        ms_per_step(step, batches, 3)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for one in (False, True):
            step.one_pass = one
            times[one].append(ms_per_step(step, batches, args.steps))
    three, one = statistics.median(times[False]), statistics.median(times[True])
    print(f"improved-gan / improved-gan-mlp, batch {step.hparams['batch_size']}, labels {args.labels}, "
          f"{args.threads} thread(s), {args.rounds} rounds of {args.steps} steps, load {os.getloadavg()[0]:.2f}")
    print(f"three passes through D (one per batch): {three:8.1f} ms per step (median)")
    print(f"one pass through D (300 rows):          {one:8.1f} ms per step (median)")
    print(f"speed-up: {three / one:.2f}x; a 180,000-step row at {one * 180:,.0f} s against {three * 180:,.0f} s")
    step.one_pass = True
    print("one-pass step, top ops by self CPU time (torch.profiler):")
    for name, share in top_ops(step, batches):
        print(f"  {share:6.1%}  {name}")


if __name__ == "__main__":
    main()
