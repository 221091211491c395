"""compare --resume trains a row on from its checkpoint: a run stopped part-way, or one asked for more steps."""

from __future__ import annotations

import dataclasses
import json
import time

from gonprof.comparison import CompareEvents, compare, plan, same_settings
from gonprof.comparison.plan import RunSpec
from gonprof.executors import Placement
from gonprof.records import load_records, save_records
from gonprof.train import read_log

INLINE = Placement("inline")


def _specs(steps: int) -> list[RunSpec]:
    return plan(["gan"], steps=steps, n_samples=20, profile_steps=1, batch_size=8)


def _losses(run_dir: str) -> list[dict]:
    return [r["losses"] for r in read_log(run_dir) if "losses" in r]


def test_a_row_asked_for_more_steps_trains_on_from_its_checkpoint(tmp_path):
    """2 steps, then --resume at 4: the row starts at step 2 and its 4 steps are those of a 4-step run."""
    short = compare(_specs(2), out=tmp_path / "a", placement=INLINE)
    assert short[1].train_steps == 2
    config_path = tmp_path / "a" / "01-gan-mlp-gan" / "run" / "config.json"
    created = json.loads(config_path.read_text())["created"]
    time.sleep(1.1)  # a run started again would write a later creation time
    started: list[RunSpec] = []
    rows = compare(_specs(4), out=tmp_path / "a", placement=INLINE, resume=True,
                   events=CompareEvents(on_start=lambda i, n, s: started.append(s)))
    assert [s.continue_run for s in started] == [True]  # the floor is kept; the row continues
    assert rows[1].status == "ok" and rows[1].train_steps == 4
    config = json.loads(config_path.read_text())
    assert config["resolved"]["steps"] == 4 and config["created"] == created  # one run directory, extended
    whole = compare(_specs(4), out=tmp_path / "b", placement=INLINE)
    assert _losses(rows[1].run_dir) == _losses(whole[1].run_dir)  # exact: the same losses, step for step
    assert len(_losses(rows[1].run_dir)) == 4


def test_a_row_that_cannot_continue_trains_again_and_other_settings_start_again(tmp_path):
    """A row marked interrupted whose checkpoint is already at its last step trains again from the start
    (status ok); a row asked for fewer steps, or other settings, does not continue at all."""
    rows = compare(_specs(3), out=tmp_path, placement=INLINE)
    # as Ctrl-C leaves a row: interrupted in the results file, its checkpoint in its run directory
    save_records([rows[0], rows[1].replace(status="interrupted")], tmp_path / "results.json")
    started: list[RunSpec] = []
    events = CompareEvents(on_start=lambda i, n, s: started.append(s))
    again = compare(_specs(3), out=tmp_path, placement=INLINE, resume=True, events=events)
    # its checkpoint is at its last step: nothing is left to train, so the row trains again from the start
    assert [s.continue_run for s in started] == [True] and again[1].status == "ok" and again[1].train_steps == 3
    assert load_records(tmp_path / "results.json")[1].status == "ok"
    # fewer steps than the run trained, or other settings: from the start
    started.clear()
    compare(_specs(2), out=tmp_path, placement=INLINE, resume=True, events=events)
    other = plan(["gan"], steps=3, n_samples=20, profile_steps=1, batch_size=4)
    compare(other, out=tmp_path, placement=INLINE, resume=True, events=events)
    assert [s.continue_run for s in started] == [False, False]


def test_continue_run_does_not_change_what_a_row_is():
    (spec,) = _specs(2)
    assert same_settings(spec.to_dict(), dataclasses.replace(spec, continue_run=True).to_dict())
    assert RunSpec.from_dict(dataclasses.replace(spec, continue_run=True).to_dict()).continue_run
