"""The seeds' claims as data, each with a verdict: rules checked on hand-made rows."""

from __future__ import annotations

import json

from gonprof import claims
from gonprof.comparison import plan
from gonprof.records import LiveMemory, ProfileRecord, QualityRecord, RunRecord, load_records, save_records

MiB = 2**20


def _row(arch, peak_mib, fid=100.0, precision=0.8, coverage=1.0, steps=2000):
    live = LiveMemory(peak_live_bytes=int(peak_mib * MiB), peak_live_param_bytes=0, peak_live_buffer_bytes=0,
                      peak_live_grad_bytes=0, peak_live_optimizer_state_bytes=0, peak_live_activation_bytes=0,
                      start_live_bytes=0, end_live_bytes=0, allocated_bytes=0)
    q = QualityRecord(fid=fid, kid_mean=0.0, kid_std=0.0, precision=precision, recall=0.5, density=1.0,
                      coverage=0.5, class_coverage=coverage, class_entropy_nats=1.0, mean_confidence=0.9,
                      classifier_score=5.0, n_samples=100, n_reference=100)
    return RunRecord(mode="lsgan", arch=arch, train_steps=steps, profile=ProfileRecord(live_memory=live), quality=q)


def _gas(steps=2000, k32_mib=48.37, k32_fid=110.0):
    return [RunRecord(kind="floor"), _row("lsgan-original", 50.34, fid=100.0, steps=steps),
            _row("depthwise-inception", 129.61, precision=0.02, steps=steps),
            _row("inception-k32", k32_mib, fid=k32_fid, steps=steps),
            _row("depthwise-inception-dense", 112.47, steps=steps),
            _row("inception-k16", 37.48, coverage=0.1, steps=steps),
            _row("inception-k8", 33.68, coverage=1.0, steps=steps)]


def test_six_gas_claims_with_verdicts_at_the_full_budget():
    v = {x.claim: x for x in claims.judge("gas", _gas())}
    assert len(v) == 6
    # 50.34 / 48.37 = 1.04x, against 777 / 489 = 1.59x claimed: less than half the saving
    k32 = v["inception-k32 needs 1.59x less discriminator memory than lsgan-original"]
    assert k32.verdict == claims.FAILS and k32.measured.startswith("1.04x")
    assert v["depthwise-inception needs 3.9x less memory than lsgan-original"].verdict == claims.FAILS
    assert v["inception-k32 performs about as well as lsgan-original"].verdict == claims.HOLDS  # 110 <= 1.25 x 100
    assert v["depthwise-inception crashes (no correct images)"].verdict == claims.HOLDS  # precision 0.02
    assert v["inception-k16 suffers mode collapse"].verdict == claims.HOLDS  # coverage 10%
    assert v["inception-k8 suffers mode collapse"].verdict == claims.FAILS  # coverage 100%
    assert all("TensorFlow" in x.maps_to for x in v.values() if "memory" in x.claim)


def test_a_quick_budget_leaves_quality_claims_inconclusive_but_judges_memory():
    v = {x.claim: x for x in claims.judge("gas", _gas(steps=100))}
    quality = [x for x in v.values() if "memory" not in x.claim]
    assert all(x.verdict == claims.UNSURE and "trained 100 of the 2,000 iterations" in x.reason for x in quality)
    assert v["inception-k32 needs 1.59x less discriminator memory than lsgan-original"].verdict == claims.FAILS


def test_a_missing_row_is_inconclusive_and_a_preset_without_claims_has_none():
    rows = [r for r in _gas() if r.arch != "inception-k32"]
    v = {x.claim: x for x in claims.judge("gas", rows)}
    assert v["inception-k32 performs about as well as lsgan-original"].verdict == claims.UNSURE
    assert "no finished inception-k32 row" in v["inception-k32 performs about as well as lsgan-original"].reason
    assert claims.judge("gon-digit", _gas()) == [] and claims.judge(None, _gas()) == []


def test_fid_does_not_judge_two_sets_of_non_digits():
    # both rows noise-like (classifier confidence 0.1): FID 1,100 against 1,080 is not "about as well"
    rows = [r.replace(quality=r.quality.replace(fid=1100.0 if r.arch == "inception-k32" else 1080.0,
                                                mean_confidence=0.1)) if r.quality else r for r in _gas()]
    v = {x.claim: x for x in claims.judge("gas", rows)}["inception-k32 performs about as well as lsgan-original"]
    assert v.verdict == claims.UNSURE and "neither set is read as digits" in v.reason


