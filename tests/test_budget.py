"""Batch-size search, scaling fits, byte parsing and the budget records (gonprof.budget)."""

from __future__ import annotations

import json

import pytest

from gonprof.budget import (
    BatchTrial,
    classify,
    fit_batch,
    least_squares,
    parse_bytes,
    run_trial,
    scaling,
    search_batch,
    trial_from_outcome,
)
from gonprof.records import FitRecord, ScalingRecord, load_records, save_records
from gonprof.request import StepSpec

GiB = 2**30


def _trial(peak_fn, calls=None, die=()):
    def trial(b):
        if calls is not None:
            calls.append(b)
        if b in die:
            return BatchTrial(batch_size=b, status="killed", message="killed by SIGKILL")
        return BatchTrial(batch_size=b, status="measured", peak_bytes=peak_fn(b), step_time_s=0.001 * b)
    return trial


# -- parse_bytes --------------------------------------------------------------------------

@pytest.mark.parametrize("text,n", [
    ("4GiB", 4 * GiB), ("4 GiB", 4 * GiB), ("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1MB", 10**6),
    ("3KiB", 3072), ("3KB", 3000), ("100B", 100), ("100", 100), ("1.5GiB", 3 * 2**29), ("4gib", 4 * GiB),
    (1024, 1024),
])
def test_parse_bytes(text, n):
    assert parse_bytes(text) == n


@pytest.mark.parametrize("text", ["4 apples", "GiB", "", "-1GiB", "0", "4TiBB", True])
def test_parse_bytes_rejects_with_one_line(text):
    with pytest.raises(ValueError) as e:
        parse_bytes(text)
    assert "\n" not in str(e.value)


# -- the search ---------------------------------------------------------------------------

@pytest.mark.parametrize("width", [1, 2, 5])
@pytest.mark.parametrize("budget", [1, 40, 103, 1000, 9999, 123457])
@pytest.mark.parametrize("start", [None, 1, 3, 64, 5000])
def test_search_is_exact_on_a_monotone_peak(budget, start, width):
    peak = lambda b: 100 + 7 * b + (b * b) // 50  # noqa: E731 - monotone, not linear
    answer, first_bad, trials, status, _ = search_batch(_trial(peak), budget, 65536, start=start, width=width)
    fits = [b for b in range(0, 70000) if peak(b) <= budget]
    expected = max(fits) if fits else 0
    assert status == ("ok" if expected else "none-fits")  # nothing fitting is a failure (gonprof fit exits 1)
    assert answer == expected
    if expected:
        assert peak(answer) <= budget < peak(answer + 1)
    assert first_bad == answer + 1
    assert len({t.batch_size for t in trials}) == len(trials)  # no size tried twice


def _rounds(peak, log):
    """A round runner that runs its sizes (largest first, as parallel trials may finish) and logs each round."""
    def rounds(sizes, finished):
        log.append(list(sizes))
        for b in sorted(sizes, reverse=True):
            finished(BatchTrial(batch_size=b, status="measured", peak_bytes=peak(b)))
    return rounds


def test_rounds_of_two_settle_a_right_guess_in_one_round():
    log = []
    answer, first_bad, trials, status, _ = search_batch(None, 500, 65536, start=50, width=2,
                                                        rounds=_rounds(lambda b: 10 * b, log))
    assert (answer, first_bad, status) == (50, 51, "ok")
    assert log == [[50, 51]]  # the guess and the size above it, at once
    assert [t.batch_size for t in trials] == [51, 50]  # in the order they finished


def test_rounds_cut_the_interval_into_width_plus_one_parts():
    # width 3, peak 10 b in 250: 1, 2, 4 fit; 8, 16 fit and 32 does not; (16, 32) cut at 20, 24, 28; then (24, 28)
    log = []
    answer, first_bad, _, status, _ = search_batch(None, 250, 65536, width=3, rounds=_rounds(lambda b: 10 * b, log))
    assert (answer, first_bad, status) == (25, 26, "ok")
    assert log == [[1, 2, 4], [8, 16, 32], [20, 24, 28], [25, 26, 27]]
    one = []
    search_batch(_trial(lambda b: 10 * b, one), 250, 65536)
    assert len(one) == 10 > len(log)  # one at a time: ten rounds of one


