"""Records built by hand (no step is run) for the memory views: a profile whose live memory carries a timeline
and per-module bytes at the peak, an older profile without them, and compare rows.

The profile's figures, in MiB (2**20 bytes), so that every view can be checked by hand:

    point  op  time (s)  param  grad  optim  act  external  total
      0     0   0.000      4     0     0     0      1        5
      1     2   0.002      4     0     0     3      1        8
      2     4   0.004      4     0     0     6      1       11   <- the peak (phase forward)
      3     5   0.005      4     1     0     4      1       10
      4     7   0.007      4     1     2     1      1        9
      5     9   0.009      4     1     2     0      0        7

buffer and replay stay 0.  Phases: forward ops 0-4, backward 5-7, optimizer 8-9 (10 ops in all).  At the peak
D.block holds 3 MiB of parameters and 4 MiB of activations, D.head 1 and 2, the batch (outside every module)
1 MiB of external bytes: 11 MiB, the peak.
"""

from __future__ import annotations

import dataclasses

from gonprof.records import (
    Environment,
    FlopFigures,
    LiveMemory,
    MemoryTimeline,
    ModelParams,
    ModuleMemory,
    PersistentBytes,
    PhaseSpan,
    ProfileRecord,
    QualityRecord,
    RunRecord,
    TimingStats,
)

MIB = 2**20

#: category -> MiB at each of the six points (the table above)
SERIES_MIB = {
    "param": [4, 4, 4, 4, 4, 4],
    "buffer": [0, 0, 0, 0, 0, 0],
    "grad": [0, 0, 0, 1, 1, 1],
    "optim": [0, 0, 0, 0, 2, 2],
    "replay": [0, 0, 0, 0, 0, 0],
    "act": [0, 3, 6, 4, 1, 0],
    "external": [1, 1, 1, 1, 1, 0],
}


def timeline() -> MemoryTimeline:
    return MemoryTimeline(
        op_index=[0, 2, 4, 5, 7, 9],
        time_s=[0.0, 0.002, 0.004, 0.005, 0.007, 0.009],
        bytes_by_category={c: [v * MIB for v in vs] for c, vs in SERIES_MIB.items()},
        phases=[PhaseSpan("forward", 0, 4), PhaseSpan("backward", 5, 7), PhaseSpan("optimizer", 8, 9)],
        peak_point=2,
        ops_total=10,
        max_points=2000,
    )


def modules() -> list[ModuleMemory]:
    return [
        ModuleMemory("D.block", "forward", "forward", "act", 4 * MIB),
        ModuleMemory("D.block", "outside", "", "param", 3 * MIB),
        ModuleMemory("D.head", "forward", "forward", "act", 2 * MIB),
        ModuleMemory("D.head", "outside", "", "param", 1 * MIB),
        ModuleMemory("", "outside", "forward", "external", 1 * MIB),
    ]


def live_memory(with_views: bool = True) -> LiveMemory:
    return LiveMemory(
        peak_live_bytes=11 * MIB,
        peak_live_param_bytes=4 * MIB,
        peak_live_buffer_bytes=0,
        peak_live_grad_bytes=0,
        peak_live_optimizer_state_bytes=0,
        peak_live_activation_bytes=6 * MIB,
        start_live_bytes=5 * MIB,
        end_live_bytes=7 * MIB,
        allocated_bytes=12 * MIB,
        peak_live_bytes_by_phase={"forward": 11 * MIB, "backward": 10 * MIB, "optimizer": 9 * MIB},
        peak_live_external_bytes=1 * MIB,
        peak_modules=modules() if with_views else [],
        timeline=timeline() if with_views else None,
    )


def timing(median: float) -> TimingStats:
    return TimingStats(n=5, time_s_median=median, time_s_p10=median, time_s_p90=median, time_s_mean=median,
                       time_s_min=median, time_s_max=median, spread=0.0, noisy=False)


def profile(with_views: bool = True, arch: str = "toy-mlp") -> ProfileRecord:
    """The profile of the table above (``with_views=False``: as an older gonprof wrote it, no timeline and no
    per-module bytes)."""
    return ProfileRecord(
        environment=Environment(torch_version="2.14.1", python_version="3.11.7", device="cpu",
                                device_name="x86_64", cpu_count=2),
        arch=arch, mode="gan", batch_size=256, warmup_steps=2, active_steps=5, timed_steps=5, measuring_step=1,
        measuring_step_time_s=0.012,
        models=(ModelParams("D", 1_048_576, 1_048_576, 0, 4, 0, 0, 4 * MIB, 0, {"float32": 4 * MIB}),),
        persistent=PersistentBytes(param_bytes=4 * MIB, grad_bytes=1 * MIB, optimizer_state_bytes=2 * MIB),
        flops=FlopFigures(flops_per_step=3_000_000_000, forward_flops=1_000_000_000, backward_flops=2_000_000_000,
                          flops_by_phase={"forward": 1_000_000_000, "backward": 2_000_000_000}),
        live_memory=live_memory(with_views),
        step_time=timing(0.010),
        phase_time={"forward": timing(0.004), "backward": timing(0.005)},
    )


def huge_profile() -> ProfileRecord:
    """A profile whose figures have many digits (a 1,510,432,001-parameter model), for narrow terminals."""
    rec = profile()
    params = 1_510_432_001
    model = ModelParams("D", params, params, 0, 400, 0, 0, 4 * params, 0, {"float32": 4 * params})
    return rec.replace(models=(model,), persistent=PersistentBytes(param_bytes=4 * params, grad_bytes=4 * params,
                                                                   optimizer_state_bytes=8 * params))


def quality(fid: float) -> QualityRecord:
    return QualityRecord(fid=fid, kid_mean=0.01, kid_std=0.001, precision=0.5, recall=0.5, density=0.5,
                         coverage=0.5, class_coverage=1.0, class_entropy_nats=2.3, mean_confidence=0.9,
                         classifier_score=8.0, n_samples=1000, n_reference=1000)


def compare_rows() -> list[RunRecord]:
    """A floor and two runs: gan / a at 11 MiB peak and FID 30, gon / b at 22 MiB and FID 40 (a dominates)."""
    a = RunRecord(mode="gan", arch="a", profile=profile(arch="a"), quality=quality(30.0))
    b = RunRecord(mode="gon", arch="b", quality=quality(40.0), profile=profile(arch="b").replace(
        live_memory=dataclasses.replace(live_memory(), peak_live_bytes=22 * MIB)))
    floor = RunRecord(kind="floor", quality=quality(2.0))
    return [floor, a, b]
