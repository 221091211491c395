"""The overhead benchmark the README names runs end to end with its smallest options."""

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
