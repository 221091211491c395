"""The allocator-level peak (torch.profiler's memory events) against hand values, eager and torch.compile'd."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from clean_process import run_clean
from gonprof.measure.allocator import AllocatorPeak, _running_peak, _StderrFilter
from gonprof.measure.memory import LiveBytesTracker
from gonprof.profiler import peak_difference_note
from gonprof.records import COMPILED, EAGER, AllocatorMemory

MB = 1_000_000
N_CHAIN = 4 * 2**20  # the pointwise chain's parameter: 4,194,304 float32 = U = 16 MiB
U = N_CHAIN * 4


def test_known_allocations_and_frees_to_the_byte():
    def step():  # float32; empty and clone, whose kernels allocate nothing else (a fill makes a 4-byte scalar)
        a = torch.empty(MB)  # 4 MB
        b = torch.empty(2 * MB)  # 8 MB -> 12 MB
        del a  # -> 8 MB
        c = torch.empty(MB // 2)  # 2 MB -> 10 MB
        d = b.clone()  # 8 MB           -> 18 MB: the peak
        del b, c, d

    with AllocatorPeak() as ap:
        step()
    am = ap.figures()
    assert (am.peak_bytes, am.peak_delta_bytes, am.start_bytes) == (18 * MB, 18 * MB, 0)
    assert am.allocated_bytes == (4 + 8 + 2 + 8) * MB
    assert am.execution == EAGER and am.compiled_frames == 0 and am.step is None


def test_the_free_of_known_state_counts_and_the_free_of_an_unknown_tensor_does_not():
    """The allocator cannot report frees of blocks allocated before the profiler started: a gradient set to
    None inside the step must still count (weakref marker), a batch made before the step and freed in it
    must not (the tensor-level tracker does not know it either)."""
    lin = nn.Linear(1000, 1000, bias=False)  # 4 MB of weight
    lin.weight.grad = torch.ones_like(lin.weight)  # 4 MB of gradient
    batch = [torch.ones(3 * MB)]  # 12 MB made before the step, known to no one

    def step():
        lin.weight.grad = None  # -4 MB of known state
        batch.clear()  # -12 MB not counted
        t = torch.empty(2 * MB)  # +8 MB
        t.fill_(1.0)
        del t

    with AllocatorPeak({"D": lin}) as ap:
        step()
    am = ap.figures()
    assert am.start_bytes == 8 * MB  # weight + gradient
    assert am.peak_delta_bytes == 4 * MB  # -4 + 8
    assert am.peak_bytes == 12 * MB


def test_extra_state_is_part_of_the_start_and_its_free_counts():
    """A replay buffer given as ``state`` is persistent state like the parameters: it is in the start bytes,
    and a step that replaces it frees its bytes (a weakref marker), as the tensor-level tracker counts."""
    buffer = [torch.empty(2 * MB)]  # 8 MB of replay state

    def step():
        buffer[0] = torch.empty(MB)  # +4 MB, then the old 8 MB is freed: live 4 MB of state
        t = torch.empty(MB)  # +4 MB -> 8 MB, below the 12 MB reached while both buffers lived
        del t

    with AllocatorPeak(state=lambda: {"replay": [buffer[0]]}) as ap:  # read on entry, holding nothing
        step()
    am = ap.figures()
    assert am.start_bytes == 8 * MB
    assert am.peak_bytes == 12 * MB  # the old and the new buffer together


def test_running_peak_pairs_frees_by_address_and_skips_blocks_from_before():
    # (time, order, ptr, bytes): 10 B at 0x1, 5 B known-state free, 20 B at 0x2, a stale free of 0x9, 0x1 freed
    events = [(1, 0, 0x1, 10), (2, 1, -1, -5), (3, 0, 0x2, 20), (4, 1, 0x9, -999), (5, 1, 0x1, -10)]
    assert _running_peak(events) == (25, 30)
    # equal times: the allocation first (the larger peak)
    assert _running_peak([(1, 1, -1, -5), (1, 0, 0x1, 10)]) == (10, 10)


def test_running_peak_frees_a_block_before_its_address_is_reused_at_the_same_time():
    # 50 B at 0xA; at time 2 it is freed and a new 10 B block is allocated at the same address; 100 B at 0xB
    # at time 3: live 50, then 10, then 10 + 100 = 110 B.  (Merging the two blocks at 0xA would give 60, then
    # 0 when the free removes both, then 100.)  Allocated: 50 + 10 + 100 = 160 B.
    events = [(1, 0, 0xA, 50), (2, 1, 0xA, -50), (2, 0, 0xA, 10), (3, 0, 0xB, 100)]
    assert _running_peak(events) == (110, 160)
    # the other frees at that time still come after the allocations (the larger peak).  Time 1: 50 B at 0xA
    # and 30 B at 0xC (80 B).  Time 2: 0xA freed (30 B), 10 B at 0xA (40 B), 45 B at 0xD (85 B), 0xC freed
    # (55 B): peak 85 B (every free first: 55; none first, the blocks at 0xA merged: 135).  Allocated 135 B.
    events = [(1, 0, 0xA, 50), (1, 0, 0xC, 30),
              (2, 1, 0xA, -50), (2, 1, 0xC, -30), (2, 0, 0xA, 10), (2, 0, 0xD, 45)]
    assert _running_peak(events) == (85, 135)


def test_an_empty_step_measures_zero_bytes():
    with AllocatorPeak() as ap:
        pass
    am = ap.figures()
    assert am.peak_bytes == 0 and am.allocated_bytes == 0


class Chain(nn.Module):
    """The pointwise chain of the issue: ``(w * x).sin().cos().exp().tanh().sum()`` on a 4M-element w."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(N_CHAIN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w * x).sin().cos().exp().tanh().sum()


