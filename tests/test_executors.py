"""compare's Ray executor: a real local Ray cluster, every row in a fresh worker, a lost row is a row."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import gonprof.comparison as cmp
from gonprof.records import load_records

N = 20


def test_compare_on_a_local_ray_cluster(tmp_path):
    out = tmp_path / "c"
    p = subprocess.run([sys.executable, "-m", "gonprof.cli", "compare", "gan", "lsgan", "--steps", "3", "--samples",
                        str(N), "--profile-steps", "1", "--executor", "ray", "--out", str(out), "--json",
                        str(tmp_path / "out.json")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = load_records(tmp_path / "out.json")
    assert [(r.kind, r.status) for r in rows] == [("floor", "ok"), ("run", "ok"), ("run", "ok")]
    assert [r.mode for r in rows[1:]] == ["gan", "lsgan"]
    assert json.loads((out / "01-gan-mlp-gan" / "spec.json").read_text())["threads"] == 1  # --cpus-per-run 1


def test_a_row_whose_worker_dies_is_lost_not_a_hang(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")  # the optional extra (dev installs it)

    def dies(spec_dict):
        os._exit(1)

    monkeypatch.setattr(cmp, "_ray_row", dies)
    specs = cmp.plan(["gan"], steps=1, n_samples=N, profile_steps=1)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        rows = cmp.compare(specs, out=tmp_path, floor=False, executor="ray")
    finally:
        ray.shutdown()
    assert [r.status for r in rows] == ["lost"] and "WorkerCrashedError" in rows[0].message
    assert load_records(tmp_path / "results.json")[0].status == "lost"


def test_without_ray_the_executor_is_one_line_saying_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from gonprof.cli import main; sys.argv = ['gonprof', 'compare', "
            f"'gan', '--steps', '1', '--executor', 'ray', '--out', {str(tmp_path / 'c')!r}]; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert len(lines) == 1 and 'pip install -e ".[ray]"' in lines[0]
    assert not (tmp_path / "c").exists()
