"""GON's inner loop on gon-mnist-conv: the fast path against the seed procedure, in one run.

    python benchmarks/gon_fast_vs_seed.py [--batch 64] [--threads 2] [--seed-iters 40] [--fast-iters 8]
                                          [--rounds 5]

Prints, measured in this one process, as medians over interleaved rounds (each
round times every path once, so a slow spell of a shared machine hits all alike):

* sample-iterations per second of the seed procedure (GON_MNIST's gen(): batch 1,
  ``loss.backward()`` with D's parameter gradients on, torch Adam + CosineAnnealingLR
  on the input) and of the fast path (batch 64, gradients w.r.t. the input only,
  D frozen, in-place Adam on the input, channels_last, exact-identity activations
  skipped), and their ratio; also the fast path with the identity activations
  kept, to show what skipping them buys;
* FLOPs of one fast inner iteration per sample (forward + input-gradient backward,
  counted by gonprof.measure.flops over torch's formulas, FLOPs = 2 x MACs), the
  fast path's achieved GFLOP/s, the machine's own float32 matmul GFLOP/s
  (2048 x 2048 x 2048, same threads) and the fraction;
* where the time goes: the ops of one fast iteration by self CPU time
  (torch.profiler) beside their share of the FLOPs, which says why the fraction
  stops where it stops (ops that take time and do no counted arithmetic, or do
  their arithmetic slowly).

Early stopping is switched off (the threshold is 0) so that every path runs
exactly the iterations timed.  Targets: ratio >= 15x, >= 70% of the matmul rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep torch.profiler's start / stop lines off the output

import torch  # noqa: E402


def matmul_gflops(n: int = 2048, reps: int = 3) -> float:
    """float32 matmul GFLOP/s of ``reps`` back-to-back n x n x n products (after one warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def count_flops_per_sample(step, batch: int) -> tuple[int, str]:
    """FLOPs of one fast inner iteration divided by the batch size."""
    from gonprof.measure.flops import FlopCounter

    x0 = step.noise(batch)
    inner = step.hparams["inner_steps"]
    step.hparams["inner_steps"] = 1
    try:
        with FlopCounter({"D": step.models["D"]}) as fc:
            step.optimise(x0, batched=True)
    finally:
        step.hparams["inner_steps"] = inner
    return int(fc.total_flops) // batch, "gonprof.measure.flops.FlopCounter"


def rate(step, x0: torch.Tensor, iters: int, batched: bool) -> float:
    """Sample-iterations per second of one run of ``iters`` inner iterations from ``x0``."""
    step.hparams["inner_steps"] = iters
    t = time.perf_counter()
    step.last_iters = 0
    step.optimise(x0, batched=batched)
    dt = time.perf_counter() - t
    if step.last_iters != iters:
        raise SystemExit("early stop fired during the benchmark")
    return x0.shape[0] * iters / dt


def breakdown(step, x0: torch.Tensor, top: int = 6) -> list[tuple[str, float, float]]:
    """Where one fast inner iteration spends its time: (op, share of self CPU time, share of FLOPs), the
    ``top`` ops by time, from torch.profiler and gonprof's FLOP counter on the same iteration."""
    from torch.profiler import ProfilerActivity, profile

    from gonprof.measure.flops import FlopCounter

    step.hparams["inner_steps"] = 1
    step.optimise(x0, batched=True)  # warm
    with FlopCounter({"D": step.models["D"]}) as fc:
        step.optimise(x0, batched=True)
    flops = fc.figures().flops_by_operator
    total_flops = sum(flops.values()) or 1
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step.optimise(x0, batched=True)
    # the profiler sees the kernels (mkldnn_convolution) where the counter sees the op with the formula
    family = {"mkldnn_convolution": "convolution", "_convolution": "convolution", "conv2d": "convolution"}
    time_by: dict[str, float] = {}
    for e in prof.key_averages():
        if e.key.startswith("aten::"):
            name = e.key.split("::", 1)[1]
            name = family.get(name, name)
            time_by[name] = time_by.get(name, 0.0) + e.self_cpu_time_total
    total_t = sum(time_by.values()) or 1.0
    rows = sorted(time_by.items(), key=lambda kv: -kv[1])[:top]
    return [(name, t / total_t, flops.get(f"aten.{name}", 0) / total_flops) for name, t in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed-iters", type=int, default=40)
    ap.add_argument("--fast-iters", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    ap.add_argument("--matmul-n", type=int, default=2048)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from gonprof.modes.build import build_step

    # the seed's optimiser on the input (Adam) on both paths, so that they compute the same maths
    fast = build_step("gon", "gon-mnist-conv", seed=0, early_stop_eps=0.0, inner_opt="adam")
    kept = build_step("gon", "gon-mnist-conv", seed=0, early_stop_eps=0.0, inner_opt="adam", skip_identity=False)
    torch.manual_seed(0)
    flops, how = count_flops_per_sample(fast, 2)

    x1, xb = fast.noise(1), fast.noise(args.batch)
    rate(fast, x1, 2, batched=False)  # warm-up: the seed path (it runs on D itself)
    rate(fast, xb, 2, batched=True)
    rate(kept, xb, 2, batched=True)
    rows: dict[str, list[float]] = {"matmul": [], "seed": [], "fast": [], "kept": [], "ratio": [], "fraction": []}
    for _ in range(args.rounds):  # one of each per round, so slow spells of a shared machine hit all alike
        mm = matmul_gflops(args.matmul_n)
        seed_rate = rate(fast, x1, args.seed_iters, batched=False)
        fast_rate = rate(fast, xb, args.fast_iters, batched=True)
        kept_rate = rate(kept, xb, args.fast_iters, batched=True)
        for key, value in (("matmul", mm), ("seed", seed_rate), ("fast", fast_rate), ("kept", kept_rate),
                           ("ratio", fast_rate / seed_rate), ("fraction", fast_rate * flops / 1e9 / mm)):
            rows[key].append(value)
    med = {k: statistics.median(v) for k, v in rows.items()}

    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"gon-mnist-conv inner loop, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {load}; medians of {args.rounds} interleaved rounds")
    print(f"seed procedure (batch 1, param grads on):      {med['seed']:8.1f} sample-iterations/s "
          f"({1000 / med['seed']:.1f} ms per iteration)")
    print(f"fast path (batch {args.batch}, input-only grads):      {med['fast']:8.1f} sample-iterations/s")
    print(f"  same, identity activations kept:           {med['kept']:8.1f} sample-iterations/s "
          f"(skipping them: {statistics.median(f / k for f, k in zip(rows['fast'], rows['kept'])):.2f}x)")
    print(f"ratio fast / seed: {med['ratio']:.1f}x (per round {min(rows['ratio']):.1f}-{max(rows['ratio']):.1f}; "
          f"target >= 15x)")
    print(f"FLOPs per fast inner iteration per sample: {flops / 1e6:.1f} MFLOP (FLOPs = 2 x MACs; {how})")
    print(f"fast path achieved: {med['fast'] * flops / 1e9:.1f} GFLOP/s; float32 matmul {args.matmul_n}^3: "
          f"{med['matmul']:.1f} GFLOP/s; fraction {med['fraction']:.1%} (per round "
          f"{min(rows['fraction']):.1%}-{max(rows['fraction']):.1%}; target >= 70%)")
    print("where one fast iteration's time goes (self CPU time by op, torch.profiler; FLOPs by op, gonprof):")
    for name, t_share, f_share in breakdown(fast, xb):
        print(f"  {name:<40s} {t_share:6.1%} of the time  {f_share:6.1%} of the FLOPs")


if __name__ == "__main__":
    main()