# The eager step's peak by hand, U = 16 MiB.  At the start: w and w.grad (2U; x is external: the tensor
# tracker counts it from its first read, beside this figure).
# zero_grad(set_to_none) frees the gradient (1U).  The forward keeps a = w*x (sin's input), b = sin(a)
# (cos's input), d = exp(c) and e = tanh(d) (their outputs); c is freed once d exists; then the 4-byte loss.
# Backward: the 4-byte gradient of the loss; tanh's backward makes g_d (e freed), exp's makes g_c (g_d and d
# freed): w, a, b, g_c live (4U + 8 B).  cos's backward computes g_c * -b.sin(): b.sin(), its negation and
# the product are all live before the expression ends: 7U + 8 B, the step's peak.
EAGER_CHAIN_PEAK = 7 * U + 8  # 117,440,520 B
# The compiled step (inductor fuses the chain and recomputes it in the backward from w and x): the old
# gradient is freed, the loss and its gradient (4 B each) and the new gradient (U) are made: 2U + 8 B.
COMPILED_CHAIN_PEAK = 2 * U + 8  # 33,554,440 B


def test_eager_chain_allocator_peak_equals_tensor_peak_and_the_hand_value():
    torch.manual_seed(0)
    m = Chain()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3)
    x = torch.randn(N_CHAIN)

    def step():
        opt.zero_grad(set_to_none=True)
        m(x).backward()
        opt.step()

    step()  # creates the gradient
    with AllocatorPeak({"D": m}, {"D": opt}) as ap:
        step()
    with AllocatorPeak({"D": m}, {"D": opt}) as ap2, LiveBytesTracker({"D": m}, {"D": opt}) as lt:
        step()  # both at once, as on the Profiler's measuring step
    assert EAGER_CHAIN_PEAK == 117_440_520
    assert ap.figures().peak_bytes == EAGER_CHAIN_PEAK
    lm = lt.figures()
    assert lm.peak_live_external_bytes == U  # x, made before the step: no allocator served it in the step
    assert ap2.figures().peak_bytes == lm.peak_live_bytes - lm.peak_live_external_bytes == EAGER_CHAIN_PEAK


@pytest.mark.cuda
def test_cuda_allocator_peak_from_max_memory_allocated():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    mib = 2**20
    with AllocatorPeak(device="cuda") as ap:
        a = torch.empty(mib, device="cuda")  # 4 MiB
        b = torch.empty(2 * mib, device="cuda")  # 8 MiB -> 12 MiB
        del a  # -> 8 MiB
        c = b.clone()  # 8 MiB -> 16 MiB: the peak
        del b, c
    am = ap.figures()
    assert am.method.startswith("torch.cuda") and am.peak_delta_bytes == 16 * mib and am.start_bytes == 0


