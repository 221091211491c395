"""Every script in examples/ runs as a user would run it, and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    args = []
    if script.name in ("embed_profiler.py", "ddp_profiler.py"):
        args = ["--json", str(tmp_path / "rec.json")]
    # the scripts (and the ranks ddp_profiler.py starts) import this tree's gonprof, not an installed one
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="160", PYTHONPATH=path)
    r = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, f"{script.name} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    if script.name == "embed_profiler.py":
        from gonprof.records import ProfileRecord

        assert "FLOPs / step" in r.stdout and "(MiB)" in r.stdout
        rec = ProfileRecord.from_json((tmp_path / "rec.json").read_text())
        assert rec.status == "ok" and rec.timed_steps == 8 and rec.flops.flops_per_step > 0
    if script.name == "ddp_profiler.py":  # two gloo ranks, each profiled, gathered to rank 0
        from typer.testing import CliRunner

        from gonprof.cli import app
        from gonprof.records import DistributedProfileRecord, load_records

        [rec] = load_records(tmp_path / "rec.json")  # a results file, as gonprof report reads it
        assert isinstance(rec, DistributedProfileRecord)
        assert rec.status == "ok" and rec.world_size == 2 and [r.rank for r in rec.ranks] == [0, 1]
        assert rec.backend == "gloo" and "spread" in r.stdout
        report = CliRunner().invoke(app, ["report", str(tmp_path / "rec.json")])
        assert report.exit_code == 0 and "spread" in report.stdout and "130,472" in report.stdout, report.output
        # SmallConvNet: conv1 1*8*9+8 = 80, conv2 8*16*9+16 = 1,168, head 16*14*14*10+10 = 31,370 parameters;
        # one backward per step all-reduces 4 bytes of each
        params = 80 + 1_168 + 31_370
        for rank in rec.ranks:
            assert rank.profile.timed_steps == 8 and rank.profile.flops.flops_per_step > 0
            assert rank.comm.allreduce_bytes_per_step == 4 * params == 130_472
            assert set(rank.comm.allreduce_bytes_each_step) == {130_472}