def test_memory_ratio_thresholds():
    # 90% of the claimed 1.59x or more holds; below 1 + half the saving does not; between is inconclusive
    v = {x.claim: x for x in claims.judge("gas", _gas(k32_mib=50.34 / 1.5))}
    assert v["inception-k32 needs 1.59x less discriminator memory than lsgan-original"].verdict == claims.HOLDS
    v = {x.claim: x for x in claims.judge("gas", _gas(k32_mib=50.34 / 1.35))}
    assert v["inception-k32 needs 1.59x less discriminator memory than lsgan-original"].verdict == claims.UNSURE


def test_quick_uses_the_presets_short_budget(tmp_path):
    assert {s.steps for s in plan([], preset="gas", quick=True)} == {100}
    assert {s.steps for s in plan([], preset="gas")} == {2000}
    # the verdicts travel in the results file beside the rows
    rows = _gas(steps=100)
    save_records(rows, tmp_path / "r.json", extra={"claims": [v.to_dict() for v in claims.judge("gas", rows)]})
    assert load_records(tmp_path / "r.json") == rows
    assert len(json.loads((tmp_path / "r.json").read_text())["claims"]) == 6


def test_claims_table_renders_every_verdict_and_quick_needs_a_preset():
    import io

    from rich.console import Console
    from typer.testing import CliRunner

    from gonprof import render
    from gonprof.cli import app

    buf = io.StringIO()
    Console(file=buf, width=250, color_system=None).print(render.claims_table(claims.judge("gas", _gas(steps=100))))
    text = buf.getvalue()
    assert text.count("inconclusive") == 4 and text.count("does not hold") == 2 and "777 vs 489 MB" in text
    res = CliRunner().invoke(app, ["compare", "gan", "--quick", "--steps", "1"])
    assert res.exit_code == 2 and "--quick picks a preset's short budget" in res.output


def test_api_compare_passes_quick_to_the_plan(tmp_path):
    from gonprof import api, comparison

    seen = {}

    def stop(specs, n, held):
        seen["steps"] = {s.steps for s in specs}
        raise KeyboardInterrupt  # nothing needs to run

    import pytest

    with pytest.raises(KeyboardInterrupt):
        api.compare(preset="gas", quick=True, events=api.CompareEvents(on_plan=stop), out=tmp_path / "unused")
    assert seen["steps"] == {100}
    assert comparison.PRESETS["gas"]["quick"] == {"steps": 100}


# -- the other seeds' presets ----------------------------------------------------------------

def _q(fid=100.0, on_class=None, confidence=0.9, coverage=1.0, n=1000):
    return QualityRecord(fid=fid, kid_mean=0.0, kid_std=0.0, precision=0.8, recall=0.5, density=1.0,
                         coverage=0.5, class_coverage=coverage, class_entropy_nats=1.0, mean_confidence=confidence,
                         classifier_score=5.0, n_samples=n, n_reference=n, on_class_fraction=on_class)


def _timed(mode, arch, peak_mib, step_ms, **kw):
    from gonprof.records import TimingStats

    rec = _row(arch, peak_mib).replace(mode=mode, **kw)
    s = step_ms / 1e3
    t = TimingStats(time_s_median=s, time_s_p10=s, time_s_p90=s, time_s_mean=s, n=3, time_s_min=s, time_s_max=s,
                    spread=0.0, noisy=False)
    return rec.replace(profile=rec.profile.replace(step_time=t))


def _gon(gon_mib=6.0, gan_mib=10.0, gon_ms=105.0, gan_ms=100.0, on_class=0.9, time_s=300.0):
    return [_timed("gon", "gon-mnist-mlp", gon_mib, gon_ms, quality=_q(fid=50.0, on_class=on_class),
                   time_budget_s=300.0, train_time_s=time_s),
            _timed("gan", "gon-mnist-mlp", gan_mib, gan_ms, quality=_q(fid=45.0, on_class=0.99),
                   time_budget_s=300.0, train_time_s=time_s + 1.0)]