def test_peak_difference_note_tolerance_and_reasons():
    mib = 2**20

    def alloc(peak, execution=EAGER):
        return AllocatorMemory(peak_bytes=peak, peak_delta_bytes=peak, start_bytes=0, allocated_bytes=peak,
                               execution=execution)

    # tensor-level peak 100 MiB: tolerance 5 MiB + 1 MiB = 6 MiB
    assert peak_difference_note(100 * mib, alloc(106 * mib)) == ""
    assert peak_difference_note(100 * mib, alloc(94 * mib)) == ""
    above = peak_difference_note(100 * mib, alloc(106 * mib + 1))
    assert "above" in above and "kernel scratch" in above and "6.00 MiB" in above
    assert "foreign memory" in peak_difference_note(100 * mib, alloc(90 * mib))
    assert "compiled buffers" in peak_difference_note(100 * mib, alloc(30 * mib, COMPILED))


def test_stderr_filter_keeps_everything_but_the_allocator_line(capfd):
    with _StderrFilter():
        os.write(2, b"first line\n")
        os.write(2, b"[W CPUAllocator.cpp:245] Memory block of unknown size was allocated before the profiling "
                    b"started, profiler results will not include the deallocation event\n")
        os.write(2, b"USDT:2026-01-01 00:00:00 1:1 SyncActivityProfilerHandler.cpp:39] profiler_start\n")
        os.write(2, b"last line\n")
    err = capfd.readouterr().err
    assert err == "first line\nlast line\n"


def test_stderr_filter_passes_a_line_on_at_once_and_loses_none_when_the_process_dies():
    """A line the step writes reaches stderr while the step still runs; a process killed inside the filter
    (here it ends itself with os._exit, as SIGKILL would end it) has written its last lines, less the
    profiler's."""
    import subprocess
    import sys
    import textwrap
    import threading
    from pathlib import Path

    code = textwrap.dedent('''
        import os, sys
        from gonprof.measure.allocator import _StderrFilter
        with _StderrFilter():
            os.write(2, b"[W CPUAllocator.cpp:245] Memory block of unknown size was allocated before the "
                        b"profiling started\\n")
            os.write(2, b"MemoryError: out of memory in the step\\n")
            print("written", flush=True)
            sys.stdin.readline()  # the step goes on until the parent has seen the line
            os._exit(1)
    ''')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    deadline = threading.Timer(60, p.kill)  # a line held back until the step ends would wait for ever
    deadline.start()
    try:
        assert p.stdout.readline() == b"written\n"
        assert p.stderr.readline() == b"MemoryError: out of memory in the step\n"  # before the step ends
        p.stdin.write(b"go\n")
        p.stdin.flush()
        assert p.wait(timeout=60) == 1
        assert p.stderr.read() == b""  # the profiler's line never came
    finally:
        deadline.cancel()
        p.kill()
        p.wait()


