"""The benchmarks the README names run end to end with their smallest options."""

import json
import subprocess
import sys
from pathlib import Path

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
         "--matmul-n", "64"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ratio fast / seed:" in proc.stdout and "fraction" in proc.stdout
    # one fast inner iteration per sample: forward MACs, conv 1*128*25*784 + 128*64*9*784 + 64*32*9*784
    # + 32*16*9*784 + 2*16*16*9*784, fc 12544*1024 + 1024*256 + 256*128 + 128*2 = 95,127,808; the input
    # gradient costs the same again, so 2 x 2 x 95,127,808 = 380,511,232 FLOPs
    assert "380.5 MFLOP" in proc.stdout
    assert "of the time" in proc.stdout and "of the FLOPs" in proc.stdout  # the breakdown by op


def test_improved_gan_step_benchmark_smoke():
    script = SCRIPT.parent / "improved_gan_step.py"
    proc = subprocess.run([sys.executable, str(script), "--rounds", "1", "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "three passes through D (one per batch):" in proc.stdout and "one pass through D" in proc.stdout
    assert "speed-up:" in proc.stdout and "aten::" in proc.stdout  # the ratio and the op breakdown
