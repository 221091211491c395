"""Hyper-parameters are checked against their mode's rules before anything is built: a bad value is one
line naming the parameter, the value and what is allowed, exit 2, and nothing is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.modes import IncompatibleError, get_mode, list_modes
from gonprof.modes.base import Param, infer_param


@pytest.mark.parametrize("mode", [m.name for m in list_modes()])
def test_every_default_and_preset_passes_its_own_rules(mode):
    spec = get_mode(mode)
    for preset in (None, *spec.presets):
        assert spec.hparams(preset)


@pytest.mark.parametrize("value, message", [
    ("abc", "lr='abc': expected a number > 0"),
    (-1, "lr=-1: expected a number > 0"),
    (0, "lr=0: expected a number > 0"),
])
def test_learning_rates_are_positive_numbers(value, message):
    with pytest.raises(IncompatibleError, match=message):
        get_mode("gan").hparams(lr=value)


def test_integers_ranges_betas_choices_and_booleans():
    gon = get_mode("gon")
    for bad, message in [({"batch_size": 1.5}, "batch_size=1.5: expected an integer from 1 to 1,000,000"),
                         ({"batch_size": -4}, "batch_size=-4: expected an integer from 1 to 1,000,000"),
                         ({"batch_size": 0}, "batch_size=0: expected an integer from 1 to 1,000,000"),
                         ({"betas": [0.5]}, "betas=\\[0.5\\]: expected two numbers in \\[0, 1\\)"),
                         ({"betas": [0.5, 1.0]}, "expected two numbers in \\[0, 1\\)"),
                         ({"skip_identity": "maybe"}, "skip_identity='maybe': expected true or false"),
                         ({"inner_opt": "rmsprop"}, "expected one of adam, sgd, normalized, langevin"),
                         ({"real_class": 2}, "real_class=2: expected an integer from 0 to 1"),
                         ({"fakes": -1}, "fakes=-1: expected an integer from 0 to 1,000,000")]:
        with pytest.raises(IncompatibleError, match=message):
            gon.hparams(**bad)
    hp = gon.hparams(skip_identity="no", batched=1, batch_size=64.0, betas=[0.5, 0.9])
    assert hp["skip_identity"] is False and hp["batched"] is True
    assert hp["batch_size"] == 64 and isinstance(hp["batch_size"], int) and hp["betas"] == (0.5, 0.9)
    with pytest.raises(IncompatibleError, match="labels=-5: expected an integer from 0 to 60,000"):
        get_mode("improved-gan").hparams(labels=-5)


def test_inferred_rules():
    assert infer_param("lr", 1e-3) == Param("float", low=0.0, high=10.0, low_open=True)
    assert infer_param("g_lr", 1e-3).low_open and not infer_param("noise", 0.1).low_open
    assert infer_param("batch_size", 64).low == 1 and infer_param("g_steps", 1).low == 0
    assert (infer_param("batch_size", 64).high, infer_param("g_steps", 1).high) == (1_000_000, 100_000)
    assert infer_param("noise", 0.1).high == 1e6
    assert infer_param("betas", (0.5, 0.9)).kind == "betas"
    assert infer_param("flag", True).kind == "bool"


@pytest.mark.parametrize("args", [
    ["train", "--arch", "inception-k8", "--steps", "1", "--set", "batch_size=-4"],
    ["train", "--arch", "inception-k8", "--steps", "1", "--set", "lr=abc"],
    ["train", "--arch", "improved-gan-mlp", "--mode", "improved-gan", "--steps", "1", "--labels", "-5"],
    ["train", "--arch", "gon-mnist-mlp", "--steps", "1", "--set", "skip_identity=maybe"],
    ["profile", "--arch", "mlp-gan", "--set", "betas=[0.5]"],
    ["compare", "gon", "lsgan", "--steps", "1", "--set", "gon.lr=-1"],
])
def test_cli_bad_hparams_exit_2_in_one_line_and_write_nothing(args, tmp_path):
    out = tmp_path / "out"
    extra = ["--out", str(out)] if args[0] in ("train", "compare") else []
    res = CliRunner().invoke(app, args + extra)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "hyper-parameter" in lines[0] and "expected" in lines[0], res.output
    assert not out.exists()
