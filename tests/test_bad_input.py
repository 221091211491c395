"""Bad input held at the door: output paths checked before any work, honest exit codes, files report cannot
render refused, and the small messages (no doubled prefix, the modes hint)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gonprof.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("keep me\n")
    return f


@pytest.mark.parametrize("args", [
    lambda f: ["compare", "gan", "--steps", 1, "--json", f / "x.json"],
    lambda f: ["compare", "gan", "--steps", 1, "--out", f],
    lambda f: ["compare", "gan", "--steps", 1, "--csv", f / "x.csv"],
    lambda f: ["train", "--arch", "mlp-gan", "--steps", 1, "--out", f],
    lambda f: ["profile", "--arch", "inception-k8", "--json", f / "x.json"],
    lambda f: ["fit", "--arch", "inception-k8", "--memory", "64MiB", "--estimate", "--plot", f / "x.png"],
    lambda f: ["score", f, "--json", f / "x.json"],
])
def test_unwritable_outputs_are_refused_before_any_work(args, a_file):
    res = invoke(*args(a_file))
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and "is a file" in res.output
    assert a_file.read_text() == "keep me\n"  # nothing already written changed


def test_fit_where_nothing_fits_exits_1(tmp_path):
    out = tmp_path / "fit.json"
    res = invoke("fit", "--arch", "inception-k8", "--memory", "1KiB", "--estimate", "--json", out)
    assert res.exit_code == 1, res.output
    assert "no batch size fits" in res.output
    assert json.loads(out.read_text())["records"][0]["status"] == "none-fits"  # the record is kept


def test_report_refuses_a_train_result_in_one_line(tmp_path):
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"status": "ok", "message": "", "steps_done": 3, "steps_total": 3,
                                  "path": str(tmp_path), "schema_version": 1}))
    res = invoke("report", result)
    assert res.exit_code == 1
    assert len(res.output.strip().splitlines()) == 1 and "training run" in res.output


def test_unknown_mode_points_at_the_modes_list():
    res = invoke("compare", "lsgen", "--steps", 1)
    assert res.exit_code == 2 and "(see `gonprof list --modes`)" in res.output


def test_compare_exits_1_when_every_row_failed(tmp_path):
    # lsgan-original at batch 5000 under a 1.5 GiB cap (as in test_compare): the row fails, the command says so
    res = invoke("compare", "lsgan", "--arch", "lsgan-original", "--steps", 1, "--samples", 20, "--profile-steps", 1,
                 "--batch-size", 5000, "--memory-limit", "1536MiB", "--out", tmp_path / "c")
    assert res.exit_code == 1, res.output
    assert "1 of 1 runs failed" in res.output
    assert (tmp_path / "c" / "results.json").is_file()


def test_a_batch_that_cannot_fit_is_refused_before_anything_runs(tmp_path):
    # gon-mnist-conv at batch 10^6 (the largest batch_size a mode takes): the meta-tensor estimate is TiBs
    res = invoke("profile", "--arch", "gon-mnist-conv", "--set", "batch_size=1000000")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert "estimated on meta tensors" in res.output and "--force" in res.output
    res = invoke("train", "--arch", "gon-mnist-conv", "--steps", 1, "--set", "batch_size=1000000",
                 "--out", tmp_path / "run")
    assert res.exit_code == 1 and "--force" in res.output and not (tmp_path / "run").exists()


def test_estimate_never_runs_a_step_that_cannot_fit():
    res = invoke("profile", "--arch", "gon-mnist-conv", "--set", "batch_size=100000", "--estimate")
    assert res.exit_code == 0, res.output
    assert "measured" not in res.output.split("rounding")[0]  # the estimate alone, no measured column


def test_a_memory_limit_below_the_start_up_footprint_is_refused(tmp_path):
    res = invoke("compare", "gan", "--steps", 1, "--memory-limit", "1MiB", "--out", tmp_path / "c")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "start-up footprint" in res.output and not (tmp_path / "c").exists()


BROKEN_PLUGIN = '''
import torch.nn as nn
from gonprof.arch import register_arch, Source

@register_arch("t-returns-str", family="t", role="discriminator", source=Source("t"), expected_params=1,
               default_mode="gan")
def a(input_shape=(1, 28, 28)):
    return "not a module"

@register_arch("t-raises", family="t", role="discriminator", source=Source("t"), expected_params=1,
               default_mode="gan")
def b(input_shape=(1, 28, 28)):
    raise ValueError("boom")

@register_arch("t-miscounts", family="t", role="discriminator", source=Source("t"), expected_params=7,
               default_mode="gan")
def c(input_shape=(1, 28, 28)):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1))  # 784 + 1 = 785 parameters, not 7
'''


def _run(*args):
    """The CLI in a fresh process: plugins register into the process's registries, so keep them out of ours."""
    import subprocess
    import sys
    from types import SimpleNamespace

    p = subprocess.run([sys.executable, "-m", "gonprof.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "COLUMNS": "200"})
    return SimpleNamespace(exit_code=p.returncode, output=p.stdout + p.stderr, stdout=p.stdout)


def test_broken_plugins_are_one_line_and_list_still_lists_the_rest(tmp_path):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text(BROKEN_PLUGIN)
    res = _run("list", "--plugin", plugin, "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["inception-k32"]["params"] == 216_705 and rows["inception-k32"]["error"] == ""
    assert "returned str, not a torch.nn.Module" in rows["t-returns-str"]["error"]
    assert "builder failed: ValueError: boom" in rows["t-raises"]["error"]
    assert str(plugin) in rows["t-raises"]["error"]
    for arch, message in [("t-returns-str", "returned str"), ("t-raises", "ValueError: boom"),
                          ("t-miscounts", "built with 785 parameters, its spec declares 7")]:
        res = _run("profile", "--arch", arch, "--plugin", plugin)
        assert res.exit_code == 2, res.output
        assert len(res.output.strip().splitlines()) == 1 and message in res.output and str(plugin) in res.output


def test_a_write_that_fails_at_the_end_is_one_line_after_the_results(capsys):
    import typer

    from gonprof.cli import Outputs

    def boom(*_):
        raise PermissionError(13, "Permission denied", "/nope/x.json")

    out = Outputs()
    assert out.write("--json /nope/x.json", boom) is None and out.write("fine", lambda: 7) == 7
    with pytest.raises(typer.Exit) as exit_info:
        out.finish()
    assert exit_info.value.exit_code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--json /nope/x.json not written: Permission denied" in err


def test_compare_keeps_its_rows_when_the_results_file_cannot_be_written(tmp_path, monkeypatch):
    import gonprof.comparison as cmp

    def refuse(*_):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cmp, "save_records", refuse)
    errors: list = []
    specs = cmp.plan(["gan"], steps=1, batch_size=8, n_samples=20, profile_steps=1)
    rows = cmp.compare(specs, out=tmp_path, placement=cmp.Placement("inline"), write_errors=errors)
    assert [r.kind for r in rows] == ["floor", "run"] and rows[1].status == "ok"
    assert errors == [f"{tmp_path / 'results.json'} not written: Permission denied"]


def test_few_shot_selections_smaller_than_the_batch_are_refused_up_front(tmp_path):
    res = invoke("train", "--arch", "gon-mnist-mlp", "--classes", 0, "--per-class", 10, "--steps", 1,
                 "--out", tmp_path / "run")
    assert res.exit_code == 2 and "--batch-size 10 or fewer" in res.output and not (tmp_path / "run").exists()
    res = invoke("compare", "gon", "--classes", 0, "--per-class", 10, "--steps", 1, "--out", tmp_path / "c")
    assert res.exit_code == 2 and "--batch-size 10 or fewer" in res.output and not (tmp_path / "c").exists()
    # a batch that fits, given through --set, is the one checked
    from gonprof.comparison import plan

    [spec] = plan(["gon"], classes=[0], per_class=10, steps=1, hparams={"gon.batch_size": 8})
    assert spec.step.hparams == {"batch_size": 8}


def test_a_scoped_set_may_not_rewrite_a_preset_rows_own_settings(tmp_path):
    res = invoke("compare", "--preset", "gon-inner", "--steps", 1, "--set", "gon.inner_opt=adam", "--out", tmp_path)
    assert res.exit_code == 2 and "sets it per row" in res.output


def test_estimate_and_scaling_refuse_options_they_do_not_use_and_fail_honestly():
    res = invoke("profile", "--arch", "inception-k8", "--estimate", "--csv", "x.csv")
    assert res.exit_code == 2 and "--csv does not apply" in res.output
    res = invoke("profile", "--arch", "lsgan-original", "--scaling", "--estimate", "--batch-sizes", 1)
    assert res.exit_code == 1 and "scaling failed" in res.output  # batch norm cannot train on one sample


def test_markup_in_messages_is_printed_as_text():
    res = invoke("info", "--arch", "[/x]")
    assert res.exit_code == 2 and "[/x]" in res.output


def test_data_pointing_at_a_file_says_so(tmp_path):
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(b"\x1f\x8b")
    res = invoke("train", "--arch", "mlp-gan", "--steps", 1, "--data", f, "--out", tmp_path / "run")
    assert res.exit_code == 1 and "is a file; --data takes the folder" in res.output


def test_the_final_grid_is_not_sampled_twice(tmp_path, monkeypatch):
    """With a grid due at the last step, final.png is that grid copied, not a second sampling."""
    from gonprof.modes.gan import GANBCEStep
    from gonprof.train import TrainConfig, run_training

    calls = []
    real_sample = GANBCEStep.sample

    def counting(self, n):
        calls.append(n)
        return real_sample(self, n)

    monkeypatch.setattr(GANBCEStep, "sample", counting)
    res = run_training(TrainConfig.of(arch="mlp-gan", mode="gan", data="synthetic", steps=2, batch_size=8,
                                   sample_every=2, out=str(tmp_path / "run")))
    assert res.status == "ok" and calls == [64]  # the step-2 grid only
    samples = tmp_path / "run" / "samples"
    assert (samples / "final.png").read_bytes() == (samples / "step_000002.png").read_bytes()
