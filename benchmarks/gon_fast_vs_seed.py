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

* the machine's ceiling, the best of three float32 rates: the 2048-cube matmul,
  a large oneDNN convolution (batch 32, 128 -> 128 channels, 28 x 28, 3 x 3,
  channels-last) and
  the FMA peak computed from the CPU's clock and its float32 FLOPs per cycle per
  core (vector width x FMA pipes x 2, from /proc/cpuinfo's vendor, family,
  model and flags; both can be given with --clock-ghz and --flops-per-cycle),
  each as measured or computed in this run, and the fast path's fraction of it;
* GON's whole training step on ``--chains-arch`` (default gon-mnist-mlp, where
  persistent chains are the default): sample-iterations per second of
  ``init=buffer`` (the default: 20 iterations from the replay buffer) beside
  ``init=noise`` (fresh noise, the early-stopped loop of ``--preset noise``)
  and the seed procedure on the same discriminator, with the step's achieved
  GFLOP/s against the ceiling.

Early stopping is switched off (the threshold is 0) for the inner-loop rates so
that every path runs exactly the iterations timed; the whole steps run as
configured.  Targets: ratio >= 15x, >= 70% of the matmul rate.
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


def conv_gflops(reps: int = 3, batch: int = 32, channels: int = 128, size: int = 28) -> float:
    """float32 GFLOP/s of ``reps`` back-to-back 3 x 3 convolutions in channels-last layout (oneDNN's own
    kernels on x86, the layout the fast path runs in), after one warm-up:
    FLOPs = 2 x batch x channels_out x size^2 x channels_in x 9."""
    import torch.nn.functional as F

    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3).contiguous(memory_format=torch.channels_last)
    F.conv2d(x, w, padding=1)
    t = time.perf_counter()
    for _ in range(reps):
        F.conv2d(x, w, padding=1)
    return 2 * batch * channels * size * size * channels * 9 * reps / (time.perf_counter() - t) / 1e9


def cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def flops_per_cycle(info: dict[str, str]) -> tuple[int | None, str]:
    """float32 FLOPs one core can retire per cycle (FMA pipes x vector lanes x 2), and why.

    AMD by family and model: Zen and Zen+ have two 128-bit FMA pipes (16); Zen 2, 3 and 4 two 256-bit
    pipes (32; Zen 4 runs AVX-512 as two 256-bit halves); Zen 5 two 512-bit pipes (64).  Elsewhere from the
    flags: AVX-512 with two FMA units (64; some Xeons have one), AVX2 with FMA, two units (32)."""
    flags = set(info.get("flags", "").split())
    vendor = info.get("vendor_id", "")
    try:
        family, model = int(info.get("cpu family", "")), int(info.get("model", ""))
    except ValueError:
        family = model = -1
    if vendor == "AuthenticAMD" and family == 0x17:
        if model >= 0x30:
            return 32, "Zen 2 (AMD family 0x17, model >= 0x30): 2 FMA pipes x 8 float32 lanes x 2"
        return 16, "Zen / Zen+ (AMD family 0x17): 2 FMA pipes x 4 float32 lanes x 2"
    if vendor == "AuthenticAMD" and family == 0x19:
        zen4 = 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF
        name = "Zen 4" if zen4 else "Zen 3"
        return 32, (f"{name} (AMD family 0x19, model {model:#04x}): 2 FMA pipes x 8 float32 lanes x 2"
                    + ("; AVX-512 runs as two 256-bit halves" if zen4 else ""))
    if vendor == "AuthenticAMD" and family == 0x1A:
        return 64, "Zen 5 (AMD family 0x1a): 2 FMA pipes x 16 float32 lanes x 2"
    if "avx512f" in flags:
        return 64, "AVX-512 flag: 2 FMA units x 16 float32 lanes x 2 (assumed; some CPUs have one unit)"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 and FMA flags: 2 FMA units x 8 float32 lanes x 2 (assumed)"
    return None, "unknown CPU: pass --flops-per-cycle"


def fma_peak(threads: int, clock_ghz: float | None = None, per_cycle: int | None = None,
             info: dict[str, str] | None = None) -> tuple[float | None, str]:
    """The float32 FMA peak of ``threads`` cores in GFLOP/s (clock x FLOPs per cycle x cores), and how it
    was found.  The clock is /proc/cpuinfo's ``cpu MHz`` unless given: under a hypervisor that is the nominal
    clock the host reports, not a boost clock, so the peak may be exceeded by a core that boosts."""
    info = cpuinfo() if info is None else info
    how = []
    if per_cycle is None:
        per_cycle, why = flops_per_cycle(info)
        how.append(why)
    else:
        how.append(f"{per_cycle} FLOPs per cycle (given)")
    if clock_ghz is None:
        try:
            clock_ghz = float(info["cpu MHz"]) / 1000
            how.append(f"clock {clock_ghz:.3f} GHz (/proc/cpuinfo 'cpu MHz')")
        except (KeyError, ValueError):
            return None, "; ".join(how + ["no clock in /proc/cpuinfo: pass --clock-ghz"])
    else:
        how.append(f"clock {clock_ghz:.3f} GHz (given)")
    if per_cycle is None:
        return None, "; ".join(how)
    return clock_ghz * per_cycle * threads, "; ".join(how + [f"{threads} core(s)"])


