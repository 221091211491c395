"""The top-level API: gonprof.profile() and gonprof.compare() return typed records."""

import pytest

import gonprof
from gonprof.records import ProfileRecord, RunRecord


def test_profile_returns_a_record():
    rec = gonprof.profile("inception-k8", batch_size=4, warmup=1, steps=1)
    assert isinstance(rec, ProfileRecord) and rec.status == "ok" and rec.mode == "lsgan"
    assert rec.model("D").params_total == 13_857 and rec.timed_steps == 1


def test_profile_record_says_what_the_gon_fast_path_skipped():
    rec = gonprof.profile("gon-mnist-conv", batch_size=2, warmup=1, steps=1, hparams={"inner_steps": 2})
    assert rec.status == "ok"
    assert any("skips D's 9 exact-identity activations" in n for n in rec.extra["notes"])
    assert rec.flops.flops_outside_modules == 0  # the skipped activations' parent keeps its FLOPs


def test_compare_returns_rows_even_after_the_submodule_is_imported(tmp_path):
    import gonprof.comparison  # noqa: F401  (the module must not shadow the function)

    rows = gonprof.compare(["gan"], ["mlp-gan"], out=tmp_path, steps=1, batch_size=8, n_samples=20,
                           profile_steps=1, placement=gonprof.api.Placement("inline"))
    assert [r.kind for r in rows] == ["floor", "run"]
    assert all(isinstance(r, RunRecord) and r.status == "ok" for r in rows)
    assert rows[1].d_params == 1_460_225 and rows[1].quality.n_samples == 20


def test_the_request_placement_and_errors_are_top_level_names():
    from gonprof import api

    assert gonprof.StepSpec is api.StepSpec and gonprof.Placement is api.Placement
    usage = (gonprof.RegistryError, gonprof.ShapeError, gonprof.IncompatibleError, gonprof.SelectionError,
             gonprof.RequestError)
    assert set(api.USAGE_ERRORS) == set(usage)
    assert set(api.RUN_ERRORS) == {gonprof.DataError, gonprof.RecordError, gonprof.TooBigError, gonprof.TrainError}


def test_the_readme_api_lines_run(tmp_path):
    from gonprof import api

    spec = gonprof.StepSpec("inception-k8", "lsgan", batch_size=4, hparams={"d_steps": 1})
    rec = api.profile(spec, steps=1, warmup=1)
    assert rec.status == "ok" and rec.batch_size == 4
    est, _ = api.estimate(spec.replace(device="cuda"), measure=False)
    assert est.device == "cuda" and est.peak_bytes > 0
    with pytest.raises(gonprof.RegistryError, match="did you mean"):
        api.profile(gonprof.StepSpec("inception-k3"))