def test_ctrl_c_ends_a_search_with_the_finished_trials():
    calls = []

    def trial(b):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(b)
        return BatchTrial(batch_size=b, status="measured", peak_bytes=b)

    rec = fit_batch(StepSpec("x", "y"), memory_bytes=1000, trial=trial, max_batch=1000)
    assert rec.status == "interrupted" and rec.batch_size is None and "2 finished trials" in rec.message
    assert [t.batch_size for t in rec.trials] == [1, 2]


def test_ctrl_c_keeps_and_fits_the_finished_scaling_points():
    def trial(b):
        if b == 4:
            raise KeyboardInterrupt
        return BatchTrial(batch_size=b, status="measured", peak_bytes=100 + 10 * b, step_time_s=0.001 * b)

    sc = scaling(StepSpec("x", "y"), batch_sizes=(1, 2, 4), trial=trial)
    assert sc.status == "interrupted" and "after 2 of 3 points" in sc.message
    assert [p.batch_size for p in sc.points] == [1, 2]
    assert sc.memory_fit.intercept == pytest.approx(100) and sc.memory_fit.slope == pytest.approx(10)


def test_search_stops_at_max_batch():
    answer, first_bad, trials, status, msg = search_batch(_trial(lambda b: b), 10**9, 100)
    assert (answer, first_bad, status) == (100, None, "ok")
    assert "max_batch" in msg
    assert [t.batch_size for t in trials] == [1, 2, 4, 8, 16, 32, 64, 100]


def test_killed_and_oom_trials_count_as_too_big():
    calls = []
    # sizes >= 24 die (as if the OOM killer took them); the peak itself would have fitted
    trial = _trial(lambda b: b, calls, die=set(range(24, 100)))
    answer, first_bad, trials, status, _ = search_batch(trial, 10**9, 1000)
    assert (answer, first_bad, status) == (23, 24, "ok")
    assert {t.status for t in trials} == {"fits", "killed"}


def test_error_stops_the_search_and_too_small_is_skipped():
    def trial(b):
        if b == 1:
            return BatchTrial(batch_size=1, status="error",
                              message="ValueError: Expected more than 1 value per channel when training")
        if b == 8:
            return BatchTrial(batch_size=8, status="error", message="RuntimeError: boom")
        return BatchTrial(batch_size=b, status="measured", peak_bytes=b)
    answer, first_bad, trials, status, msg = search_batch(trial, 100, 1000)
    assert status == "error" and answer is None and "boom" in msg
    assert [t.status for t in trials] == ["too-small", "fits", "fits", "error"]


def test_classify():
    t = BatchTrial(batch_size=2, status="measured", peak_bytes=100)
    assert classify(t, 100).status == "fits"
    assert classify(t, 99).status == "too-big"
    assert classify(BatchTrial(batch_size=2, status="oom"), 99).status == "oom"


def test_trial_from_a_worker_outcome():
    from gonprof.isolation import Outcome

    ok = Outcome(result={"status": "measured", "peak_live_bytes": 10, "input_bytes": 5, "step_time_s": 0.1},
                 returncode=0, tail="", wall_s=1.0)
    t = trial_from_outcome(3, ok)
    assert (t.status, t.peak_bytes, t.peak_live_bytes) == ("measured", 15, 10)  # live + input on the CPU
    read = Outcome(result={"status": "measured", "peak_live_bytes": 10, "peak_live_external_bytes": 3,
                           "input_bytes": 5, "step_time_s": 0.1}, returncode=0, tail="", wall_s=1.0)
    assert trial_from_outcome(3, read).peak_bytes == 10 - 3 + 5  # the batch once, not the part read twice
    killed = trial_from_outcome(3, Outcome(result=None, returncode=-9, tail="", wall_s=1.0))
    assert killed.status == "killed" and "SIGKILL" in killed.message
    failed = trial_from_outcome(3, Outcome(result=None, returncode=1, tail="RuntimeError: x", wall_s=1.0))
    assert failed.status == "error" and "RuntimeError: x" in failed.message
    cuda = Outcome(result={"status": "measured", "peak_live_bytes": 10, "input_bytes": 5,
                           "cuda_max_memory_allocated_bytes": 2048}, returncode=0, tail="", wall_s=1.0)
    assert trial_from_outcome(3, cuda, device="cuda").peak_bytes == 2048


