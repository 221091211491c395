"""``gonprof compare`` / ``gonprof report``: planning, the Pareto front, running rows, failures, the CLI.

Budgets are tiny (2 training steps, 1 profiled step, N=50 scored samples), so
the figures mean nothing; the tests check the plumbing.  Most rows run in this
process (``Placement("inline")``); one test goes through the worker subprocesses
(the local executor, :mod:`gonprof.executors`) with a memory cap that makes a row fail out of memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gonprof import comparison as cmp
from gonprof import render
from gonprof.cli import app
from gonprof.comparison import PRESETS, CompareEvents, RunSpec, compare, plan
from gonprof.executors import Placement
from gonprof.isolation import last_line
from gonprof.modes.base import IncompatibleError
from gonprof.plots import compare_plot
from gonprof.records import (
    LiveMemory,
    ProfileRecord,
    QualityRecord,
    RunRecord,
    load_records,
    looks_oom,
    pareto_front,
    save_records,
)
from gonprof.registry import RegistryError

INLINE = Placement("inline")  # rows in this process
N = 50  # samples scored per row; the floor row uses the same N
TINY = dict(steps=2, n_samples=N, profile_steps=1)
K8 = RunSpec.of(mode="lsgan", arch="inception-k8", batch_size=8, hparams={"g_steps": 1}, **TINY)
GON = RunSpec.of(mode="gon", arch="gon-mnist-mlp", batch_size=8, hparams={"inner_steps": 3}, **TINY)
GAN = RunSpec.of(mode="gan", arch="mlp-gan", batch_size=16, **TINY)

INCEPTION_K8_PARAMS = 13_857
GAS_GENERATOR_PARAMS = 1_658_657


def text_of(renderable) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message


# -- plan ---------------------------------------------------------------------------


def test_plan_uses_each_modes_default_discriminator():
    specs = plan(["gon", "lsgan"])
    assert [(s.mode, s.arch, s.kind) for s in specs] == [("gon", "gon-mnist-mlp", "run"),
                                                         ("lsgan", "lsgan-original", "run")]


def test_plan_defaults_to_a_time_budget_when_no_steps():
    [spec] = plan(["gan"])
    assert spec.steps is None and spec.time_budget_s == cmp.DEFAULT_TIME_BUDGET_S == 120.0
    [spec] = plan(["gan"], steps=7)
    assert spec.steps == 7 and spec.time_budget_s is None
    [spec] = plan(["gan"], time_budget_s=3.0)
    assert spec.steps is None and spec.time_budget_s == 3.0


def test_plan_passes_common_fields_and_ignores_none():
    [spec] = plan(["gan"], steps=3, batch_size=16, seed=4, n_samples=N, profile_steps=1, data=None,
                  memory_limit_bytes=None)
    assert (spec.steps, spec.step.batch_size, spec.step.seed, spec.n_samples, spec.profile_steps) == (3, 16, 4, N, 1)
    assert spec.step.data is None and spec.memory_limit_bytes is None


def test_plan_refuses_a_setting_no_row_has():
    # a misspelt or misplaced keyword (say, an event callback) must not be dropped silently
    with pytest.raises(TypeError, match="not_a_field"):
        plan(["gan"], steps=3, not_a_field="x")


def test_plan_expands_globs_in_natural_order():
    specs = plan(["lsgan"], ["inception-k*"])
    assert [(s.mode, s.arch) for s in specs] == [("lsgan", "inception-k8"), ("lsgan", "inception-k16"),
                                                 ("lsgan", "inception-k32")]


def test_plan_filters_incompatible_pairs():
    # improved-gan takes only logits[*] discriminators; gan takes score / logits[2].
    specs = plan(["gan", "improved-gan"], ["mlp-gan", "improved-gan-mlp"])
    assert [(s.mode, s.arch) for s in specs] == [("gan", "mlp-gan"), ("improved-gan", "improved-gan-mlp")]


@pytest.mark.parametrize("modes, archs", [(["gan"], ["improved-gan-mlp"]),  # gan cannot train logits[10]
                                          (["lsgan"], ["gas-generator"])])  # a generator is no discriminator
def test_plan_rejects_a_pair_no_mode_accepts(modes, archs):
    with pytest.raises(IncompatibleError) as info:
        plan(modes, archs)
    msg = str(info.value)
    assert one_line(msg) and archs[0] in msg and modes[0] in msg


def test_plan_needs_a_mode_or_a_preset():
    with pytest.raises(IncompatibleError) as info:
        plan([])
    assert one_line(str(info.value)) and "preset" in str(info.value)


def test_plan_unknown_mode_and_arch_suggest_names():
    with pytest.raises(RegistryError) as info:
        plan(["lsgen"])
    assert one_line(str(info.value)) and "did you mean lsgan" in str(info.value)
    with pytest.raises(RegistryError) as info:
        plan(["lsgan"], ["inception-k9"])
    assert one_line(str(info.value)) and "did you mean" in str(info.value) and "inception-k8" in str(info.value)
    with pytest.raises(RegistryError):
        plan(["lsgan"], ["nothing-matches-*"])  # an empty glob is an error too


def test_plan_unknown_preset_names_the_presets():
    with pytest.raises(IncompatibleError) as info:
        plan([], preset="gsa")
    msg = str(info.value)
    assert one_line(msg) and "gsa" in msg and "gas" in msg and "gon-vs-gan" in msg


def test_preset_gas():
    specs = plan([], preset="gas")
    assert len(specs) == 6 and {s.mode for s in specs} == {"lsgan"}
    assert [s.arch for s in specs] == [a for _, a in PRESETS["gas"]["pairs"]]
    assert {"lsgan-original", "inception-k8", "inception-k16", "inception-k32"} <= {s.arch for s in specs}
    assert all(s.steps == 2000 and s.step.batch_size == 32 for s in specs)
    # explicit settings win over the preset's
    assert {(s.steps, s.step.batch_size) for s in plan([], preset="gas", steps=3, batch_size=4)} == {(3, 4)}


def test_preset_gon_vs_gan():
    specs = plan([], preset="gon-vs-gan")
    assert [(s.mode, s.arch) for s in specs] == [("gon", "gon-mnist-conv"), ("gon", "gon-mnist-mlp"),
                                                 ("gan", "mlp-gan"), ("lsgan", "lsgan-original")]
    assert all(s.time_budget_s == 120.0 and s.steps is None for s in specs)
    assert [s.mode for s in plan(["gon"], preset="gon-vs-gan")] == ["gon", "gon"]  # modes filter a preset


def test_preset_filtered_to_nothing_is_an_error():
    with pytest.raises(IncompatibleError):
        plan(["gan"], preset="gas")


def test_preset_with_unknown_mode_suggests():
    with pytest.raises(RegistryError):
        plan(["lsgen"], preset="gas")


def test_runspec_round_trips_and_labels():
    spec = dataclasses.replace(GON, memory_limit_bytes=123, run_dir="x")
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.label == "gon / gon-mnist-mlp" and RunSpec(kind="floor").label == "real (floor)"


# -- the Pareto front on hand-made rows -------------------------------------------------


def _quality(fid: float) -> QualityRecord:
    return QualityRecord(fid=fid, kid_mean=0.0, kid_std=0.0, precision=0.5, recall=0.5, density=0.5, coverage=0.5,
                         class_coverage=1.0, class_entropy_nats=2.3, mean_confidence=0.9, classifier_score=9.0,
                         n_samples=N, n_reference=N)


def _row(mem, fid, *, kind="run", status="ok", arch="a") -> RunRecord:
    profile = None
    if mem is not None:
        profile = ProfileRecord(live_memory=LiveMemory(
            peak_live_bytes=mem, peak_live_param_bytes=0, peak_live_buffer_bytes=0, peak_live_grad_bytes=0,
            peak_live_optimizer_state_bytes=0, peak_live_activation_bytes=mem, start_live_bytes=0,
            end_live_bytes=0, allocated_bytes=mem))
    return RunRecord(kind=kind, status=status, mode="lsgan", arch=arch, profile=profile,
                     quality=_quality(fid) if fid is not None else None)


def test_pareto_front_exact_set():
    rows = [
        _row(None, 0.1, kind="floor"),   # 0 floor: never ranked, however good
        _row(100, 50.0),                 # 1 front: least memory
        _row(200, 40.0),                 # 2 front
        _row(300, 45.0),                 # 3 dominated by 2
        _row(400, 10.0),                 # 4 front: best FID
        _row(400, 10.0),                 # 5 front: a tie dominates neither
        _row(100, 60.0),                 # 6 dominated by 1 (same memory, worse FID)
        _row(500, 10.0),                 # 7 dominated by 4 (same FID, more memory)
        _row(10, 1.0, status="oom"),     # 8 failed: not ranked
        _row(None, 1.0),                 # 9 no profile: not ranked
        _row(10, None),                  # 10 no quality: not ranked
    ]
    assert pareto_front(rows) == {1, 2, 4, 5}
    assert pareto_front([]) == set()
    assert pareto_front([_row(7, 7.0)]) == {0}


def test_pareto_front_ignores_nan_fid():
    assert pareto_front([_row(100, 50.0), _row(200, float("nan"))]) == {0}


def test_compare_table_renders_failed_and_hand_made_rows():
    rows = [_row(None, 0.5, kind="floor"), _row(100, 50.0, arch="small"), _row(200, 40.0, arch="big"),
            RunRecord(mode="gon", arch="gon-mnist-conv", status="oom", message="training: out of memory")]
    text = text_of(render.compare_table(rows))
    assert "lsgan / small * (base)" in text and "lsgan / big *" in text
    assert "oom: training: out of memory" in text and f"N={N}" in text


# -- running rows in this process ----------------------------------------------------------


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """floor, lsgan/inception-k8, a row whose data folder does not exist, gon/gon-mnist-mlp; in this process."""
    out = tmp_path_factory.mktemp("compare")
    json_path = out / "nested" / "r.json"
    bad = GAN.replace(data=str(out / "no-such-folder"))
    started, saved = [], []

    def on_row(rec):  # the results file holds every row finished so far, this one included
        saved.append([(r.kind, r.mode, r.arch, r.status) for r in load_records(json_path)])

    events = CompareEvents(on_start=lambda i, n, spec: started.append((i, n, spec)), on_row=on_row)
    rows = compare([K8, bad, GON], out=out, json_path=json_path, placement=INLINE, events=events)
    return rows, out, json_path, started, saved


def test_compare_floor_row_first_at_the_same_n(compared):
    rows, *_ = compared
    floor = rows[0]
    assert floor.kind == "floor" and floor.status == "ok" and floor.label == "real (floor)"
    assert floor.quality is not None and floor.quality.n_samples == N and floor.profile is None
    assert math.isfinite(floor.quality.fid)
    assert [r.kind for r in rows] == ["floor", "run", "run", "run"]


def test_compare_rows_are_measured(compared):
    rows, *_ = compared
    k8, gon = rows[1], rows[3]
    for rec, spec in ((k8, K8), (gon, GON)):
        assert rec.status == "ok", rec.message
        assert (rec.mode, rec.arch) == (spec.mode, spec.arch)
        assert rec.train_steps == 2 and rec.batch_size == spec.step.batch_size
        assert rec.profile is not None and rec.profile.status == "ok" and rec.profile.flops_per_step > 0
        assert rec.profile.peak_live_bytes > 0 and rec.profile.timed_steps == 1
        assert rec.quality is not None and rec.quality.n_samples == N and math.isfinite(rec.quality.fid)
        assert rec.samples_png and Path(rec.samples_png).is_file()
        assert rec.wall_time_s > 0
    assert k8.d_params == INCEPTION_K8_PARAMS
    assert k8.generator == "gas-generator" and k8.g_params == GAS_GENERATOR_PARAMS
    # gon-mnist-mlp: 784*512+512 + 512*256+256 + 256*128+128 + 128*128+128 + 128*2+2 = 582,914; GON has no G
    assert gon.d_params == 582_914 and gon.g_params is None
    # GON's inner loop: 3 iterations a step (no early stop that soon), 8 chains a step (fakes 0: the batch)
    assert gon.inner_iters_per_step == 3.0 and gon.chains_per_step == 8
    assert k8.inner_iters_per_step is None and k8.chains_per_step is None


def test_compare_failed_row_is_a_record_and_later_rows_run(compared):
    rows, *_ = compared
    bad = rows[2]
    assert bad.status == "error" and one_line(bad.message) and "no-such-folder" in bad.message
    assert bad.quality is None and bad.profile is None
    assert rows[3].status == "ok"


def test_compare_rewrites_json_after_each_row_and_reports_progress(compared):
    rows, out, json_path, started, saved = compared
    assert [len(s) for s in saved] == [1, 2, 3, 4]
    assert saved[-1] == [(r.kind, r.mode, r.arch, r.status) for r in rows]
    assert [(i, n) for i, n, _ in started] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert started[0][2].kind == "floor" and started[0][2].n_samples == N
    assert started[1][2].run_dir == str(out / "01-lsgan-inception-k8" / "run")  # one folder per row
    assert not (out / "results.json").exists()  # --json chose another place


def test_results_json_loads_back_and_rerenders(compared):
    rows, _, json_path, *_ = compared
    back = load_records(json_path)
    assert back == rows
    assert json.loads(json_path.read_text())["kind"] == "compare"
    text = text_of(render.render_any(back))
    assert "gonprof compare: cost of one optimization step" in text
    assert "gonprof compare: quality of the samples" in text
    for label in ("real (floor)", "lsgan / inception-k8", "gan / mlp-gan", "gon / gon-mnist-mlp"):
        assert label in text
    assert "13,857" in text and "1,658,657" in text and "(base)" in text and f"N={N}" in text
    assert "error: " in text  # the failed row's status and message


def test_grid_image_puts_sample_grids_side_by_side(compared, tmp_path):
    from PIL import Image

    rows, *_ = compared
    path = cmp.grid_image(rows, tmp_path / "grid.png")
    widths = [Image.open(r.samples_png).width for r in rows if r.samples_png]
    assert len(widths) == 2
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width == sum(widths) + 8
    assert cmp.grid_image([rows[0], rows[2]], tmp_path / "none.png") is None  # no grids: no file


def test_plot_writes_a_png(compared, tmp_path):
    pytest.importorskip("matplotlib")
    rows, *_ = compared
    path = compare_plot(rows, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_spec_floor_in_process():
    rec = cmp.run_spec(RunSpec.of(kind="floor", n_samples=N, seed=1))
    assert rec.kind == "floor" and rec.status == "ok" and rec.quality.n_samples == N and rec.seed == 1


# -- the worker subprocesses: out of memory is a row, not a crash ----------------------------------


def test_isolated_out_of_memory_row_then_an_ok_row(tmp_path):
    # At batch 5000 (all of the embedded split's training images) lsgan-original's first conv output alone is
    # 5000 x 32 x 28 x 28 float32 = 0.5 GB (its D and G hold more): one step cannot fit under a 1.5 GiB
    # RLIMIT_DATA, and the allocator fails with "can't allocate memory".
    oom = RunSpec.of(mode="lsgan", arch="lsgan-original", batch_size=5_000, memory_limit_bytes=int(1.5 * 2**30), **TINY)
    rows = compare([oom, GAN], out=tmp_path, floor=False)
    assert [r.status for r in rows] == ["oom", "ok"], [r.message for r in rows]
    msg = rows[0].message
    assert one_line(msg) and ("allocate memory" in msg or "SIGKILL" in msg), msg  # SIGKILL: the kernel's OOM killer
    assert rows[0].quality is None and rows[0].train_steps == 0
    assert rows[1].quality is not None and rows[1].quality.n_samples == N and rows[1].d_params > 0
    for folder in ("00-lsgan-lsgan-original", "01-gan-mlp-gan"):  # each worker's spec, result and log
        assert {"spec.json", "result.json", "worker.log"} <= {p.name for p in (tmp_path / folder).iterdir()}
    assert load_records(tmp_path / "results.json") == rows


def test_worker_log_tail_and_oom_detection(tmp_path):
    # what a row's record says when its worker dies without writing its result
    assert last_line(tmp_path / "missing.log") == ""
    (tmp_path / "x.log").write_text("a\n\nTraceback\nMemoryError: Cannot allocate memory\n\n")
    assert last_line(tmp_path / "x.log") == "MemoryError: Cannot allocate memory"
    assert looks_oom(last_line(tmp_path / "x.log"))


# -- the command line --------------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cli_compare(tmp_path_factory):
    """`gonprof compare gan --arch mlp-gan ...`, its rows run in this process (the subprocess path is tested above)."""
    mp = pytest.MonkeyPatch()
    real = cmp.compare
    mp.setattr(cmp, "compare", lambda specs, **kw: real(specs, **{**kw, "placement": INLINE}))
    out = tmp_path_factory.mktemp("cli")
    try:
        res = invoke("compare", "gan", "--arch", "mlp-gan", "--steps", 2, "--samples", N, "--profile-steps", 1,
                     "--batch-size", 16, "--out", out, "--json", out / "r.json", "--csv", out / "r.csv")
    finally:
        mp.undo()
    return res, out


def test_cli_compare_prints_both_tables_and_writes_files(cli_compare):
    res, out = cli_compare
    assert res.exit_code == 0, res.output
    assert "gonprof compare: cost of one optimization step" in res.stdout
    assert "gonprof compare: quality of the samples" in res.stdout
    assert "gan / mlp-gan" in res.stdout and "real (floor)" in res.stdout
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = load_records(out / "r.json")
    assert [(r.kind, r.status) for r in rows] == [("floor", "ok"), ("run", "ok")]
    assert rows[1].batch_size == 16 and rows[1].train_steps == 2 and rows[1].quality.n_samples == N
    header, *lines = (out / "r.csv").read_text().splitlines()
    assert "quality.fid" in header.split(",") and len(lines) == 2


def test_cli_report_rerenders_compare_results(cli_compare):
    _, out = cli_compare
    res = invoke("report", out / "r.json")
    assert res.exit_code == 0, res.output
    assert "gonprof compare: quality of the samples" in res.stdout and "gan / mlp-gan" in res.stdout


def test_cli_compare_without_mode_or_preset_is_a_usage_error():
    res = invoke("compare")
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1 and "preset" in res.output


def test_cli_compare_unknown_mode_is_a_usage_error():
    res = invoke("compare", "lsgen", "--steps", 1)
    assert res.exit_code == 2 and "did you mean lsgan" in res.output


def test_cli_compare_bad_memory_limit_is_a_usage_error(tmp_path):
    res = invoke("compare", "gan", "--memory-limit", "bogus", "--out", tmp_path)
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and "bogus" in res.output
    assert not tmp_path.joinpath("results.json").exists()  # refused before anything ran


def test_cli_report_missing_file_fails_in_one_line(tmp_path):
    res = invoke("report", tmp_path / "nope.json")
    assert res.exit_code == 1 and "file not found" in res.output


def test_save_records_refuses_mixed_kinds(tmp_path):
    with pytest.raises(ValueError):
        save_records([RunRecord(), ProfileRecord()], tmp_path / "x.json")


def test_resume_keeps_finished_rows_and_reruns_the_rest(tmp_path):
    """A sweep stopped part-way (its second row interrupted) continues with --resume: the floor and the
    finished row are kept as they were, the interrupted row runs, and a row asked with other settings runs."""
    specs = plan(["gan", "lsgan"], steps=1, n_samples=N, profile_steps=1, batch_size=8)
    rows = compare(specs, out=tmp_path, placement=INLINE)
    assert [r.status for r in rows] == ["ok", "ok", "ok"]
    # make the lsgan row look interrupted, as Ctrl-C leaves it
    interrupted = rows[2].replace(status="interrupted", message="interrupted (Ctrl-C)")
    save_records([rows[0], rows[1], interrupted], tmp_path / "results.json")
    kept, started = [], []
    again = compare(specs, out=tmp_path, placement=INLINE, resume=True,
                    events=CompareEvents(on_reuse=kept.append, on_start=lambda i, n, s: started.append(s.label)))
    assert [r.label for r in kept] == ["real (floor)", "gan / mlp-gan"] and started == ["lsgan / lsgan-original"]
    assert again[0] == rows[0] and again[1] == rows[1] and again[2].status == "ok"
    assert load_records(tmp_path / "results.json") == again
    # other settings for a row: it runs again
    changed = plan(["gan", "lsgan"], steps=2, n_samples=N, profile_steps=1, batch_size=8)
    started.clear()
    compare(changed, out=tmp_path, placement=INLINE, resume=True,
            events=CompareEvents(on_start=lambda i, n, s: started.append(s.label)))
    assert started == ["gan / mlp-gan", "lsgan / lsgan-original"]


def test_cli_resume_needs_the_folder(tmp_path):
    res = invoke("compare", "gan", "--steps", 1, "--resume", tmp_path / "nope")
    assert res.exit_code == 2 and "no such comparison folder" in res.output


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("kind", ["train run", "empty", "profile results"])
def test_cli_resume_into_a_folder_that_is_not_a_comparison_is_refused_before_writing(tmp_path, kind):
    """`compare --resume DIR` on a train run's folder wrote results.json, rows and a grid into it; any folder
    without a comparison's results file or row folders is now refused in one line, exit 2, untouched."""
    folder = tmp_path / "d"
    folder.mkdir()
    if kind == "train run":
        (folder / "config.json").write_text("{}")
        (folder / "checkpoint.pt").write_bytes(b"")
    elif kind == "profile results":
        from gonprof.records import ProfileRecord, save_records

        save_records([ProfileRecord(arch="mlp-gan", mode="gan")], folder / "results.json")
    before = _tree(folder)
    res = invoke("compare", "gan", "--steps", 1, "--resume", folder)
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"gonprof: error: --resume {folder}")
    assert {"train run": "holds a training run", "empty": "not a comparison folder",
            "profile results": "not a comparison folder"}[kind] in line
    assert _tree(folder) == before


