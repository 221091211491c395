"""The seeds' claims as data, each with a verdict: rules checked on hand-made rows."""

from __future__ import annotations

import json

from gonprof import claims
from gonprof.comparison import plan
from gonprof.records import LiveMemory, ProfileRecord, QualityRecord, RunRecord, load_records, save_records

MiB = 2**20


def _row(arch, peak_mib, fid=100.0, precision=0.8, coverage=1.0, steps=2000, recall=0.5):
    live = LiveMemory(peak_live_bytes=int(peak_mib * MiB), peak_live_param_bytes=0, peak_live_buffer_bytes=0,
                      peak_live_grad_bytes=0, peak_live_optimizer_state_bytes=0, peak_live_activation_bytes=0,
                      start_live_bytes=0, end_live_bytes=0, allocated_bytes=0)
    q = QualityRecord(fid=fid, kid_mean=0.0, kid_std=0.0, precision=precision, recall=recall, density=1.0,
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


def test_a_quick_budget_judges_memory_and_comparisons_and_leaves_end_states_inconclusive():
    v = {x.claim: x for x in claims.judge("gas", _gas(steps=100))}
    ends = [x for x in v.values() if "crashes" in x.claim or "collapse" in x.claim]
    assert len(ends) == 3
    assert all(x.verdict == claims.UNSURE and "trained 100 of the 2,000 iterations" in x.reason for x in ends)
    assert v["inception-k32 needs 1.59x less discriminator memory than lsgan-original"].verdict == claims.FAILS
    # both rows trained 100 steps: the comparison is judged at that budget, and says so
    same = v["inception-k32 performs about as well as lsgan-original"]
    assert same.verdict == claims.HOLDS and same.reason == "compared at 100 steps a row"


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
    assert text.count("inconclusive") == 3 and text.count("does not hold") == 2 and "777 vs 489 MB" in text
    assert text.count("holds: compared at 100 steps a row") == 1  # inception-k32 "as well" ("does not hold" aside)
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
    assert mem.verdict == claims.UNSURE and mem.measured.startswith("40% less")  # 1 - 6/10 = 40% < 0.9 x 58%
    assert claims.judge("gon", _gon(gon_mib=4.0))[1].verdict == claims.HOLDS  # 60% >= 52.2%
    more = claims.judge("gon", _gon(gon_mib=11.0))[1]
    assert more.verdict == claims.FAILS and more.measured.startswith("10% more")  # GON needs 11 / 10 of the GAN's
    time_ = v["GON takes about 5% more training time than a GAN"]
    assert time_.verdict == claims.HOLDS and time_.measured.startswith("1.05x")  # 105 / 100 <= 1.25 x 1.05
    assert claims.judge("gon", _gon(gon_ms=900.0))[2].verdict == claims.FAILS  # 9x > 2 x 1.05
    assert v["GON generates the trained digit from 10 shots"].verdict == claims.HOLDS  # 90% on the digit
    assert v["GON's samples are about as good as the GAN's"].verdict == claims.HOLDS  # 50 <= 1.25 x 45
    assert claims.judge("gon", _gon(on_class=0.3))[0].verdict == claims.FAILS


def test_gon_quality_claims_hold_early_and_fail_only_at_the_time_budget():
    v = claims.judge("gon", _gon(time_s=60.0))
    assert [x.verdict for x in v] == [claims.HOLDS, claims.UNSURE, claims.HOLDS, claims.HOLDS]
    assert v[0].reason == "reached by step 2,000, after 60 s of the 300 s it is judged at"
    assert v[3].reason == "compared at 60 s a row"  # 60 s and 61 s: the same time, to 98%
    short = claims.judge("gon", _gon(time_s=60.0, on_class=0.3))[0]
    assert short.verdict == claims.UNSURE and "trained 60 s of the 300 s" in short.reason
    # trained time, not the time asked for: 294 s is 98% of 300 s (a budget ends at a step's end); 293 s is short
    assert claims.judge("gon", _gon(time_s=294.0, on_class=0.3))[0].verdict == claims.FAILS
    assert claims.judge("gon", _gon(time_s=293.0, on_class=0.3))[0].verdict == claims.UNSURE


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
    # at 1,500 steps: an error already within the paper's holds (naming the step); one above it waits
    early = claims.judge("improved-gan", _igan([0.01, 0.30, 0.01, 0.30], steps=1500))
    assert [x.verdict for x in early] == [claims.HOLDS, claims.UNSURE, claims.HOLDS, claims.UNSURE]
    assert early[0].reason == "reached by step 1,500 of the 180,000 it is judged at"
    assert early[1].reason == "trained 1,500 of the 180,000 iterations the claim is judged at"
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
    # before and after come from one row, so they share its budget: judged at any budget, and say which
    quick = claims.judge("dcd", _dcd(steps=30))
    assert [x.verdict for x in quick] == [claims.HOLDS, claims.UNSURE] and quick[0].reason == "compared at 30 steps"
    # samples the classifier does not read as digits (confidence below 0.5 before and after): FID cannot rank them
    noise = _dcd()[0].replace(quality=_q(fid=80.0, confidence=0.46), quality_unrefined=_q(fid=100.0, confidence=0.40))
    v = claims.judge("dcd", [noise])[0]
    assert v.verdict == claims.UNSURE and "confidence 0.40 -> 0.46" in v.reason
    missing = claims.judge("dcd", [_dcd()[0].replace(quality_unrefined=None)])
    assert missing[0].verdict == claims.UNSURE and "no before/after" in missing[0].reason
    assert "no finished latent row" in missing[1].reason


def test_mlp_gan_parameter_counts_need_no_budget_and_digits_fail_only_at_it():
    row = _row("mlp-gan", 12.0, steps=2000).replace(mode="gan", d_params=1_460_225, g_params=1_486_352,
                                                     quality=_q(confidence=0.95, coverage=1.0))
    v = claims.judge("mlp-gan", [row])
    assert v[0].verdict == claims.HOLDS and v[0].measured == "1,460,225 / 1,486,352"
    assert v[1].verdict == claims.HOLDS and v[1].reason == "reached by step 2,000 of the 234,500 it is judged at"
    assert claims.judge("mlp-gan", [row.replace(quality=_q(confidence=0.3))])[1].verdict == claims.UNSURE
    full = row.replace(train_steps=claims.MLP_GAN_STEPS)
    assert claims.judge("mlp-gan", [full])[1].reason == "reached by step 234,500"
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


# -- when the evidence is enough: each claim's form -------------------------------------------

def test_every_claim_states_its_form():
    forms = {c.text: c.form for cs in claims.CLAIMS.values() for c in cs}
    assert set(forms.values()) == set(claims.FORMS)
    assert forms["inception-k32 needs 1.59x less discriminator memory than lsgan-original"] == claims.BUDGET_FREE
    assert forms["inception-k32 performs about as well as lsgan-original"] == claims.COMPARATIVE
    assert forms["depthwise-inception crashes (no correct images)"] == claims.AT_BUDGET
    assert forms["inception-k8 suffers mode collapse"] == claims.AT_BUDGET
    assert forms["GON generates the trained digit from 10 shots"] == claims.THRESHOLD
    assert forms["GON's samples are about as good as the GAN's"] == claims.COMPARATIVE
    assert forms["GON takes about 5% more training time than a GAN"] == claims.BUDGET_FREE
    assert forms["test error at 100 labels is 0.93%"] == claims.THRESHOLD
    assert forms["Langevin refinement in pixel space improves G's samples"] == claims.COMPARATIVE
    assert forms["the GAN draws recognisable digits"] == claims.THRESHOLD
    assert forms["the pair has 1.46M / 1.49M parameters"] == claims.BUDGET_FREE


def test_a_claim_without_a_known_form_or_with_a_budget_its_form_has_no_use_for_is_refused():
    import pytest

    rule = claims._recognisable("gan")
    with pytest.raises(ValueError, match="is not one of"):
        claims.Claim("x", "y", "z", rule, "eventually", needs_steps=10)
    with pytest.raises(ValueError, match="a threshold claim needs budget"):
        claims.Claim("x", "y", "z", rule, claims.THRESHOLD)
    with pytest.raises(ValueError, match="a comparative claim has no budget"):
        claims.Claim("x", "y", "z", rule, claims.COMPARATIVE, needs_steps=10)
    with pytest.raises(ValueError, match="reads one row"):
        claims.Claim("x", "y", "z", claims._fid_close("a", "b"), claims.THRESHOLD, needs_steps=10)


def test_a_threshold_claim_holds_when_reached_and_does_not_hold_only_at_the_full_budget():
    at_100 = 2  # the claim on labels-100: paper 0.93%, holds up to 1.5 x 0.93% + 0.5 points = 1.895%
    early = claims.judge("improved-gan", _igan([0.5, 0.5, 0.015, 0.5], steps=1500))[at_100]
    assert early.verdict == claims.HOLDS and early.reason == "reached by step 1,500 of the 180,000 it is judged at"
    unknown = claims.judge("improved-gan", _igan([0.5, 0.5, 0.015, 0.5], steps=None))[at_100]
    assert unknown.verdict == claims.HOLDS and unknown.reason == "reached (the row records no step count)"
    short = claims.judge("improved-gan", _igan([0.5, 0.5, 0.20, 0.5], steps=179_999))[at_100]
    assert short.verdict == claims.UNSURE
    assert short.reason == "trained 179,999 of the 180,000 iterations the claim is judged at"
    full = claims.judge("improved-gan", _igan([0.5, 0.5, 0.20, 0.5]))[at_100]
    assert full.verdict == claims.FAILS and "above 1.5x the paper's 0.93%" in full.reason


def test_a_threshold_claim_reads_its_own_rows_budget_not_the_shortest_rows():
    rows = _igan([0.5, 0.5, 0.20, 0.5])
    rows[0] = rows[0].replace(train_steps=1500)  # labels-20 stopped early; labels-100 trained the full budget
    v = claims.judge("improved-gan", rows)
    assert v[0].verdict == claims.UNSURE and "trained 1,500 of the 180,000" in v[0].reason
    assert v[2].verdict == claims.FAILS


def test_a_comparative_claim_is_judged_at_any_equal_budget_and_not_across_budgets():
    same = "inception-k32 performs about as well as lsgan-original"
    worse = {x.claim: x for x in claims.judge("gas", _gas(steps=100, k32_fid=300.0))}[same]
    assert worse.verdict == claims.FAILS  # 300 > 2 x 100, both at 100 steps: no need to wait for 2,000
    assert worse.reason == "FID more than twice the original's; compared at 100 steps a row"
    rows = [r.replace(train_steps=200) if r.arch == "inception-k32" else r for r in _gas(steps=100)]
    apart = {x.claim: x for x in claims.judge("gas", rows)}[same]
    assert apart.verdict == claims.UNSURE and apart.measured == "FID 110.0 against 100.0"
    assert apart.reason == ("the rows trained different budgets (lsgan-original 100 steps, inception-k32 200 steps); "
                            "compared only at the same budget")
    # time budgets: the same when each row trained its own budget (to 98%), however many steps that took
    gon, gan = _gon(time_s=60.0)
    timed = [gon.replace(time_budget_s=60.0, train_time_s=67.0, train_steps=40),
             gan.replace(time_budget_s=60.0, train_time_s=60.4, train_steps=1679)]
    v = claims.judge("gon", timed)[3]
    assert v.verdict == claims.HOLDS and v.reason == "compared at 60 s a row"
    v = claims.judge("gon", [timed[0].replace(time_budget_s=300.0, train_time_s=300.0), timed[1]])[3]
    assert v.verdict == claims.UNSURE and "(gan 60 s, gon 300 s)" in v.reason


def test_an_end_state_claim_waits_for_the_full_budget_either_way():
    crash = "depthwise-inception crashes (no correct images)"
    # at 100 steps every row draws no correct images yet: precision 0.02 says nothing about the end
    early = {x.claim: x for x in claims.judge("gas", _gas(steps=100))}[crash]
    assert early.verdict == claims.UNSURE
    assert early.reason == "trained 100 of the 2,000 iterations the claim is judged at"
    assert {x.claim: x for x in claims.judge("gas", _gas())}[crash].verdict == claims.HOLDS


def test_budget_free_claims_are_judged_after_a_single_step():
    v = claims.judge("gon", [r.replace(train_steps=1, train_time_s=0.5) for r in _gon()])
    assert [x.verdict for x in v[1:3]] == [claims.UNSURE, claims.HOLDS] and v[2].reason == ""
    assert v[1].reason == "a saving, smaller than 90% of the claimed 58%"  # its own rule's reason, not the budget's


def test_a_collapse_onto_one_image_is_a_crash_even_with_high_precision():
    # measured at 2,000 iterations (benchmarks/gas-full-budget): depthwise-inception drew one striped image over
    # and over; its k-NN precision was 0.998, recall 0.000, one class of ten, FID 1,041 against 53.7
    rows = _gas()
    rows[2] = _row("depthwise-inception", 129.44, fid=1041.32, precision=0.998, coverage=0.1, recall=0.0)
    rows[1] = _row("lsgan-original", 50.16, fid=53.66)
    v = {x.claim: x for x in claims.judge("gas", rows)}["depthwise-inception crashes (no correct images)"]
    assert v.verdict == claims.HOLDS and "every sample the same image" in v.reason
    assert v.measured.startswith("precision 1.00, recall 0.00, 10% of classes")
    # drawing several classes with some recall is not a crash, whatever the precision
    rows[2] = _row("depthwise-inception", 129.44, fid=1041.32, precision=0.998, coverage=0.5, recall=0.2)
    v = {x.claim: x for x in claims.judge("gas", rows)}["depthwise-inception crashes (no correct images)"]
    assert v.verdict == claims.UNSURE
