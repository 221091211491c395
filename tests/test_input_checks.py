"""Every input held: the embedded Profiler refuses what it cannot measure, records refuse what is not a record."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
import torch.nn as nn

from gonprof.profiler import Profiler
from gonprof.records import STATUSES, ProfileRecord, RecordError, RunRecord, load_records, save_records

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


# ----------------------------------------------------------------------------- the Profiler's arguments


def _model_and_opt() -> tuple[nn.Module, torch.optim.Optimizer]:
    lin = nn.Linear(4, 1)
    return lin, torch.optim.SGD(lin.parameters(), lr=0.1)


@pytest.mark.parametrize(("models", "said"), [
    ({"D": "str"}, "models['D'] is str 'str'; expected a torch.nn.Module"),
    (42, "is int 42; expected a torch.nn.Module"),
    (torch.zeros(3), "is Tensor"),
    ({1: nn.Linear(2, 1)}, "names must be text; got int 1"),
    ([nn.Linear(2, 1), "x"], "models['model1'] is str 'x'"),
])
def test_models_that_are_not_modules_are_a_type_error_saying_what_was_given(models, said):
    with pytest.raises(TypeError) as err:
        Profiler(models=models)
    assert said in _one_line(err.value)


@pytest.mark.parametrize("models", [{}, [], None])
def test_no_models_is_a_value_error(models):
    with pytest.raises(ValueError) as err:
        Profiler(models=models)
    assert "no models to measure" in _one_line(err.value)


def test_optimizers_that_are_not_optimizers_are_a_type_error():
    lin, _ = _model_and_opt()
    with pytest.raises(TypeError) as err:
        Profiler(models={"D": lin}, optimizers={"D": "adam"})
    assert "optimizers['D'] is str 'adam'; expected a torch.optim.Optimizer" in _one_line(err.value)


@pytest.mark.parametrize(("value", "error"), [
    ("3", TypeError), (2.7, TypeError), (3.0, TypeError), (math.nan, TypeError), (True, TypeError),
    (None, TypeError), (-1, ValueError),
])
@pytest.mark.parametrize("argument", ["warmup", "active"])
def test_step_counts_must_be_non_negative_integers(argument, value, error):
    lin, opt = _model_and_opt()
    with pytest.raises(error) as err:
        Profiler(models=lin, optimizers=opt, **{argument: value})
    text = _one_line(err.value)
    assert f"Profiler({argument}=...)" in text and "expected a non-negative integer" in text
    assert repr(value) in text or str(value) in text


def test_numpy_integers_are_counts_too():
    import numpy as np

    lin, opt = _model_and_opt()
    prof = Profiler(models=lin, optimizers=opt, warmup=np.int64(1), active=np.int32(0))
    assert (prof.warmup, prof.active) == (1, 0) and type(prof.active) is int


@pytest.mark.parametrize(("device", "error", "said"), [
    ("tpu", ValueError, "'tpu' is not a device"),
    ("meta", ValueError, "cannot measure on 'meta'"),
    (3.5, TypeError, "got float 3.5"),
])
def test_a_device_it_cannot_use_is_refused(device, error, said):
    lin, opt = _model_and_opt()
    with pytest.raises(error) as err:
        Profiler(models=lin, optimizers=opt, device=device)
    text = _one_line(err.value)
    assert said in text and "expected 'cpu'" in text


def test_cuda_is_refused_where_it_is_not_available_and_taken_where_it_is():
    lin, opt = _model_and_opt()
    if not torch.cuda.is_available():
        for device in ("cuda", "cuda:0", torch.device("cuda", 1)):
            with pytest.raises(ValueError) as err:
                Profiler(models=lin, optimizers=opt, device=device)
            assert "CUDA is not available" in _one_line(err.value)
        return
    assert Profiler(models=lin, optimizers=opt, device="cuda:0").device == "cuda:0"
    with pytest.raises(ValueError) as err:
        Profiler(models=lin, optimizers=opt, device=f"cuda:{torch.cuda.device_count()}")
    assert "CUDA device" in _one_line(err.value)


def test_cpu_is_taken_as_text_or_a_torch_device():
    lin, opt = _model_and_opt()
    assert Profiler(models=lin, optimizers=opt, device="cpu").device == "cpu"
    assert Profiler(models=lin, optimizers=opt, device=torch.device("cpu")).device == "cpu"


def test_step_and_report_outside_the_with_block_raise():
    lin, opt = _model_and_opt()
    prof = Profiler(models=lin, optimizers=opt, warmup=1, active=1)
    with pytest.raises(RuntimeError) as err:
        prof.step()
    assert "before its `with` block" in _one_line(err.value)
    with pytest.raises(RuntimeError) as err:
        prof.report()
    assert "before its `with` block" in _one_line(err.value)
    with prof:
        while not prof.done:
            prof.step()
    assert prof.report().status == "ok"  # after the block, the report is the record
    with pytest.raises(RuntimeError) as err:
        prof.step()
    assert "after its `with` block" in _one_line(err.value)


def _steps(prof: Profiler, lin: nn.Module, opt: torch.optim.Optimizer, n: int) -> None:
    for _ in range(n):
        opt.zero_grad()
        lin(torch.randn(2, 4)).sum().backward()
        opt.step()
        prof.step()


def test_a_report_before_the_measuring_step_ended_is_incomplete_with_a_warning():
    from rich.console import Console

    from gonprof.render import render_record, render_records

    lin, opt = _model_and_opt()
    with Profiler(models=lin, optimizers=opt, warmup=2, active=2) as prof:
        _steps(prof, lin, opt, 1)  # the measuring step is step 1: it has begun, not ended
        inside = prof.report()
    after = prof.report()
    for rec in (inside, after):
        assert rec.status == "incomplete" and "before the measuring step ended" in rec.message
        assert rec.warnings and rec.warnings[0].startswith("incomplete record: the measuring step (step 1)")
        assert rec.flops is None and rec.live_memory is None
    assert "incomplete" in STATUSES
    back = ProfileRecord.from_json(after.to_json())  # the status is a record's own: it loads and renders
    assert back == after
    console = Console(file=io.StringIO(), width=200)
    console.print(render_record(back))
    console.print(render_records([back]))
    text = console.file.getvalue()
    assert "incomplete" in text and "warning: incomplete record" in text


def test_a_loop_that_never_called_step_is_incomplete():
    lin, opt = _model_and_opt()
    with Profiler(models=lin, optimizers=opt, warmup=0, active=3, measure=False) as prof:
        pass
    rec = prof.report()
    assert rec.status == "incomplete" and "before any timed step ended" in rec.message


def test_a_report_after_the_measuring_step_is_ok_and_says_how_many_timed_steps_ran():
    lin, opt = _model_and_opt()
    with Profiler(models=lin, optimizers=opt, warmup=1, active=3) as prof:
        _steps(prof, lin, opt, 2)
    rec = prof.report()
    assert rec.status == "ok" and rec.message == "only 1 of 3 timed steps ran" and rec.flops is not None


def test_a_failed_run_keeps_its_own_status_over_incomplete():
    lin, opt = _model_and_opt()
    prof = Profiler(models=lin, optimizers=opt, warmup=2, active=1)
    with pytest.raises(ValueError):
        with prof:
            raise ValueError("boom")
    assert prof.report().status == "error"


# ----------------------------------------------------------------------------- records from JSON


@pytest.mark.parametrize(("text", "said"), [
    ('{"nonsense": 1}', "keys it does not have ('nonsense')"),
    ('[1, 2]', "the JSON is a list, not an object"),
    ('"ok"', "the JSON is a string"),
    ('{"schema_version": 1, "status": "ok", "x": 2}', "keys it does not have ('x')"),
    ('{"status": "ok"}', "no integer schema_version"),
    ('{"schema_version": "1"}', "no integer schema_version"),
    ('{"schema_version": 1, "status": "fine"}', "malformed ProfileRecord: status must be one of"),
    ('{"schema_version": 1, "models": 3}', "malformed ProfileRecord"),
    ("not json", "not valid JSON"),
])
def test_from_json_of_something_that_is_not_a_record_is_one_record_error(text, said):
    with pytest.raises(RecordError) as err:
        ProfileRecord.from_json(text)
    text_of_error = _one_line(err.value)
    assert said in text_of_error and (text_of_error.startswith("not a ProfileRecord")
                                      or text_of_error.startswith("malformed ProfileRecord"))


def test_from_json_refuses_a_newer_schema_as_a_record_error():
    with pytest.raises(RecordError) as err:
        ProfileRecord.from_json(json.dumps({"schema_version": 99}))
    assert "newer than this gonprof understands" in _one_line(err.value)


def test_from_json_of_every_record_kind_refuses_nonsense():
    from gonprof.records import RECORD_KINDS

    for cls in RECORD_KINDS.values():
        with pytest.raises(RecordError):
            cls.from_json('{"nonsense": 1}')
    for cls in (ProfileRecord, RunRecord):  # what to_json writes still loads
        assert cls.from_json(cls().to_json()) == cls()


def test_a_results_file_whose_records_are_not_records_is_one_record_error(tmp_path):
    path = tmp_path / "r.json"
    save_records([ProfileRecord()], path)
    doc = json.loads(path.read_text())
    doc["records"] = [{"nonsense": 1}]
    path.write_text(json.dumps(doc))
    with pytest.raises(RecordError) as err:
        load_records(path)
    assert "malformed profile record" in _one_line(err.value) and "nonsense" in str(err.value)


# ----------------------------------------------------------------------------- every setting bounded


def _modes():
    from gonprof.modes import list_modes

    return list_modes()


def test_every_numeric_setting_of_every_mode_has_a_finite_readable_range():
    for spec in _modes():
        for name, default in spec.defaults.items():
            rule = spec.param(name)
            if rule.kind in ("int", "float"):
                assert math.isfinite(rule.low) and math.isfinite(rule.high) and rule.low <= rule.high, (spec.name, name)
                assert rule.high <= 1_000_000, (spec.name, name, rule.high)
                assert rule.check(name, default) == default  # the default lies inside
                shown = rule.range_text()
                assert shown.endswith(f"{rule.high:,.0f}" if float(rule.high).is_integer() else f"{rule.high:g}")
                assert "e+" not in shown, shown


@pytest.mark.parametrize(("mode", "name"), [("gan", "d_steps"), ("gan", "g_steps"), ("lsgan", "d_steps"),
                                            ("lsgan", "g_steps"), ("improved-gan", "g_steps"),
                                            ("wgan-gp", "d_steps"), ("dcd", "d_steps")])
def test_update_counts_that_must_be_positive_refuse_zero(mode, name):
    from gonprof.modes import IncompatibleError, get_mode

    with pytest.raises(IncompatibleError) as err:
        get_mode(mode).hparams(**{name: 0})
    assert f"hyper-parameter {name}=0: expected an integer from 1 to 10,000" == _one_line(err.value)


def test_zero_is_kept_where_it_means_something():
    from gonprof.modes import get_mode

    assert get_mode("dcd").hparams(g_steps=0)["g_steps"] == 0  # preset critic-only: the released updater
    assert get_mode("improved-gan").hparams(labels=0)["labels"] == 0  # preset unsupervised: feature matching only
    assert get_mode("gon").hparams(early_stop=0, fakes=0, update_batch=0)["fakes"] == 0


@pytest.mark.parametrize("value", [1e308, 10**400, math.inf, -math.inf, math.nan, 2.5])
@pytest.mark.parametrize(("mode", "name", "expected"), [
    ("wgan-gp", "d_steps", "an integer from 1 to 10,000"),
    ("gon", "inner_steps", "an integer from 1 to 100,000"),
    ("gon", "inner_lr", "a number > 0 and <= 1,000"),
    ("dcd", "noise", "a number from 0 to 10"),
])
def test_huge_non_finite_and_non_whole_values_are_one_line_naming_the_setting_and_its_range(mode, name, expected,
                                                                                             value):
    from gonprof.modes import IncompatibleError, get_mode

    if value == 2.5 and "integer" not in expected:
        assert get_mode(mode).hparams(**{name: value})[name] == 2.5
        return
    with pytest.raises(IncompatibleError) as err:
        get_mode(mode).hparams(**{name: value})
    text = _one_line(err.value)
    assert text.startswith(f"hyper-parameter {name}=") and text.endswith(f"expected {expected}") and len(text) < 120


def test_a_whole_float_for_an_integer_setting_is_taken_as_the_integer():
    from gonprof.modes import get_mode

    hp = get_mode("wgan-gp").hparams(d_steps=3.0)
    assert hp["d_steps"] == 3 and type(hp["d_steps"]) is int


@pytest.mark.parametrize("value", ["1e308", "Infinity", "NaN", "0"])
def test_cli_set_of_an_unbounded_or_zero_count_is_exit_2_in_one_line(value, tmp_path):
    from typer.testing import CliRunner

    from gonprof.cli import app

    res = CliRunner().invoke(app, ["train", "--arch", "mlp-gan", "--mode", "gan", "--steps", "1", "--set",
                                   f"d_steps={value}", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "hyper-parameter d_steps=" in lines[0] and "from 1 to 10,000" in lines[0]
    assert not (tmp_path / "run").exists()


def test_info_mode_prints_each_settings_type_range_and_default():
    from typer.testing import CliRunner

    from gonprof.cli import app

    res = CliRunner().invoke(app, ["info", "--mode", "dcd"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in res.output.splitlines() if line.count("│") >= 5}
    assert rows["d_steps"] == ["int", "from 1 to 10,000", "5"]
    assert rows["temperature"] == ["float", "> 0 and <= 1,000", "1.0"]
    assert rows["g_steps"] == ["int", "from 0 to 10,000", "1"]
    assert rows["langevin"] == ["choice", "pixel | latent", "pixel"]
    res = CliRunner().invoke(app, ["info", "--mode", "gan", "--json"])
    settings = {s["name"]: s for s in json.loads(res.stdout)["settings"]}
    assert settings["d_steps"] == {"name": "d_steps", "type": "int", "range": "from 1 to 10,000", "default": 1}


# ----------------------------------------------------------------------------- CLI numbers at the door


@pytest.mark.parametrize(("args", "said"), [
    (["profile", "--arch", "inception-k8", "--threads", "100000"], "--threads 100000: expected an integer from 1 to"),
    (["profile", "--arch", "inception-k8", "--threads", "0"], "--threads 0: expected an integer from 1 to"),
    (["train", "--arch", "mlp-gan", "--steps", "1", "--threads", "-2"], "--threads -2: expected"),
    (["profile", "--arch", "inception-k8", "--seed", "100000000000000000000000"],
     "--seed <an integer of about 24 digits>: expected an integer from 0 to 2**63-1"),
    (["compare", "gan", "--steps", "1", "--seed", "-1"], "--seed -1: expected an integer from 0 to 2**63-1"),
    (["score", "x.png", "--seed", str(2**63)], "expected an integer from 0 to 2**63-1"),
    (["profile", "--arch", "inception-k8", "--scaling", "--batch-sizes", "0,1"], "batch size 0 is out of range"),
    (["profile", "--arch", "inception-k8", "--scaling", "--batch-sizes", "-4"], "batch size -4 is out of range"),
    (["profile", "--arch", "inception-k8", "--scaling", "--batch-sizes", "8,8"], "names batch size 8 twice"),
    (["profile", "--arch", "inception-k8", "--scaling", "--batch-sizes", "1,,2"], "has an empty item"),
    (["profile", "--arch", "inception-k8", "--scaling", "--batch-sizes", "1,x"], "expected integers from 1 to"),
    (["train", "--arch", "mlp-gan", "--steps", "1", "--classes", "0,,1"], "--classes '0,,1' has an empty item"),
    (["compare", "gan", "--steps", "1", "--classes", "0,"], "--classes '0,' has an empty item"),
    (["train", "--arch", "improved-gan-mlp", "--mode", "improved-gan", "--steps", "1", "--labels", "70000"],
     "hyper-parameter labels=70000: expected an integer from 0 to 60,000"),
    (["profile", "--arch", "mlp-gan", "--set", "d_steps=" + "1" * 5000], "hyper-parameter d_steps='1111"),
])
def test_cli_numbers_are_checked_at_the_door_in_one_line_exit_2(args, said, tmp_path):
    from typer.testing import CliRunner

    from gonprof.cli import app

    out = ["--out", str(tmp_path / "out")] if args[0] in ("train", "compare") else []
    res = CliRunner().invoke(app, args + out)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], res.output
    assert not (tmp_path / "out").exists()


def test_threads_up_to_four_per_core_are_taken():
    import os

    from gonprof.cli import threads_problem

    limit = 4 * (os.cpu_count() or 1)
    assert threads_problem(limit) == "" and threads_problem(1) == "" and threads_problem(None) == ""
    assert threads_problem(limit + 1).startswith(f"--threads {limit + 1}: expected an integer from 1 to {limit:,}")


# ----------------------------------------------------------------------------- on-class needs confidence


def test_an_unsure_argmax_is_not_on_class():
    from gonprof.metrics.scores import ON_CLASS_CONFIDENCE, class_stats

    assert ON_CLASS_CONFIDENCE == 0.9
    unsure = torch.zeros(4, 10)
    unsure[:, 0] = 0.1  # argmax 0, read at about 0.11
    sure = torch.full((4, 10), -20.0)
    sure[:, 0] = 20.0
    s = class_stats(torch.cat([unsure, sure]), classes=[0])
    assert s["on_class_fraction"] == 0.5 and s["on_class_confidence"] == 0.9
    assert s["predicted_classes"] == {"0": 8}  # the argmax counts are unchanged
    assert s["class_coverage"] == 1.0
    assert class_stats(unsure, classes=[0], confidence=0.1)["on_class_fraction"] == 1.0
    assert class_stats(sure)["on_class_fraction"] is None and class_stats(sure)["on_class_confidence"] is None


@pytest.fixture(scope="module")
def classifier():
    from gonprof.metrics.classifier import load_classifier

    return load_classifier()


def _noise_grids() -> dict[str, torch.Tensor]:
    from gonprof.metrics import corruptions as C

    g = torch.Generator().manual_seed(0)
    return {
        "uniform noise": torch.rand(256, 1, 28, 28, generator=g) * 2 - 1,
        "salt-and-pepper on grey": C.salt_and_pepper(torch.zeros(256, 1, 28, 28), 0.5, seed=1),
        "salt-and-pepper everywhere": C.salt_and_pepper(torch.zeros(256, 1, 28, 28), 1.0, seed=2),
        "sparse salt on black": torch.where(torch.rand(256, 1, 28, 28, generator=g) < 0.1, 1.0, -1.0),
        "Gaussian texture": (0.5 * torch.randn(256, 1, 28, 28, generator=g)).clamp(-1, 1),
    }


def test_noise_and_texture_grids_are_never_on_class_whatever_class_is_kept(classifier):
    from gonprof.metrics.scores import class_stats, extract

    for name, grid in _noise_grids().items():
        _, logits = extract(classifier, grid)
        for k in range(10):
            assert class_stats(logits, classes=[k])["on_class_fraction"] == 0.0, (name, k)
        assert class_stats(logits, classes=list(range(10)))["on_class_fraction"] == 0.0, name


def test_real_mnist_digits_stay_on_class(classifier):
    from gonprof.metrics.classifier import reference_split
    from gonprof.metrics.scores import class_stats, extract

    _, held = reference_split()  # the 5,000 held-out digits of the embedded MNIST test split
    _, logits = extract(classifier, held.images)
    assert class_stats(logits, classes=list(range(10)))["on_class_fraction"] >= 0.98  # measured 0.987
    for k in range(10):
        mine = held.labels == k
        assert class_stats(logits[mine], classes=[k])["on_class_fraction"] >= 0.95, k  # measured 0.967 to 0.997


def test_a_scored_noise_grid_records_zero_on_class_and_the_threshold(classifier):
    from gonprof.metrics.scores import score_with_floor

    noise = _noise_grids()["salt-and-pepper on grey"][:120]
    q, floor = score_with_floor(noise, classes=[0], n=60, classifier=classifier)
    assert q.on_class_fraction == 0.0 and q.on_class_confidence == 0.9
    assert floor.on_class_fraction >= 0.95  # the real zeros beside it


def test_the_api_holds_threads_and_seeds_to_the_clis_rules(tmp_path):
    import gonprof
    from gonprof import api

    with pytest.raises(gonprof.RequestError, match="--threads 100000: expected an integer from 1 to"):
        api.train(arch="mlp-gan", mode="gan", steps=1, data="synthetic", threads=100000, out=str(tmp_path / "t"))
    with pytest.raises(gonprof.RequestError, match="--seed -1: expected an integer from 0 to 2\\*\\*63-1"):
        api.profile(gonprof.StepSpec("inception-k8", seed=-1))
    assert not (tmp_path / "t").exists()