def test_api_resume_is_refused_outside_a_comparison_folder(tmp_path):
    from gonprof import api
    from gonprof.comparison import resume_problem
    from gonprof.records import RequestError

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(RequestError, match="holds a training run"):
        api.compare(["gan"], out=tmp_path / "run", resume=True, steps=1)
    with pytest.raises(RequestError, match="name its folder"):
        api.compare(["gan"], resume=True, steps=1)
    row = tmp_path / "cmp" / "00-gan-mlp-gan"  # a comparison stopped in its first row: a row folder only
    row.mkdir(parents=True)
    (row / "spec.json").write_text("{}")
    assert resume_problem(tmp_path / "cmp") == ""


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2, reason="needs two cores to run two rows at once")
def test_jobs_runs_rows_at_once_on_disjoint_cores(tmp_path):
    res = invoke("compare", "gan", "lsgan", "--steps", 1, "--samples", N, "--profile-steps", 1, "--jobs", 2,
                 "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    rows = load_records(tmp_path / "c" / "results.json")
    assert [r.kind for r in rows] == ["floor", "run", "run"] and all(r.status == "ok" for r in rows)
    runs = [r for r in rows if r.kind == "run"]
    assert all(r.cpus and len(r.cpus) == 1 for r in runs)  # each pinned, one core of the two
    assert [r.mode for r in runs] == ["gan", "lsgan"]  # the plan's order, whichever finished first
    assert "on cores" in res.output


class _OneByOneSession:
    """A stand-in executor session: each job ends at once with exit status 1; Ctrl-C in on_done stops the
    session as the local one does (the outcome kept, not interrupted: the job had finished)."""

    width, interrupted = 1, False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, jobs, on_start=None, on_done=None):
        from gonprof.isolation import Outcome

        outcomes = {}
        for k, job in enumerate(jobs):
            on_start(k, job.spec)
            outcomes[k] = Outcome(result=None, returncode=1, tail="ValueError: boom", wall_s=0.5)
            try:
                on_done(k, outcomes[k])
            except KeyboardInterrupt:
                self.interrupted = True
                break
        return outcomes