def test_a_trial_process_that_is_killed_does_not_crash_the_caller():
    # a real worker process, capped at 1 MiB of RSS growth: it must report "killed"
    t = run_trial(StepSpec("gon-mnist-mlp", "gon", batch_size=64, hparams={"inner_steps": 2}), cap_bytes=2**20,
                  time_steps=0)
    assert t.status == "killed", t
    assert t.batch_size == 64


def test_measured_trial_in_a_subprocess():
    t = run_trial(StepSpec("gon-mnist-mlp", "gon", batch_size=8, hparams={"inner_steps": 2}), steps=2, time_steps=1)
    assert t.status == "measured", t.message
    # the whole batch in place of the part of it the step read (external)
    assert t.peak_live_external_bytes == 8 * 784 * 4  # the images; the labels are never read
    assert t.peak_bytes == t.peak_live_bytes - t.peak_live_external_bytes + t.input_bytes
    assert t.input_bytes == 8 * (784 * 4 + 8)
    assert t.peak_rss_delta_bytes is not None and t.step_time_s > 0


# -- fit_batch ----------------------------------------------------------------------------

def test_fit_batch_with_estimates():
    budget = 14 * 2**20
    # fresh-noise chains: the 3 MiB replay buffer of the default would leave no batch under this budget
    rec = fit_batch(StepSpec("gon-mnist-mlp", "gon", hparams={"inner_steps": 2, "init": "noise"}),
                    memory_bytes=budget, estimate=True, max_batch=512, steps=1)
    assert rec.status == "ok", rec.message
    b = rec.batch_size
    assert b and rec.first_too_big == b + 1
    assert rec.trial(b).peak_bytes <= budget < rec.trial(b + 1).peak_bytes
    assert "estimated" in rec.compared
    back = FitRecord.from_json(rec.to_json())
    assert back == rec


def test_fit_batch_cuda_estimate_without_gpu():
    rec = fit_batch(StepSpec("gon-mnist-mlp", "gon", device="cuda", hparams={"inner_steps": 2, "init": "noise"}),
                    memory_bytes="16MiB",
                    estimate=True, max_batch=256, steps=1)
    assert rec.status == "ok" and rec.batch_size > 1, rec.message
    assert rec.trial(rec.batch_size).cuda_max_memory_allocated_bytes <= 16 * 2**20
    assert "max_memory_allocated" in rec.compared


def test_fit_batch_with_injected_trials_and_string_budget():
    rec = fit_batch(StepSpec("x", "y"), memory_bytes="1KiB", trial=_trial(lambda b: 10 * b), max_batch=10**6)
    assert rec.batch_size == 102 and rec.first_too_big == 103


# -- scaling ------------------------------------------------------------------------------

