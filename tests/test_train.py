"""The training loop: determinism, exact resume, NaN / Ctrl-C / error stops, run-dir files.

Everything runs a tiny fake TrainStep on synthetic data, so the file takes seconds.
A last test drives a real mode through gonprof.modes.build when that exists.
"""

from __future__ import annotations

import io
import json
import signal
import struct

import pytest
import torch
from torch import nn

from gonprof.data import ImageData, synthetic
from gonprof.modes.base import TrainStep
from gonprof.train import TrainConfig, TrainError, TrainResult, balanced_subset, load_run_config, read_log, run_training

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class FakeStep(TrainStep):
    """A linear discriminator with BatchNorm, trained with BCE against Gaussian-noise fakes.

    It uses the global RNG (fakes), Adam state and an extra-state counter, so a
    resume is exact only if all three are restored.  ``sample`` runs D in train
    mode (moving BN statistics) and draws from the global RNG, so a grid would
    disturb training if the trainer did not isolate it.
    """

    mode = "fake"
    phases = ("d_step",)

    def __init__(self, config, nan_at=None, interrupt_at=None, sigint_at=None, error_at=None, lr=1e-2):
        torch.manual_seed(config.step.seed)
        d = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
        opt = torch.optim.Adam(d.parameters(), lr=lr)
        super().__init__({"D": d}, {"D": opt}, {"lr": lr, "batch_size": 32, **config.step.hparams}, torch.device("cpu"))
        self.calls = 0
        self.nan_at, self.interrupt_at, self.sigint_at, self.error_at = nan_at, interrupt_at, sigint_at, error_at

    def step(self, real, labels=None, phase=None):
        n = self.calls + 1
        if n == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        if n == self.error_at:
            raise RuntimeError("boom\nsecond line")
        if n == self.sigint_at:
            self.sigint_at = None
            signal.raise_signal(signal.SIGINT)  # the trainer's handler: stop after this step
        self.calls = n
        D, opt = self.models["D"], self.optimizers["D"]
        fake = torch.randn_like(real).clamp(-1, 1)
        bce = nn.functional.binary_cross_entropy_with_logits
        opt.zero_grad(set_to_none=True)
        lr, lf = D(real), D(fake)
        loss = bce(lr, torch.ones_like(lr)) + bce(lf, torch.zeros_like(lf))
        loss.backward()
        opt.step()
        out = {"d_loss": loss.detach(), "d_real": lr.mean().detach()}
        if n == self.nan_at:
            out["d_loss"] = torch.tensor(float("nan"))
        return out

    def sample(self, n):
        x = torch.rand(n, 1, 28, 28) * 2 - 1
        self.models["D"].train()
        self.models["D"](x).sum().backward()  # moves BN stats, leaves grads: the trainer must undo both
        return x

    def extra_state(self):
        return {"calls": self.calls}

    def load_extra_state(self, state):
        self.calls = state["calls"]


class SemiStep(FakeStep):
    """A fake with the improved-gan hooks: labelled examples and a test error."""

    def set_labelled(self, x, y):
        self.labelled = (x, y)

    def test_error(self, images, labels):
        self.tested = (images.shape[0], labels.shape[0])
        return 0.25


def cfg(tmp_path, name="run", **kw):
    base = dict(arch="fake-d", mode="fake", data="synthetic", steps=6, sample_every=0, log_every=1,
                checkpoint_every=100, out=str(tmp_path / name))
    base.update(kw)
    return TrainConfig.of(**base)


def losses(out):
    return [(r["step"], r["losses"]) for r in read_log(out)]


def lines(out):
    return [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]


def test_same_seed_same_losses_and_other_seed_differs(tmp_path):
    a = run_training(cfg(tmp_path, "a"), make_step=FakeStep)
    b = run_training(cfg(tmp_path, "b"), make_step=FakeStep)
    c = run_training(cfg(tmp_path, "c", seed=1), make_step=FakeStep)
    assert a.status == b.status == c.status == "ok"
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert [s for s, _ in losses(tmp_path / "a")] == [1, 2, 3, 4, 5, 6]
    assert losses(tmp_path / "a") != losses(tmp_path / "c")
    assert a.final_losses == losses(tmp_path / "a")[-1][1]


