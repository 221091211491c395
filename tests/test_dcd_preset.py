"""The dcd preset: a WGAN-GP critic and generator trained until a quality gate, then DCD rows from them."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch

from gonprof import claims
from gonprof.comparison import compare, plan
from gonprof.comparison.plan import RunSpec
from gonprof.comparison.row import run_spec
from gonprof.executors import Placement
from gonprof.train import read_log

INLINE = Placement("inline")


def _tiny(gate: dict, pretrain_steps: int = 4) -> list[RunSpec]:
    """The preset's rows at batch 8, 2 DCD steps of 2 Langevin steps, a pretrain of ``pretrain_steps``."""
    specs = plan([], preset="dcd", quick=True, steps=2, batch_size=8, n_samples=20, profile_steps=1,
                 hparams={"dcd.langevin_steps": 2})
    pre = dataclasses.replace(specs[0], steps=pretrain_steps, gate=gate)
    return [pre, *specs[1:]]


def _models(run_dir: str) -> dict:
    return torch.load(f"{run_dir}/checkpoint.pt", weights_only=False)["state"]["models"]


def test_the_preset_trains_a_gated_pretrain_row_then_dcd_rows_from_its_models():
    full = plan([], preset="dcd")
    assert [(s.mode, s.variant) for s in full] == [("wgan-gp", "pretrain"), ("dcd", "pixel"), ("dcd", "latent")]
    assert full[0].steps == claims.DCD_PRETRAIN_CAP and full[0].gate == claims.DCD_GATE
    assert [s.init_from for s in full] == [None, "pretrain", "pretrain"]
    assert {s.steps for s in full[1:]} == {claims.DCD_STEPS}
    assert all(s.step.hparams["g_steps"] == 0 for s in full[1:])  # critic-only: G is the pretrained one
    assert [s.step.hparams["langevin"] for s in full[1:]] == ["pixel", "latent"]
    quick = plan([], preset="dcd", quick=True, steps=3)  # a row's own settings win over the shared --steps
    assert [s.steps for s in quick] == [20, 3, 3] and quick[0].gate == {**claims.DCD_GATE, "every": 10, "n": 200}


@pytest.mark.parametrize(("preset", "critic"), [("dcd", "dcd-mnist-sn"), ("dcd-no-sn", "dcd-mnist")])
def test_each_dcd_preset_runs_every_row_on_its_critic_and_carries_the_dcd_claims(preset, critic):
    dcd, other = plan([], preset="dcd"), plan([], preset=preset)
    assert {s.arch for s in other} == {critic}
    same = [(s.mode, s.variant, s.steps, s.gate, s.init_from, s.step.hparams) for s in dcd]
    assert [(s.mode, s.variant, s.steps, s.gate, s.init_from, s.step.hparams) for s in other] == same
    assert claims.CLAIMS[preset] == claims.CLAIMS["dcd"]


@pytest.mark.slow  # trains three tiny rows: minutes on 2 shared cores
def test_a_gate_that_is_reached_stops_the_pretrain_at_its_first_check_and_dcd_starts_from_it(tmp_path):
    rows = compare(_tiny({"every": 2, "n": 20, "confidence": 0.0, "coverage": 0.0}), out=tmp_path,
                   placement=INLINE)
    assert [r.status for r in rows] == ["ok"] * 4, [r.message for r in rows]
    pre, pixel, latent = rows[1:]
    assert pre.train_steps == 2 and pre.message.startswith("quality gate reached at step 2:")
    # critic-only DCD rows: their generator is the pretrain row's, to the bit; their critic trained on
    g0 = _models(pre.run_dir)["G"]
    for row in (pixel, latent):
        assert row.train_steps == 2 and row.quality is not None and row.quality_unrefined is not None
        models = _models(row.run_dir)
        assert all(torch.equal(g0[k], models["G"][k]) for k in g0)
        d0 = _models(pre.run_dir)["D"]
        assert any(not torch.equal(d0[k], models["D"][k]) for k in d0 if d0[k].is_floating_point())


@pytest.mark.slow  # trains three tiny rows: minutes on 2 shared cores
def test_a_gate_never_reached_trains_to_the_cap_and_says_so(tmp_path):
    specs = _tiny({"every": 2, "n": 20, "confidence": 1.01, "coverage": 0.0}, pretrain_steps=3)

    class Notes:
        def __init__(self):
            self.seen: list[str] = []

        def note(self, text: str) -> None:
            self.seen.append(text)

    notes = Notes()
    pre = run_spec(dataclasses.replace(specs[0], run_dir=str(tmp_path / "run")), progress=notes)
    assert pre.status == "ok" and pre.train_steps == 3  # checked at 2, then at the cap, 3
    assert pre.message.startswith("quality gate (confidence 1.01, coverage 0%) not reached by the cap of 3 steps")
    checks = [t for t in notes.seen if t.startswith("quality gate at step")]
    assert [t.split(":")[0] for t in checks] == ["quality gate at step 2", "quality gate at step 3"]


def test_a_row_that_starts_from_a_row_the_comparison_does_not_run_fails_with_one_line(tmp_path):
    specs = _tiny({"every": 2, "n": 20, "confidence": 0.0, "coverage": 0.0})
    rows = compare(specs[1:2], out=tmp_path, placement=INLINE)
    assert rows[1].status == "error"
    assert rows[1].message == "starts from row pretrain, which this comparison does not run"


@pytest.mark.slow  # trains three tiny rows: minutes on 2 shared cores
def test_a_gated_row_continued_with_a_higher_cap_trains_on_from_its_checkpoint(tmp_path):
    """--resume with a higher cap: the gated row goes on from its checkpoint (checks at 2, then 4), and its
    4 steps are those of a row that trained to 4 at once."""
    gate = {"every": 2, "n": 20, "confidence": 1.01, "coverage": 0.0}
    first = compare(_tiny(gate, pretrain_steps=2)[:1], out=tmp_path / "a", placement=INLINE)
    time.sleep(1.1)  # a run started again would write a later creation time
    created = json.loads((Path(first[1].run_dir) / "config.json").read_text())["created"]
    rows = compare(_tiny(gate, pretrain_steps=4)[:1], out=tmp_path / "a", placement=INLINE, resume=True)
    whole = compare(_tiny(gate, pretrain_steps=4)[:1], out=tmp_path / "b", placement=INLINE)
    assert rows[1].train_steps == whole[1].train_steps == 4
    # the same run directory went on (a run started again writes its own creation time)
    assert json.loads((Path(rows[1].run_dir) / "config.json").read_text())["created"] == created
    assert rows[1].message == whole[1].message and "not reached by the cap of 4 steps" in rows[1].message

    def losses(run_dir):
        return [r["losses"] for r in read_log(run_dir) if "losses" in r]

    assert losses(rows[1].run_dir) == losses(whole[1].run_dir) and len(losses(whole[1].run_dir)) == 4