def test_gon_claims_read_the_gon_and_gan_rows_of_one_architecture():
    v = {x.claim: x for x in claims.judge("gon", _gon())}
    assert len(v) == 4
    mem = v["GON needs up to 58% less memory than a GAN"]
    assert mem.verdict == claims.UNSURE and mem.measured.startswith("+40%")  # 1 - 6/10 = 40% < 0.9 x 58%
    assert claims.judge("gon", _gon(gon_mib=4.0))[1].verdict == claims.HOLDS  # 60% >= 52.2%
    assert claims.judge("gon", _gon(gon_mib=11.0))[1].verdict == claims.FAILS  # GON needs more
    time_ = v["GON takes about 5% more training time than a GAN"]
    assert time_.verdict == claims.HOLDS and time_.measured.startswith("1.05x")  # 105 / 100 <= 1.25 x 1.05
    assert claims.judge("gon", _gon(gon_ms=900.0))[2].verdict == claims.FAILS  # 9x > 2 x 1.05
    assert v["GON generates the trained digit from 10 shots"].verdict == claims.HOLDS  # 90% on the digit
    assert v["GON's samples are about as good as the GAN's"].verdict == claims.HOLDS  # 50 <= 1.25 x 45
    assert claims.judge("gon", _gon(on_class=0.3))[0].verdict == claims.FAILS


def test_gon_quality_claims_wait_for_the_time_budget_but_memory_and_time_do_not():
    v = claims.judge("gon", _gon(time_s=60.0))
    assert [x.verdict for x in v] == [claims.UNSURE, claims.UNSURE, claims.HOLDS, claims.UNSURE]
    assert "trained 60 s of the 300 s" in v[0].reason
    # trained time, not the time asked for: 294 s is 98% of 300 s (a budget ends at a step's end); 293 s is short
    assert claims.judge("gon", _gon(time_s=294.0))[0].verdict == claims.HOLDS
    assert claims.judge("gon", _gon(time_s=293.0))[0].verdict == claims.UNSURE


def test_a_failed_row_does_not_shorten_the_budget_of_the_rows_that_finished():
    rows = _igan([0.01] * 4)
    rows[0] = rows[0].replace(status="oom", train_steps=0, message="out of memory")
    v = claims.judge("improved-gan", rows)
    assert v[0].verdict == claims.UNSURE and "no finished labels-20 row" in v[0].reason
    assert [x.verdict for x in v[1:]] == [claims.HOLDS] * 3  # 1% <= 1.5 x paper + 0.5 points, at the full budget


def _igan(errors, steps=claims.IGAN_STEPS):
    return [_row("improved-gan-mlp", 20.0, steps=steps).replace(mode="improved-gan", variant=f"labels-{n}",
                                                                test_error_fraction=e, n_test_images=5000)
            for n, e in zip((20, 50, 100, 200), errors)]


def test_improved_gan_test_error_per_label_count():
    # paper: 16.77 / 2.21 / 0.93 / 0.90 %; holds up to 1.5x the paper's plus half a point
    v = claims.judge("improved-gan", _igan([0.25, 0.038, 0.0433, 0.0185]))
    assert [x.verdict for x in v] == [claims.HOLDS, claims.HOLDS, claims.FAILS, claims.HOLDS]
    # 0.25 <= 1.5 x 0.1677 + 0.005 = 0.2566; 0.038 <= 0.03815; 0.0433 > 0.01895; 0.0185 <= 0.0185
    assert v[2].measured == "4.33% of 5,000 held-out images"
    assert v[2].source_figure == "0.93% (paper); 4.33% (reproduction)"
    assert all(x.verdict == claims.UNSURE for x in claims.judge("improved-gan", _igan([0.01] * 4, steps=1500)))
    assert "5,000" in v[0].maps_to  # the offline split is said plainly


def _dcd(pixel=(100.0, 80.0), latent=(100.0, 98.0), steps=claims.DCD_STEPS):
    return [_row("dcd-mnist-sn", 30.0, steps=steps).replace(mode="dcd", variant=name, quality=_q(fid=after),
                                                            quality_unrefined=_q(fid=before))
            for name, (before, after) in (("pixel", pixel), ("latent", latent))]


def test_dcd_refinement_is_judged_on_the_same_samples_before_and_after():
    v = claims.judge("dcd", _dcd())
    assert v[0].verdict == claims.HOLDS and v[0].measured == "FID 100.0 -> 80.0 (N=1,000)"  # 80 <= 95
    assert v[1].verdict == claims.UNSURE  # 98: less than 5% lower
    assert claims.judge("dcd", _dcd(latent=(100.0, 101.0)))[1].verdict == claims.FAILS
    assert all(x.verdict == claims.UNSURE for x in claims.judge("dcd", _dcd(steps=30)))
    # samples the classifier does not read as digits (confidence below 0.5 before and after): FID cannot rank them
    noise = _dcd()[0].replace(quality=_q(fid=80.0, confidence=0.46), quality_unrefined=_q(fid=100.0, confidence=0.40))
    v = claims.judge("dcd", [noise])[0]
    assert v.verdict == claims.UNSURE and "confidence 0.40 -> 0.46" in v.reason
    missing = claims.judge("dcd", [_dcd()[0].replace(quality_unrefined=None)])
    assert missing[0].verdict == claims.UNSURE and "no before/after" in missing[0].reason
    assert "no finished latent row" in missing[1].reason