def test_resume_equals_uninterrupted_run_step_for_step(tmp_path):
    full = run_training(cfg(tmp_path, "full", sample_every=2), make_step=FakeStep)
    part = run_training(cfg(tmp_path, "part", steps=3, sample_every=2), make_step=FakeStep)
    assert part.status == "ok" and part.steps_done == 3 and part.checkpoint_step == 3
    rest = run_training(cfg(tmp_path, "part", steps=6, sample_every=2), resume=True, make_step=FakeStep)
    assert full.status == rest.status == "ok" and rest.resumed_from == 3 and rest.steps_done == 6
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    recs = lines(tmp_path / "part")
    assert [r.get("step") for r in recs if "losses" in r] == [1, 2, 3, 4, 5, 6]  # no duplicates
    assert [r["status"] for r in recs if "status" in r] == ["ok"] and "status" in recs[-1]
    assert json.loads((tmp_path / "part" / "config.json").read_text())["resolved"]["steps"] == 6
    assert rest.final_losses == full.final_losses


def test_bare_resume_takes_batch_size_and_steps_from_the_run(tmp_path):
    full = run_training(cfg(tmp_path, "full", batch_size=16), make_step=FakeStep)
    run_training(cfg(tmp_path, "part", batch_size=16, steps=6),
                 make_step=lambda c: FakeStep(c, interrupt_at=5), catch_sigint=False)
    stored = load_run_config(tmp_path / "part")
    rest = run_training(stored.replace(batch_size=None, steps=None), resume=True, make_step=FakeStep)
    assert rest.status == "ok" and rest.steps_done == 6
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    assert full.final_losses == rest.final_losses


def test_nan_stops_the_run_and_keeps_what_was_written(tmp_path):
    out = tmp_path / "run"
    res = run_training(cfg(tmp_path, sample_every=1), make_step=lambda c: FakeStep(c, nan_at=3))
    assert res.status == "nan" and res.steps_done == 3 and "d_loss" in res.message and "step 3" in res.message
    recs = lines(out)
    assert [r["step"] for r in recs if "losses" in r] == [1, 2, 3]
    assert recs[2]["losses"]["d_loss"] is None and recs[-1]["status"] == "nan"
    assert (out / "checkpoint.pt").exists() and (out / "config.json").exists()
    assert (out / "samples" / "step_000002.png").exists() and not (out / "samples" / "final.png").exists()
    assert TrainResult.from_json(out).status == "nan"
    with pytest.raises(TrainError, match="non-finite"):
        run_training(cfg(tmp_path), resume=True, make_step=FakeStep)


def test_keyboard_interrupt_inside_a_step_keeps_last_clean_checkpoint_and_resumes(tmp_path):
    run_training(cfg(tmp_path, "full"), make_step=FakeStep)
    res = run_training(cfg(tmp_path, "int", checkpoint_every=2), make_step=lambda c: FakeStep(c, interrupt_at=4))
    assert res.status == "interrupted" and res.steps_done == 3 and res.checkpoint_step == 2
    assert "--resume" in res.message
    assert torch.load(tmp_path / "int" / "checkpoint.pt", weights_only=False)["step"] == 2
    assert TrainResult.from_json(tmp_path / "int" / "result.json").status == "interrupted"
    assert lines(tmp_path / "int")[-1]["status"] == "interrupted"
    rest = run_training(cfg(tmp_path, "int", checkpoint_every=2), resume=True, make_step=FakeStep)
    assert rest.status == "ok" and rest.resumed_from == 2
    assert losses(tmp_path / "int") == losses(tmp_path / "full")
    assert sum("status" in r for r in lines(tmp_path / "int")) == 1


def test_ctrl_c_stops_after_the_step_with_a_fresh_checkpoint(tmp_path):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    notes = []

    class Rec:
        def note(self, text):
            notes.append(text)

    run_training(cfg(tmp_path, "full"), make_step=FakeStep)
    res = run_training(cfg(tmp_path, "int"), make_step=lambda c: FakeStep(c, sigint_at=3), progress=Rec())
    assert res.status == "interrupted" and res.steps_done == 3 and res.checkpoint_step == 3
    assert any("Ctrl-C" in n for n in notes)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    rest = run_training(cfg(tmp_path, "int"), resume=True, make_step=FakeStep)
    assert rest.status == "ok" and rest.resumed_from == 3
    assert losses(tmp_path / "int") == losses(tmp_path / "full")


