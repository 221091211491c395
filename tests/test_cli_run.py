"""profile / report / train through the CLI, on small, fast configurations."""

import json

import pytest
from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.records import ProfileRecord, load_records

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "k8.json"
    res = invoke("profile", "--arch", "inception-k8", "--batch-size", 4, "--warmup", 1, "--timed-steps", 2,
                 "--json", path, "--csv", path.with_suffix(".csv"))
    return res, path


def test_profile_prints_a_table_and_writes_json(profiled):
    res, path = profiled
    assert res.exit_code == 0, res.output
    assert "inception-k8" in res.stdout and "lsgan" in res.stdout  # default mode of the GAS family
    [rec] = load_records(path)
    assert isinstance(rec, ProfileRecord) and rec.status == "ok"
    assert rec.model("D").params_total == 13_857
    assert rec.flops_per_step > 0 and rec.peak_live_bytes > 0 and rec.timed_steps == 2
    assert path.with_suffix(".csv").read_text().splitlines()[0].count(",") > 10


def test_report_rerenders_without_running(profiled):
    _, path = profiled
    res = invoke("report", path)
    assert res.exit_code == 0, res.output
    assert "inception-k8" in res.stdout


def test_report_on_a_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = invoke("report", bad)
    assert res.exit_code == 1 and "not valid JSON" in res.stderr and "Traceback" not in res.output
    res = invoke("report", tmp_path / "missing.json")
    assert res.exit_code == 1 and "not found" in res.stderr


def test_profile_refuses_incompatible_pairs_in_one_line():
    res = invoke("profile", "--arch", "improved-gan-mlp", "--mode", "lsgan", "--steps", 1)
    assert res.exit_code == 2 and "accepts" in res.stderr
    res = invoke("profile", "--arch", "gas-generator")
    assert res.exit_code == 2 and "generator" in res.stderr
    res = invoke("profile", "--arch", "nope-*")
    assert res.exit_code == 2


def test_train_writes_a_run_and_resumes(tmp_path):
    out = tmp_path / "run"
    res = invoke("train", "--arch", "mlp-gan", "--mode", "gan", "--steps", 3, "--batch-size", 8,
                 "--data", "synthetic", "--out", out)
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "losses" in x] == [1, 2, 3]
    assert (out / "samples" / "final.png").read_bytes()[:4] == b"\x89PNG"
    res = invoke("train", "--out", out, "--resume", "--steps", 5)
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "losses" in x] == [1, 2, 3, 4, 5]


def test_train_errors_are_one_line(tmp_path):
    res = invoke("train", "--arch", "mlp-gan", "--mode", "gan", "--steps", 1, "--data", tmp_path / "nowhere")
    assert res.exit_code == 1 and "not found" in res.stderr
    res = invoke("train", "--arch", "mlp-gan", "--set", "oops")
    assert res.exit_code == 2 and "NAME=VALUE" in res.stderr
    res = invoke("train", "--arch", "mlp-gan", "--mode", "gan", "--set", "no_such=1", "--steps", 1)
    assert res.exit_code == 2 and "no_such" in res.stderr


def test_profile_steps_is_the_deprecated_spelling_of_timed_steps():
    # --steps counts training steps in train and compare; in profile it is kept working, with a warning
    res = invoke("profile", "--arch", "inception-k8", "--batch-size", 2, "--warmup", 1, "--steps", 1)
    assert res.exit_code == 0, res.output
    assert "profile --steps is deprecated; it is --timed-steps" in res.output