def test_mlp_gan_parameter_counts_need_no_budget_and_digits_do():
    row = _row("mlp-gan", 12.0, steps=2000).replace(mode="gan", d_params=1_460_225, g_params=1_486_352,
                                                     quality=_q(confidence=0.95, coverage=1.0))
    v = claims.judge("mlp-gan", [row])
    assert v[0].verdict == claims.HOLDS and v[0].measured == "1,460,225 / 1,486,352"
    assert v[1].verdict == claims.UNSURE  # 2,000 of 234,500 steps
    full = row.replace(train_steps=claims.MLP_GAN_STEPS)
    assert claims.judge("mlp-gan", [full])[1].verdict == claims.HOLDS
    assert claims.judge("mlp-gan", [full.replace(quality=_q(confidence=0.3))])[1].verdict == claims.FAILS
    assert claims.judge("mlp-gan", [full.replace(d_params=1)])[0].verdict == claims.FAILS


def test_a_name_two_rows_share_is_never_read():
    rows = _gon()
    by = claims._rows_by_key(rows)
    assert "gon-mnist-mlp" not in by and by["gon"].mode == "gon" and by["gan/gon-mnist-mlp"].mode == "gan"


def test_every_preset_with_claims_plans_and_has_a_quick_budget():
    from gonprof.comparison import PRESETS

    for name in claims.CLAIMS:
        assert name in PRESETS and "quick" in PRESETS[name]
        assert plan([], preset=name, quick=True)


def test_report_judges_a_saved_presets_claims_again(tmp_path):
    from typer.testing import CliRunner

    from gonprof import api
    from gonprof.cli import app

    rows = _gas(steps=100)
    save_records(rows, tmp_path / "r.json", extra={"preset": "gas", "claims": []})
    preset, verdicts = api.report_claims(tmp_path / "r.json")
    assert preset == "gas" and [v.verdict for v in verdicts] == [v.verdict for v in claims.judge("gas", rows)]
    res = CliRunner().invoke(app, ["report", str(tmp_path / "r.json")], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "the claims of preset gas" in res.output and "777 vs 489 MB" in res.output
    save_records(rows, tmp_path / "plain.json")  # a comparison without a preset has no claims table
    assert api.report_claims(tmp_path / "plain.json") == (None, [])
    assert "claims of preset" not in CliRunner().invoke(app, ["report", str(tmp_path / "plain.json")]).output


# -- the rows the claims read, filled by a real (tiny) comparison ----------------------------

def test_dcd_samples_before_and_after_refinement_start_from_the_same_z(one_thread):
    import torch

    from gonprof.modes.build import build_step

    step = build_step("dcd", "dcd-mnist-sn", langevin_steps=2)
    torch.manual_seed(3)
    raw, refined = step.sample_with_unrefined(6)
    torch.manual_seed(3)
    assert torch.equal(raw, step.fake_from(step.latent(6)).clamp(-1, 1))  # G(z) of the very z refined
    assert not torch.equal(raw, refined)  # the Langevin steps moved them
    torch.manual_seed(3)
    # sample() draws the refined half (to a rounding: spectral norm's power iteration moves at every D forward)
    assert torch.allclose(step.sample(6), refined, atol=1e-3) and not torch.allclose(raw, refined, atol=1e-3)


def test_a_comparison_fills_the_fields_the_dcd_and_improved_gan_claims_read(tmp_path, one_thread):
    from gonprof import api

    rows = api.compare(["dcd"], out=tmp_path / "dcd", steps=1, batch_size=8, n_samples=20, profile_steps=1,
                       hparams={"langevin_steps": 1, "n_critic": 1}, placement=api.Placement("inline"))
    run = [r for r in rows if r.kind == "run"][0]
    assert run.status == "ok" and run.quality_unrefined is not None and run.quality is not None
    assert run.quality_unrefined.n_samples == run.quality.n_samples == 20 and run.test_error_fraction is None
    rows = api.compare(["improved-gan"], out=tmp_path / "igan", steps=1, batch_size=8, n_samples=20,
                       profile_steps=1, placement=api.Placement("inline"))
    run = [r for r in rows if r.kind == "run"][0]
    assert run.status == "ok" and run.n_test_images == 5000  # the embedded split's held-out half
    assert 0.0 <= run.test_error_fraction <= 1.0 and run.quality_unrefined is None