def test_least_squares_recovers_exact_coefficients():
    xs = [1, 2, 4, 8, 16, 32]
    fit = least_squares(xs, [1000 + 250 * x for x in xs])
    assert fit.intercept == pytest.approx(1000, abs=1e-9)
    assert fit.slope == pytest.approx(250, abs=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n == 6
    # hand-computed: points (0, 1), (1, 3), (2, 2): slope 0.5, intercept 1.5, R^2 = 1 - 1.5/2 = 0.25
    f = least_squares([0, 1, 2], [1, 3, 2])
    assert (f.slope, f.intercept) == (pytest.approx(0.5), pytest.approx(1.5))
    assert f.r2 == pytest.approx(0.25)
    assert least_squares([3], [5]).slope == 0.0


def test_scaling_with_injected_trials():
    rec = scaling(StepSpec("x", "y"), batch_sizes=(1, 2, 4, 8), trial=_trial(lambda b: 5000 + 300 * b))
    assert rec.memory_fit.intercept == pytest.approx(5000)
    assert rec.memory_fit.slope == pytest.approx(300)
    assert rec.time_fit.slope == pytest.approx(0.001)
    assert ScalingRecord.from_json(rec.to_json()) == rec


def test_scaling_estimate_gon_vs_lsgan():
    g = scaling(StepSpec("gon-mnist-mlp", "gon", hparams={"inner_steps": 2}), batch_sizes=(8, 16, 32), estimate=True)
    assert g.status == "ok" and g.time_fit is None
    assert g.memory_fit.slope > 0 and g.memory_fit.r2 > 0.99


def test_records_round_trip_through_files(tmp_path):
    fit = fit_batch(StepSpec("x", "y"), memory_bytes=1000, trial=_trial(lambda b: 10 * b), max_batch=1000)
    sc = scaling(StepSpec("x", "y"), batch_sizes=(1, 2), trial=_trial(lambda b: b))
    save_records([fit], tmp_path / "fit.json")
    save_records([sc], tmp_path / "sc.json")
    assert load_records(tmp_path / "fit.json") == [fit]
    assert load_records(tmp_path / "sc.json") == [sc]
    assert json.loads((tmp_path / "fit.json").read_text())["kind"] == "fit"


def test_render_any_dispatches_on_record_type():
    from rich.console import Console

    from gonprof.render import render_any

    fit = fit_batch(StepSpec("x", "y"), memory_bytes=1000, trial=_trial(lambda b: 10 * b), max_batch=1000)
    sc = scaling(StepSpec("x", "y"), batch_sizes=(1, 2, 4), trial=_trial(lambda b: 100 + b))
    console = Console(record=True, width=200)
    for r in ([fit], [sc]):
        console.print(render_any(r))
    text = console.export_text()
    assert "largest batch" in text and "per sample" in text


@pytest.mark.slow
def test_done_criterion_inception_k32_lsgan_in_2gib():
    # issue 7: the answer's measured peak is within the budget, the next size up's is not
    rec = fit_batch(StepSpec("inception-k32", "lsgan"), memory_bytes="2GiB", time_steps=0)
    assert rec.status == "ok", rec.message
    b = rec.batch_size
    assert rec.trial(b).peak_bytes <= 2 * GiB < rec.trial(b + 1).peak_bytes


# -- the trials' memory caps: never below the budget because trials run side by side -----------------------

MiB = 2**20


def test_local_width_lowers_the_trials_at_once_until_each_cap_holds_the_budget(monkeypatch):
    import gonprof.budget as bud
    from gonprof.records import RequestError

    monkeypatch.setattr(bud.trials, "available_bytes", lambda: 1000 * MiB)  # 80 %: 800 MiB for the trials
    assert bud.local_width(16 * MiB, 2) == (2, 2 * 16 * MiB + 256 * MiB)  # 288 MiB each: 2 fit in 800
    assert bud.local_width(300 * MiB, 2) == (1, 800 * MiB)  # two would get 400 MiB each < 300 + 256
    assert bud.local_width(300 * MiB, 1) == (1, 800 * MiB)
    with pytest.raises(RequestError) as e:
        bud.local_width(600 * MiB, 2)  # 600 + 256 MiB > 800 MiB even alone
    assert "\n" not in str(e.value) and "free memory or ask for a smaller budget" in str(e.value)


def test_a_fit_with_two_jobs_and_little_memory_runs_its_trials_one_at_a_time(monkeypatch):
    import gonprof.budget as bud
    from gonprof.executors import Placement

    monkeypatch.setattr(bud.trials, "available_bytes", lambda: 1000 * MiB)
    import gonprof.executors as ex

    monkeypatch.setattr(ex, "core_slots", lambda jobs, cores=None: [[k] for k in range(jobs)])
    rounds_seen, caps = [], []

    def measured_rounds(session, spec_of, device="cpu", timeout_s=None):
        def rounds(sizes, finished):
            rounds_seen.append(list(sizes))
            for b in sizes:
                caps.append(spec_of(b)["cap_bytes"])
                finished(BatchTrial(batch_size=b, status="measured", peak_bytes=MiB * b))
        return rounds

    monkeypatch.setattr(bud, "measured_rounds", measured_rounds)
    rec = fit_batch(StepSpec("gon-mnist-mlp"), memory_bytes=300 * MiB, placement=Placement(jobs=2))
    assert rec.status == "ok" and rec.batch_size == 300
    assert all(len(r) == 1 for r in rounds_seen) and set(caps) == {800 * MiB}  # alone, with all 800 MiB
    assert any("1 trials at once, not 2" in n for n in rec.notes)
    assert not any("below the budget" in n for n in rec.notes)
    # a cap the caller set below the budget is noted
    rec = fit_batch(StepSpec("gon-mnist-mlp"), memory_bytes=300 * MiB, cap_bytes=100 * MiB,
                    placement=Placement(jobs=2))
    assert any("the answer may be below the true one" in n for n in rec.notes)