def step_rate(step, real: torch.Tensor, steps: int) -> tuple[float, float, float]:
    """(sample-iterations per second, mean inner iterations per step, median ms per step) of ``steps``
    whole GON training steps after one warm-up; sample-iterations = chains x inner iterations."""
    step.step(real)
    times, iters = [], []
    for _ in range(steps):
        t = time.perf_counter()
        losses = step.step(real)
        times.append(time.perf_counter() - t)
        iters.append(float(losses["inner_iters"]))
    k = step.chains_per_step(real.shape[0])
    return k * sum(iters) / sum(times), statistics.mean(iters), 1000 * statistics.median(times)


def step_flops(step, real: torch.Tensor) -> tuple[float, float]:
    """(FLOPs, inner iterations) of one whole training step, counted."""
    from gonprof.measure.flops import FlopCounter

    with FlopCounter({"D": step.models["D"]}) as fc:
        losses = step.step(real)
    return float(fc.total_flops), float(losses["inner_iters"])


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
    ap.add_argument("--conv-size", type=int, default=28, help="the reference convolution's image side")
    ap.add_argument("--clock-ghz", type=float, default=None, help="the clock for the FMA peak (default: cpuinfo)")
    ap.add_argument("--flops-per-cycle", type=int, default=None,
                    help="float32 FLOPs per cycle per core for the FMA peak (default: from the CPU model)")
    ap.add_argument("--chains-arch", default="gon-mnist-mlp", help="the discriminator of the whole-step rates")
    ap.add_argument("--chain-steps", type=int, default=5, help="whole steps timed per init (after a warm-up)")
    ap.add_argument("--noise-iters", type=int, default=1000, help="init=noise: the inner loop's cap")
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
    rows: dict[str, list[float]] = {"matmul": [], "conv": [], "seed": [], "fast": [], "kept": [], "ratio": [],
                                    "fraction": []}
    for _ in range(args.rounds):  # one of each per round, so slow spells of a shared machine hit all alike
        mm = matmul_gflops(args.matmul_n)
        rows["conv"].append(conv_gflops(size=args.conv_size))
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

    peak, how = fma_peak(torch.get_num_threads(), args.clock_ghz, args.flops_per_cycle)
    refs = {"float32 matmul": med["matmul"], "oneDNN convolution": med["conv"]}
    if peak is not None:
        refs["FMA peak"] = peak
    best = max(refs, key=lambda k: refs[k])
    achieved = med["fast"] * flops / 1e9
    print("the machine's ceiling (float32, GFLOP/s, this run):")
    print(f"  matmul {args.matmul_n}^3: {med['matmul']:.1f} measured")
    print(f"  convolution 32x128x{args.conv_size}x{args.conv_size}, 3x3, 128 out, channels-last: "
          f"{med['conv']:.1f} measured")
    print(f"  FMA peak: {f'{peak:.1f}' if peak is not None else 'unknown'} computed ({how})")
    per_cycle = args.flops_per_cycle or flops_per_cycle(cpuinfo())[0]
    if peak is not None and per_cycle and max(med["matmul"], med["conv"]) > peak:
        implied = max(med["matmul"], med["conv"]) / (per_cycle * torch.get_num_threads())
        print(f"  a measured rate beats the computed peak: the core runs at {implied:.2f} GHz or more "
              "(a boost clock the cpuinfo clock does not show; give it with --clock-ghz)")
    print(f"ceiling = the best of them, {best}: {refs[best]:.1f} GFLOP/s; fast path {achieved:.1f} GFLOP/s = "
          f"{achieved / refs[best]:.1%} of it")

    print(f"GON's whole training step on {args.chains_arch} (batch {args.batch}, the mode's own early stop; "
          f"{args.chain_steps} steps after a warm-up):")
    chains = {
        "init=buffer (default)": build_step("gon", args.chains_arch, seed=0),
        "init=noise (--preset noise)": build_step("gon", args.chains_arch, seed=0, preset="noise",
                                                  inner_steps=args.noise_iters),
    }
    seed_step = build_step("gon", args.chains_arch, seed=0, early_stop_eps=0.0, inner_opt="adam")
    real = torch.rand(args.batch, *seed_step.input_shape) * 2 - 1  # the rates do not depend on the pixels
    seed_chain = rate(seed_step, seed_step.noise(1), args.seed_iters, batched=False)
    print(f"  seed procedure (batch 1, inner loop only):   {seed_chain:10.1f} sample-iterations/s")
    for name, st in chains.items():
        f_step, f_iters = step_flops(st, real)
        r, mean_iters, ms = step_rate(st, real, args.chain_steps)
        gflops = f_step / (ms / 1000) / 1e9
        print(f"  {name:<28s} {r:10.1f} sample-iterations/s ({mean_iters:.1f} inner iterations a step, "
              f"{ms:,.1f} ms a step; {r / seed_chain:.1f}x the seed; {gflops:.1f} GFLOP/s = "
              f"{gflops / refs[best]:.1%} of the ceiling)")


if __name__ == "__main__":
    main()
