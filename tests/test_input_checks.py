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
