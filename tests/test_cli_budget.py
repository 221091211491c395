"""gonprof fit, profile --estimate and profile --scaling through the CLI (estimates: fast, nothing allocated)."""

import pytest
from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.records import FitRecord, MemoryEstimate, ScalingRecord, load_records

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_fit_by_estimate_answers_and_saves(tmp_path):
    path = tmp_path / "fit.json"
    res = invoke("fit", "--arch", "inception-k8", "--mode", "lsgan", "--memory", "64MiB", "--estimate",
                 "--json", path)
    assert res.exit_code == 0, res.output
    [rec] = load_records(path)
    assert isinstance(rec, FitRecord) and rec.batch_size > 1
    fits = {t.batch_size: t.peak_bytes for t in rec.trials if t.status == "fits"}
    too_big = {t.batch_size: t.peak_bytes for t in rec.trials if t.status == "too-big"}
    assert fits[rec.batch_size] <= 64 * 2**20 < too_big[rec.batch_size + 1]
    assert f": {rec.batch_size};" in res.stdout
    assert invoke("report", path).exit_code == 0


def test_profile_estimate_on_cuda_without_a_gpu(tmp_path):
    path = tmp_path / "est.json"
    res = invoke("profile", "--arch", "inception-k8", "--device", "cuda", "--estimate", "--batch-size", 8,
                 "--json", path)
    assert res.exit_code == 0, res.output
    [est] = load_records(path)
    assert isinstance(est, MemoryEstimate) and est.device == "cuda"
    assert est.peak_bytes >= est.peak_live_bytes > 0
    assert "CUDA max allocated" in res.stdout


def test_profile_scaling_by_estimate(tmp_path):
    path = tmp_path / "scaling.json"
    res = invoke("profile", "--arch", "gon-mnist-mlp", "--scaling", "--estimate", "--batch-sizes", "2,4,8",
                 "--json", path)
    assert res.exit_code == 0, res.output
    [rec] = load_records(path)
    assert isinstance(rec, ScalingRecord) and rec.memory_fit.slope > 0


def _row(text, name):
    """The cells of the table row that starts with ``name``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in:\n{text}")


def test_profile_estimate_beside_a_measured_step_on_the_cpu(tmp_path):
    # --set reaches both the estimate and the measured profile, which is measured on the second step
    path = tmp_path / "est.json"
    # batch 512: activations outweigh the parameters, so the first step peaks before Adam has any state
    res = invoke("profile", "--arch", "gon-mnist-mlp", "--estimate", "--batch-size", 512, "--set", "inner_steps=2",
                 "--json", path)
    assert res.exit_code == 0, res.output
    [est] = load_records(path)
    assert isinstance(est, MemoryEstimate) and est.hparams["inner_steps"] == 2
    _, est_opt, measured_opt, _ = _row(res.stdout, "optimizer state")
    assert float(measured_opt) == float(est_opt) > 0  # Adam's state exists by the measured step
    # the profiler prepares the batch between steps (Profiler.between); both peaks hold the part of it the
    # step reads as external storage (GON reads the images, not the labels)
    _, _, measured_peak, _ = _row(res.stdout, "peak live tensors")
    _, est_ext, measured_ext, _ = _row(res.stdout, "external")
    assert float(est_ext) == float(measured_ext) == pytest.approx(512 * 784 * 4 / 2**20, abs=0.01)
    assert est.peak_live_external_bytes == 512 * 784 * 4
    # the budget figure holds the whole batch in place of the part read
    assert est.peak_bytes == est.peak_live_bytes - est.peak_live_external_bytes + est.input_bytes
    assert est.peak_live_bytes / 2**20 == pytest.approx(float(measured_peak), rel=0.002)


def test_set_reaches_fit_and_rejects_unknown_names(tmp_path):
    path = tmp_path / "fit.json"
    res = invoke("fit", "--arch", "gon-mnist-mlp", "--memory", "16MiB", "--estimate", "--set", "inner_steps=2",
                 "--max-batch", 64, "--json", path)
    assert res.exit_code == 0, res.output
    [rec] = load_records(path)
    assert rec.hparams["inner_steps"] == 2
    for args in (["profile", "--arch", "gon-mnist-mlp", "--estimate"],
                 ["profile", "--arch", "gon-mnist-mlp", "--scaling", "--batch-sizes", "2,4"],
                 ["fit", "--arch", "gon-mnist-mlp", "--memory", "16MiB"]):
        res = invoke(*args, "--set", "inner_stepz=2")
        assert res.exit_code == 2, (args, res.output)
        assert "inner_stepz" in res.stderr and "inner_steps" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize("args, words", [
    (["fit", "--arch", "inception-k8", "--memory", "lots"], "lots"),
    (["fit", "--arch", "inception-k8", "--memory", "1GiB", "--device", "tpu"], "cpu or cuda"),
    (["profile", "--arch", "inception-k8", "--scaling", "--estimate", "--batch-sizes", "2,x"], "batch-sizes"),
])
def test_budget_usage_errors_are_one_line(args, words):
    res = invoke(*args)
    assert res.exit_code == 2 and words in res.stderr and "Traceback" not in res.output
