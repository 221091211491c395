"""improved-gan with ``labels=0`` (its preset ``unsupervised``) reports no semi-supervised test error: trained
without labels, its discriminator's logits are not the data's classes, so the "error" (88.74% in the run that
found it) meant nothing.  It is None in the step, in train's result and output, and in a comparison row."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.data import synthetic
from gonprof.modes.build import build_step
from gonprof.train import TrainConfig, run_training

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_the_step_has_a_test_error_only_with_labels():
    data = synthetic(64)
    unsup = build_step("improved-gan", "improved-gan-mlp", preset="unsupervised")
    assert not unsup.has_test_error and unsup.test_error(data.images, data.labels) is None
    assert any("labels=0" in n and "no test error" in n for n in unsup.notes)
    semi = build_step("improved-gan", "improved-gan-mlp", labels=20)
    assert semi.has_test_error and 0.0 <= semi.test_error(data.images, data.labels) <= 1.0


def test_train_reports_none_and_prints_no_test_error_line(tmp_path):
    kw = dict(arch="improved-gan-mlp", mode="improved-gan", data="synthetic", steps=1, batch_size=8, sample_every=0)
    res = run_training(TrainConfig.of(out=str(tmp_path / "api"), hparams={"labels": 0}, **kw))
    assert res.status == "ok" and res.test_error is None
    res = run_training(TrainConfig.of(out=str(tmp_path / "semi"), hparams={"labels": 20}, **kw))
    assert res.status == "ok" and res.test_error is not None  # the semi-supervised variant keeps it
    cli = CliRunner().invoke(app, ["train", "--arch", "improved-gan-mlp", "--mode", "improved-gan", "--labels", "0",
                                   "--steps", "1", "--batch-size", "8", "--data", "synthetic", "--sample-every", "0",
                                   "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    assert "test error" not in cli.output


def test_a_comparison_row_trained_without_labels_has_no_test_error(tmp_path):
    from gonprof import api

    rows = api.compare(["improved-gan"], out=tmp_path / "c", steps=1, batch_size=8, n_samples=20, profile_steps=1,
                       hparams={"labels": 0}, placement=api.Placement("inline"))
    run = [r for r in rows if r.kind == "run"][0]
    assert run.status == "ok", run.message
    assert run.test_error_fraction is None and run.n_test_images is None