def test_gonprof_profile_writes_none_of_the_profilers_own_lines_to_stderr():
    """In a fresh process (the allocator's line comes once per 1000 frees of unknown blocks, the first time)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "gonprof.cli", "profile", "--arch", "inception-k8", "--batch-size", "4",
                        "--warmup", "2", "--steps", "1", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "allocator peak" in r.stdout
    for noise in ("Memory block of unknown size", "profiler_start", "gpuGetDeviceCount"):
        assert noise not in r.stderr


def test_another_running_profiler_leaves_no_allocator_peak_and_says_so():
    from gonprof.profiler import Profiler

    lin = nn.Linear(4, 4)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        with Profiler(models=lin, warmup=1, active=1) as prof:
            while not prof.done:
                lin(torch.ones(2, 4)).sum().backward()
                prof.step()
    rec = prof.report()
    assert rec.allocator_memory is None and rec.live_memory is not None
    assert any("no allocator-level peak: another torch profiler was running" in w for w in rec.warnings)


def test_torch_compile_is_measured_as_it_runs():
    """The issue's pointwise chain compiled with inductor, under the Profiler: the step peak is the compiled
    step's allocator peak and says so; FLOPs and the tensor-level peak are the eager maths and say so.  A
    compiled function (not a model) is found by the Dynamo frames the measuring step entered, and a
    fullgraph=True model is measured too (it runs as written on the measuring step).  In a fresh
    process: compilation is slow (about 25 s cold for inductor's C++ kernels) and leaves Dynamo state behind."""
    out = run_clean(f"""
        import torch.nn as nn
        from gonprof.profiler import Profiler
        torch.set_num_threads(1)
        N = {N_CHAIN}
        class Chain(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.randn(N))
            def forward(self, x):
                return (self.w * x).sin().cos().exp().tanh().sum()
        torch.manual_seed(0)
        m = Chain()
        opt = torch.optim.SGD(m.parameters(), lr=1e-3)
        x = torch.randn(N)
        def run(model, warmup, step_fn=None):
            kinds = []
            with Profiler(models={{"D": model}}, optimizers={{"D": opt}}, warmup=warmup, active=2) as prof:
                while not prof.done:
                    kinds.append(prof.step_kind)
                    opt.zero_grad(set_to_none=True)
                    (step_fn or model)(x).backward()
                    opt.step()
                    prof.step()
            rec = prof.report()
            return dict(kinds=kinds, status=rec.status, step_peak=rec.step_peak_bytes,
                        step_peak_execution=rec.step_peak_execution,
                        source=rec.step_peak_source, execution=rec.execution,
                        allocator=rec.allocator_peak_bytes, compiled_frames=rec.allocator_memory.compiled_frames,
                        live=rec.live_memory.peak_live_bytes - rec.live_memory.peak_live_external_bytes,
                        external=rec.live_memory.peak_live_external_bytes, flops_method=rec.flops.method,
                        uncounted=sorted(rec.flops.uncounted_ops), warnings=list(rec.warnings),
                        note=rec.peak_difference_note)
        compiled = run(torch.compile(m), warmup=2)  # step 0 compiles, step 1 measures (eager), step 2 compiled
        eager = run(m, warmup=2)
        fn = torch.compile(lambda x: m(x), backend="aot_eager")  # compiles in the first allocator step
        function = run(m, warmup=1, step_fn=fn)
        m2 = Chain()
        opt = torch.optim.SGD(m2.parameters(), lr=1e-3)
        fullgraph = run(torch.compile(m2, fullgraph=True, backend="aot_eager"), warmup=2)
        print(json.dumps(dict(compiled=compiled, eager=eager, function=function, fullgraph=fullgraph)))
    """, timeout=600)
    c, e, f, g = out["compiled"], out["eager"], out["function"], out["fullgraph"]
    assert {c["status"], e["status"], f["status"], g["status"]} == {"ok"}
    # compiled: the step peak is the compiled allocator peak (the hand value, within 10%) and says so
    assert c["kinds"] == ["warmup", "measure", "allocator", "timed", "timed"]
    assert c["step_peak"] == pytest.approx(COMPILED_CHAIN_PEAK, rel=0.10)
    assert c["step_peak"] == c["allocator"]
    assert (c["step_peak_execution"], c["source"]) == (COMPILED, "allocator")
    assert c["execution"] == {"flops": EAGER, "live_memory": EAGER, "allocator_memory": COMPILED,
                              "step_time": COMPILED, "rss": COMPILED}
    assert c["compiled_frames"] >= 1
    # the eager maths, labelled as such (live: the tensor peak less the external x, U, as the allocator's basis)
    assert c["live"] == EAGER_CHAIN_PEAK and c["external"] == U
    assert "eager maths of the compiled step" in c["flops_method"]
    assert "compiled buffers" in c["note"]
    assert any("describe the eager maths" in w and "ran compiled" in w for w in c["warnings"])
    # eager: unchanged and exact; allocator and tensor-level peaks agree to the byte
    assert e["kinds"] == ["warmup", "measure", "timed", "timed"]
    assert e["step_peak"] - e["external"] == e["live"] == e["allocator"] == EAGER_CHAIN_PEAK
    assert (e["step_peak_execution"], e["source"]) == (EAGER, "tensor-level")
    assert set(e["execution"].values()) == {EAGER} and not e["warnings"] and not e["note"]
    # a compiled function inside the step: found on the measuring step, then measured compiled; the first
    # allocator step compiled it, so the next one measures again
    assert f["kinds"] == ["measure", "allocator", "allocator", "timed", "timed"]
    assert f["execution"]["allocator_memory"] == COMPILED and f["compiled_frames"] >= 1
    assert any("torch.compile'd code ran in the step" in w for w in f["warnings"])
    # fullgraph=True: Dynamo would refuse to skip its frame under a dispatch mode; the stance runs it as written
    assert g["execution"]["allocator_memory"] == COMPILED and g["live"] == EAGER_CHAIN_PEAK