def test_png_grids_written(tmp_path):
    out = tmp_path / "run"
    res = run_training(cfg(tmp_path, steps=4, sample_every=2), make_step=FakeStep)
    assert res.status == "ok" and res.warnings == []
    names = sorted(p.name for p in (out / "samples").iterdir())
    assert names == ["final.png", "step_000002.png", "step_000004.png"]
    for name in names:
        raw = (out / "samples" / name).read_bytes()
        assert raw[:8] == PNG_MAGIC
        w, h = struct.unpack(">II", raw[16:24])  # IHDR: 8x8 grid of 28x28 with 2px padding
        assert (w, h) == (8 * 30 + 2, 8 * 30 + 2)


def test_default_sample_every_gives_about_ten_grids(tmp_path):
    run_training(cfg(tmp_path, steps=20, sample_every=None), make_step=FakeStep)
    assert len(list((tmp_path / "run" / "samples").glob("step_*.png"))) == 10


def test_config_mismatch_finished_run_and_missing_run_are_one_line_errors(tmp_path):
    run_training(cfg(tmp_path), make_step=FakeStep)
    cases = [
        (dict(seed=1), "seed"),
        (dict(arch="other"), "arch"),
        (dict(hparams={"lr": 0.5}), "hparams"),
        (dict(batch_size=16), "batch"),
        (dict(), "already finished"),
        (dict(steps=None), "already finished"),
    ]
    for change, needle in cases:
        with pytest.raises(TrainError, match=needle) as ei:
            run_training(cfg(tmp_path, **change), resume=True, make_step=FakeStep)
        assert "\n" not in str(ei.value)
    with pytest.raises(TrainError, match="already holds a run"):
        run_training(cfg(tmp_path), make_step=FakeStep)
    with pytest.raises(TrainError, match="nothing to resume"):
        run_training(cfg(tmp_path, "empty"), resume=True, make_step=FakeStep)
    with pytest.raises(TrainError, match="not both"):
        run_training(cfg(tmp_path, "x", epochs=1), make_step=FakeStep)
    # a larger --steps extends a finished run; overwrite starts afresh
    more = run_training(cfg(tmp_path, steps=8), resume=True, make_step=FakeStep)
    assert more.status == "ok" and more.steps_done == 8 and len(read_log(tmp_path / "run")) == 8
    again = run_training(cfg(tmp_path, steps=2), make_step=FakeStep, overwrite=True)
    assert again.steps_done == 2 and len(read_log(tmp_path / "run")) == 2


def test_result_json_and_config_json_load_back(tmp_path):
    out = tmp_path / "run"
    res = run_training(cfg(tmp_path, steps=3), make_step=FakeStep)
    back = TrainResult.from_json(out / "result.json")
    assert back == res and back.ok and back.steps_total == 3 and back.path == str(out)
    assert TrainResult.from_json(res.to_json()) == res
    meta = json.loads((out / "config.json").read_text())
    assert meta["torch_version"] == torch.__version__
    assert meta["resolved"]["batch_size"] == 32  # the step's hparams["batch_size"]
    assert meta["resolved"]["hparams"]["lr"] == 0.01 and meta["resolved"]["device"] == "cpu"
    assert load_run_config(out) == cfg(tmp_path, steps=3)
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 3 and ck["state"]["extra"] == {"calls": 3} and "torch" in ck["rng"]


