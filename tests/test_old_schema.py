"""Files written before a step's request became one object still load: a compare row's spec.json and a
training run's config.json in their flat form (as gonprof wrote them, copied from a real GAS run), a
settings dict with the old name of the discriminator updates, and every results file under docs/results/
(written before the change) re-rendered by ``gonprof report``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.comparison import RunSpec, plan, same_settings
from gonprof.records import load_records
from gonprof.request import StepSpec
from gonprof.train import TrainConfig

# spec.json of a row of `gonprof compare --preset gas --threads 1`, as written before StepSpec
OLD_ROW_SPEC = {
    "mode": "lsgan", "arch": "lsgan-original", "kind": "run", "generator": None, "preset": None, "steps": 2000,
    "time_budget_s": None, "batch_size": 32, "seed": 0, "data": None, "device": "cpu", "n_samples": 1000,
    "profile_steps": 5, "hparams": {}, "run_dir": "/elsewhere/gas/01-lsgan-lsgan-original/run",
    "memory_limit_bytes": None, "cpus": None, "classes": None, "per_class": None, "threads": 1, "variant": None,
}
OLD_FLOOR_SPEC = {**OLD_ROW_SPEC, "kind": "floor", "mode": None, "arch": None, "steps": None, "run_dir": None,
                  "batch_size": None}
# the "config" of that row's run directory (config.json), as written before StepSpec
OLD_TRAIN_CONFIG = {
    "arch": "lsgan-original", "mode": "lsgan", "generator": None, "preset": None, "steps": 2000, "epochs": None,
    "batch_size": 32, "seed": 0, "data": None, "device": "cpu", "out": "/elsewhere/run", "sample_every": 0,
    "log_every": 1, "checkpoint_every": None, "hparams": {}, "time_budget_s": None, "classes": None,
    "per_class": None, "threads": 1,
}


def test_an_old_compare_row_spec_loads_as_the_same_row_the_preset_plans_now():
    old = RunSpec.from_dict(OLD_ROW_SPEC)
    assert old.step == StepSpec("lsgan-original", "lsgan", batch_size=32) and old.steps == 2000
    [now] = [s for s in plan([], preset="gas", threads=1) if s.arch == "lsgan-original"]
    assert same_settings(old.to_dict(), now.to_dict())  # a resume keeps the row finished before the change


def test_an_old_floor_spec_loads_as_a_floor_row():
    floor = RunSpec.from_dict(OLD_FLOOR_SPEC)
    assert floor.kind == "floor" and floor.label == "real (floor)" and floor.step.seed == 0


def test_an_old_train_config_loads_with_its_request():
    config = TrainConfig.from_dict(OLD_TRAIN_CONFIG)
    assert config.step == StepSpec("lsgan-original", "lsgan", batch_size=32, device="cpu")
    assert (config.steps, config.threads, config.sample_every, config.out) == (2000, 1, 0, "/elsewhere/run")
    assert TrainConfig.from_dict(config.to_dict()) == config  # and the new form round-trips


def test_the_old_name_of_the_critic_updates_is_read_as_d_steps():
    spec = StepSpec("dcd-mnist-sn", "wgan-gp", hparams={"n_critic": 2}).checked()
    assert spec.hparams == {"d_steps": 2} and spec.resolved_hparams()["d_steps"] == 2


RESULTS = sorted((Path(__file__).resolve().parent.parent / "docs" / "results").glob("*.json"))


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_results_files_written_before_the_change_rerender(path):
    records = load_records(path)
    assert records
    res = CliRunner().invoke(app, ["report", str(path)])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output


def test_the_results_files_cover_every_record_kind():
    import json

    kinds = {json.loads(p.read_text())["kind"] for p in RESULTS}
    assert kinds >= {"profile", "compare", "estimate", "fit", "scaling", "distributed"}
