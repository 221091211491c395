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


def test_api_compare_passes_quick_to_the_plan(monkeypatch):
    from gonprof import api, comparison

    seen = {}

    def stop(specs, n, held):
        seen["steps"] = {s.steps for s in specs}
        raise KeyboardInterrupt  # nothing needs to run

    import pytest

    with pytest.raises(KeyboardInterrupt):
        api.compare(preset="gas", quick=True, on_plan=stop, out="/tmp/unused-quick-check")
    assert seen["steps"] == {100}
    assert comparison.PRESETS["gas"]["quick"] == {"steps": 100}