def test_epochs_batch_size_and_log_every(tmp_path):
    res = run_training(cfg(tmp_path, steps=None, epochs=2, batch_size=32, log_every=5), make_step=FakeStep)
    # the synthetic set's 512 images: the first 256 train, the other 256 are held out
    assert res.steps_total == 2 * (256 // 32) == res.steps_done
    assert [r["step"] for r in read_log(tmp_path / "run")] == [5, 10, 15, 16]


def test_error_in_a_step_is_recorded(tmp_path):
    res = run_training(cfg(tmp_path), make_step=lambda c: FakeStep(c, error_at=2))
    assert res.status == "error" and "RuntimeError" in res.message and "\n" not in res.message
    assert "boom" in res.traceback and res.steps_done == 1
    assert lines(tmp_path / "run")[-1]["status"] == "error"


def test_labelled_subset_and_held_out_test_error(tmp_path):
    made = []

    def make(c):
        made.append(SemiStep(c))
        return made[-1]

    res = run_training(cfg(tmp_path, steps=2, hparams={"labels": 20}), make_step=make)
    step = made[0]
    x, y = step.labelled
    assert x.shape == (20, 1, 28, 28) and torch.bincount(y, minlength=10).tolist() == [2] * 10
    assert step.tested == (256, 256) and res.test_error == 0.25
    data = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["data"]
    assert data["train_images"] == 256 and data["held_out_images"] == 256
    assert len(data["labelled_indices"]) == 20 and max(data["labelled_indices"]) < 256


def test_balanced_subset():
    d = synthetic(300)
    a, b, c = balanced_subset(d, 25, 0), balanced_subset(d, 25, 0), balanced_subset(d, 25, 1)
    assert torch.equal(a, b) and not torch.equal(a, c) and len(set(a.tolist())) == 25
    counts = torch.bincount(d.labels[a], minlength=10).tolist()
    assert sorted(counts) == [2] * 5 + [3] * 5 and counts[:5] == [3] * 5
    few = ImageData(torch.zeros(4, 1, 2, 2), torch.tensor([0, 0, 0, 1]), "few", 2)
    with pytest.raises(TrainError, match="class 1"):
        balanced_subset(few, 4)


def test_progress_callbacks_and_rich_progress(tmp_path):
    from rich.console import Console

    from gonprof.progress import RichProgress

    calls = []

    class Rec:
        def start(self, total, initial, desc):
            calls.append(("start", total, initial))

        def update(self, k, ls):
            calls.append(("update", k, sorted(ls)))

        def finish(self, result):
            calls.append(("finish", result.status))

    run_training(cfg(tmp_path, "a", steps=3), make_step=FakeStep, progress=Rec())
    assert calls[0] == ("start", 3, 0) and calls[-1] == ("finish", "ok")
    assert [c[1] for c in calls if c[0] == "update"] == [1, 2, 3]
    buf = io.StringIO()
    run_training(cfg(tmp_path, "b", steps=3), make_step=FakeStep,
                 progress=RichProgress(Console(file=buf, width=120), plain_every_s=0))
    text = buf.getvalue()
    assert "steps/s" in text and "d_loss=" in text and "ok" in text


def test_real_mode_resume_matches(tmp_path):
    # the default make_step (gonprof.modes.build.build_step) on a real architecture and mode
    kw = dict(arch="mlp-gan", mode="gan", data="synthetic", sample_every=0, checkpoint_every=100, batch_size=8)
    full = run_training(TrainConfig.of(steps=3, out=str(tmp_path / "full"), **kw))
    assert full.status == "ok", full.message
    assert (tmp_path / "full" / "samples" / "final.png").read_bytes()[:8] == PNG_MAGIC
    cfg = json.loads((tmp_path / "full" / "config.json").read_text())
    assert cfg["resolved"]["models"]["D"]["params"] == 1_460_225  # mlp-gan, really built
    run_training(TrainConfig.of(steps=1, out=str(tmp_path / "part"), **kw))
    rest = run_training(TrainConfig.of(steps=3, out=str(tmp_path / "part"), **kw), resume=True)
    assert rest.status == "ok"
    assert losses(tmp_path / "part") == losses(tmp_path / "full")


def test_time_budget_stops_cleanly_after_the_step_that_crosses_it(tmp_path):
    # A zero budget is crossed by the first step: the run stops there, status ok.
    res = run_training(cfg(tmp_path, steps=None, time_budget_s=0.0), make_step=FakeStep)
    assert res.status == "ok" and res.steps_done == 1
    assert "time budget" in res.message
    assert (tmp_path / "run" / "samples" / "final.png").is_file()
    assert [x["step"] for x in lines(tmp_path / "run") if "losses" in x] == [1]


def test_time_bounded_run_shows_no_step_total(tmp_path):
    import io

    from rich.console import Console

    from gonprof.progress import RichProgress

    buf = io.StringIO()
    progress = RichProgress(console=Console(file=buf, width=120), plain_every_s=0.0)
    run_training(cfg(tmp_path, steps=None, time_budget_s=0.0), make_step=FakeStep, progress=progress)
    text = buf.getvalue()
    assert "step 1/?" in text and "1000000000" not in text
