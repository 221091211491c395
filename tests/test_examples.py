"""Every script in examples/ runs as a user would run it, and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    args = []
    if script.name == "embed_profiler.py":
        args = ["--json", str(tmp_path / "rec.json")]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="160")
    r = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, f"{script.name} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    if script.name == "embed_profiler.py":
        from gonprof.records import ProfileRecord

        assert "FLOPs / step" in r.stdout and "(MiB)" in r.stdout
        rec = ProfileRecord.from_json((tmp_path / "rec.json").read_text())
        assert rec.status == "ok" and rec.timed_steps == 8 and rec.flops.flops_per_step > 0