def test_a_row_that_finished_as_ctrl_c_cut_its_report_short_is_kept(tmp_path, monkeypatch):
    real, calls = cmp.record_of, []

    def record_of(spec, out):  # Ctrl-C inside the first finished row's report, before its record is kept
        calls.append(spec)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(spec, out)

    monkeypatch.setattr(cmp, "record_of", record_of)
    specs = plan(["gan", "lsgan"], steps=1, n_samples=20, profile_steps=1)
    placed = [(s, tmp_path / f"row{i}") for i, s in enumerate(specs)]
    executor = type("E", (), {"session": lambda self: _OneByOneSession()})()
    rows = cmp._compare_workers(placed, {}, tmp_path / "results.json", executor, CompareEvents(), None)
    assert [(r.mode, r.status) for r in rows] == [("gan", "error")]  # kept; the second row never started
    assert "ValueError: boom" in rows[0].message
    assert [(r.mode, r.status) for r in load_records(tmp_path / "results.json")] == [("gan", "error")]


def test_a_row_whose_own_save_ctrl_c_cut_short_is_in_the_results_file(tmp_path, monkeypatch):
    real, calls = cmp._save_rows, []

    def save_rows(rows, json_path, write_errors):  # Ctrl-C inside the second row's save, its record kept
        calls.append(len(rows))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(rows, json_path, write_errors)

    monkeypatch.setattr(cmp, "_save_rows", save_rows)

    class _Session(_OneByOneSession):  # a session that never saw the Ctrl-C (it came from the callback)
        def run(self, jobs, on_start=None, on_done=None):
            try:
                return super().run(jobs, on_start, on_done)
            finally:
                self.interrupted = False

    specs = plan(["gan", "lsgan"], steps=1, n_samples=20, profile_steps=1)
    placed = [(s, tmp_path / f"row{i}") for i, s in enumerate(specs)]
    executor = type("E", (), {"session": lambda self: _Session()})()
    rows = cmp._compare_workers(placed, {}, tmp_path / "results.json", executor, CompareEvents(), None)
    assert [r.mode for r in rows] == ["gan", "lsgan"]
    assert [r.mode for r in load_records(tmp_path / "results.json")] == ["gan", "lsgan"]  # saved at the end


def test_a_comparison_folder_moved_elsewhere_still_resumes():
    # a row's run directory follows its comparison folder; where the folder went is not a setting
    a = GAN.replace(run_dir="/old/place/01-gan-mlp-gan/run").to_dict()
    b = GAN.replace(run_dir="/new/place/01-gan-mlp-gan/run").to_dict()
    assert cmp.same_settings(a, b) and not cmp.same_settings(a, GAN.replace(seed=1).to_dict())
