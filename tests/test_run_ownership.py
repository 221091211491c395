"""A run directory belongs to one process at a time, and SIGTERM stops a run the way Ctrl-C does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gonprof.train import RunLock, TrainConfig, TrainError, run_training


def test_a_second_run_into_a_locked_directory_is_refused_naming_the_holder(tmp_path):
    lock = RunLock(tmp_path / "run").acquire()
    try:
        with pytest.raises(TrainError) as err:
            run_training(TrainConfig.of(arch="mlp-gan", mode="gan", data="synthetic", steps=1, batch_size=8,
                                     sample_every=0, out=str(tmp_path / "run")))
        msg = str(err.value)
        assert f"pid {os.getpid()}" in msg and "\n" not in msg
        assert not (tmp_path / "run" / "config.json").exists()  # the loser wrote nothing
    finally:
        lock.release()
    # released: the directory can be used again
    res = run_training(TrainConfig.of(arch="mlp-gan", mode="gan", data="synthetic", steps=1, batch_size=8,
                                   sample_every=0, out=str(tmp_path / "run")))
    assert res.status == "ok"


def test_sigterm_checkpoints_writes_the_status_and_result_and_exits_143(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "gonprof.cli", "train", "--arch", "mlp-gan", "--mode", "gan",
                             "--data", "synthetic", "--steps", "100000", "--batch-size", "8", "--sample-every", "0",
                             "--threads", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "interrupted" and result["stopped_by"] == "SIGTERM"
    last = json.loads(log.read_text().strip().splitlines()[-1])
    assert last["status"] == "interrupted" and last["step"] == result["steps_done"]
    assert result["checkpoint_step"] == result["steps_done"]  # resumable from where it stopped


def test_a_time_bounded_run_resumes_with_a_new_bound(tmp_path):
    """The stored budget is spent: --resume --steps N trains to N; a fresh --time-budget counts from the resume."""
    from gonprof import api

    out = str(tmp_path / "run")
    first = api.train(arch="mlp-gan", mode="gan", data="synthetic", batch_size=8, sample_every=0, out=out,
                      time_budget_s=0.5)
    assert first.status == "ok" and first.time_bounded
    more = api.train(out=out, resume=True, steps=first.steps_done + 3)
    assert more.status == "ok" and more.steps_done == first.steps_done + 3 and not more.time_bounded


def test_resume_an_epochs_run_with_steps(tmp_path):
    from gonprof import api

    out = str(tmp_path / "run")
    api.train(arch="mlp-gan", mode="gan", data="synthetic", batch_size=64, sample_every=0, out=out, epochs=1)
    more = api.train(out=out, resume=True, steps=6)  # 256 training images / 64 = 4 steps an epoch
    assert more.status == "ok" and more.steps_done == 6


def test_a_timed_out_trial_is_an_error_not_too_big():
    from gonprof.budget import trial_from_outcome
    from gonprof.isolation import Outcome

    t = trial_from_outcome(8, Outcome(result=None, returncode=-9, tail="", wall_s=900.0, timed_out=True))
    assert t.status == "error" and "timed out" in t.message
