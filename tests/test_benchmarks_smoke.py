"""The benchmarks the README names run end to end with their smallest options."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profiler_overhead.py"


def test_profiler_overhead_benchmark_smoke(tmp_path):
    out = tmp_path / "overhead.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1", "--steps-per-round", "1", "--pairs", "gon-mnist-mlp:gon",
         "--gon-inner-steps", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ratio" in proc.stdout
    doc = json.loads(out.read_text())
    (pair,) = doc["pairs"]
    assert pair["arch"] == "gon-mnist-mlp" and pair["n_unprofiled"] == 1 and pair["n_profiled"] == 1
    assert pair["ratio"] > 0


def test_gon_fast_vs_seed_benchmark_smoke():
    script = SCRIPT.parent / "gon_fast_vs_seed.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--rounds", "1", "--seed-iters", "1", "--fast-iters", "1", "--batch", "2",
         "--matmul-n", "64", "--conv-size", "8", "--chain-steps", "1", "--noise-iters", "5"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ratio fast / seed:" in proc.stdout and "fraction" in proc.stdout
    # one fast inner iteration per sample: forward MACs, conv 1*128*25*784 + 128*64*9*784 + 64*32*9*784
    # + 32*16*9*784 + 2*16*16*9*784, fc 12544*1024 + 1024*256 + 256*128 + 128*2 = 95,127,808; the input
    # gradient costs the same again, so 2 x 2 x 95,127,808 = 380,511,232 FLOPs
    assert "380.5 MFLOP" in proc.stdout
    assert "of the time" in proc.stdout and "of the FLOPs" in proc.stdout  # the breakdown by op
    assert "ceiling = the best of them" in proc.stdout
    assert "init=buffer (default)" in proc.stdout and "init=noise (--preset noise)" in proc.stdout


def _benchmark_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_fma_peak_is_clock_times_flops_per_cycle_times_cores():
    bench = _benchmark_module("gon_fast_vs_seed")
    zen4 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "model": "17", "cpu MHz": "2596.140",
            "flags": "fma avx2 avx512f"}
    peak, how = bench.fma_peak(1, info=zen4)
    assert peak == pytest.approx(2.59614 * 32)  # 2 FMA pipes x 8 float32 lanes x 2 FLOPs, one core
    assert "Zen 4" in how and "cpu MHz" in how
    peak, _ = bench.fma_peak(2, info=zen4)
    assert peak == pytest.approx(2.59614 * 32 * 2)
    intel = {"vendor_id": "GenuineIntel", "cpu family": "6", "model": "106", "cpu MHz": "2000.0",
             "flags": "fma avx2 avx512f"}
    assert bench.fma_peak(1, info=intel)[0] == pytest.approx(2.0 * 64)  # 2 x 16 lanes x 2
    assert bench.fma_peak(1, clock_ghz=3.0, per_cycle=16, info={})[0] == pytest.approx(48.0)
    peak, how = bench.fma_peak(1, info={"flags": "sse2"})
    assert peak is None and "--flops-per-cycle" in how


def test_the_reference_convolution_counts_two_flops_per_mac(monkeypatch):
    bench = _benchmark_module("gon_fast_vs_seed")
    clock = iter([0.0, 2.0])  # a fake clock, in the benchmark's namespace only: the three convolutions take 2 s
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    # 2 x batch 2 x 4 out x 8 x 8 pixels x 4 in x 9 taps x 3 reps / 2 s
    assert bench.conv_gflops(batch=2, channels=4, size=8) == pytest.approx(2 * 2 * 4 * 64 * 4 * 9 * 3 / 2 / 1e9)


def test_improved_gan_step_benchmark_smoke():
    script = SCRIPT.parent / "improved_gan_step.py"
    proc = subprocess.run([sys.executable, str(script), "--rounds", "1", "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "three passes through D (one per batch):" in proc.stdout and "one pass through D" in proc.stdout
    assert "speed-up:" in proc.stdout and "aten::" in proc.stdout  # the ratio and the op breakdown


@pytest.mark.parametrize("options", [
    [],
    ["--mode", "sngan", "--critic", "fan-in", "--generator-init", "he", "--unit-range"],
    ["--gp-weight", "0", "--critic", "no-sn"],
], ids=["preset", "sngan-rescaled", "no-sn"])
def test_dcd_saturation_probe_smoke(options, tmp_path):
    script = SCRIPT.parent / "dcd_saturation.py"
    grid = tmp_path / "grid.png"
    proc = subprocess.run([sys.executable, str(script), "--steps", "2", "--every", "1", "--grid", str(grid),
                           *options], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert grid.stat().st_size > 0
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2"] and all("saturated" in line for line in lines)
