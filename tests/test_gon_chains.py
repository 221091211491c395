"""GON's persistent chains (init=buffer): the replay buffer's sampling, bound, restart share and
checkpointing, the settings' ranges, and the seed preset left as the seed's procedure."""

from __future__ import annotations

import json

import pytest
import torch

from gonprof.modes import IncompatibleError, get_mode
from gonprof.modes.base import TrainStep
from gonprof.modes.build import build_step
from gonprof.train import TrainConfig, run_training

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def chains(**hp):
    return build_step("gon", "gon-mnist-mlp", seed=0, init="buffer", **hp)


def test_replay_buffer_is_made_full_size_of_noise_with_the_step_and_is_its_replay_state():
    step = chains(replay_size=300)
    buf = step.replay  # made when the step is built (prepare), before any step
    assert buf is not None and step.replay_buffer() is buf
    assert tuple(buf.shape) == (300, 1, 28, 28)
    assert buf.min() >= -1 and buf.max() <= 1 and buf.std() > 0.5  # U[-1, 1]: sd 1/sqrt(3) = 0.577
    kept, age = step.state_tensors()["replay"]
    assert kept is buf and age.shape == (300,) and int(age.sum()) == 0  # every chain starts as noise, age 0
    assert kept.nbytes + age.nbytes == 300 * 784 * 4 + 300 * 8  # float32 chains and int64 ages: 943,200 B
    assert TrainStep.state_tensors(step) == {}  # the base's default: no state beyond models and optimizers


def test_share_of_chains_restarted_from_noise_follows_replay_restart():
    step = chains(replay_size=500, replay_restart=0.25)
    step.replay_buffer().fill_(0.5)  # a buffer entry is all 0.5; a restarted chain is U[-1, 1] noise
    torch.manual_seed(0)
    x0, restarted = step.replay_starts(4000)
    from_noise = (x0 != 0.5).flatten(1).any(1)
    assert torch.equal(from_noise, restarted)  # the mask says which starts are noise, and they are
    assert restarted.float().mean().item() == pytest.approx(0.25, abs=0.02)  # binomial sd 0.007
    for share, want in ((0.0, 0), (1.0, 4000)):
        step.hparams["replay_restart"] = share
        assert int(step.replay_starts(4000)[1].sum()) == want


def test_ring_keeps_the_newest_chains_within_its_size():
    step = chains(replay_size=5, inner_steps=10, sample_realness=0.0)
    step.replay_buffer()
    for v in range(1, 8):  # push 7 one-image chains whose pixels all equal v / 10, each 11 iterations old
        step.replay_push(torch.full((1, 1, 28, 28), v / 10), torch.tensor([11]))
    assert step.replay.shape[0] == 5  # the bound: never more than replay_size
    newest = step.newest_chains(3)[:, 0, 0, 0].tolist()
    assert newest == pytest.approx([0.7, 0.6, 0.5])
    assert sorted(step.replay[:, 0, 0, 0].tolist()) == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])  # 0.1, 0.2 gone
    step.replay_push(torch.full((12, 1, 28, 28), -0.5), torch.full((12,), 11))  # only the last 5 stay
    assert step.replay.shape[0] == 5 and bool((step.replay == -0.5).all())
    more = step.newest_chains(8)  # asks for more than the ring holds: the rest is noise
    assert more.shape[0] == 8 and bool((more[:5] == -0.5).all()) and not bool((more[5:] == -0.5).all())


def test_a_step_with_init_buffer_runs_its_short_chains_and_writes_them_back():
    step = chains(replay_size=100, inner_steps=3, early_stop=1000, replay_restart=0.0)
    before = step.replay_buffer().clone()
    torch.manual_seed(1)
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    losses = step.step(real)
    assert losses["inner_iters"].item() == 3 and losses["restarts"].item() == 0
    changed = (step.replay != before).flatten(1).any(1)
    assert int(changed.sum()) == 8 and bool(changed[:8].all())  # the 8 new chains sit in the ring's first slots
    assert step.replay_head == 8
    drawn = step.sample(4)  # drawing samples leaves the buffer as it was
    assert drawn.shape == (4, 1, 28, 28) and step.replay_head == 8


def test_init_noise_keeps_no_buffer():
    step = build_step("gon", "gon-mnist-mlp", seed=0, init="noise", inner_steps=2)
    step.step(torch.rand(4, 1, 28, 28) * 2 - 1)
    assert step.replay is None and step.state_tensors() == {}


def test_data_noise_changes_only_the_real_images_the_update_sees():
    torch.manual_seed(0)
    a = build_step("gon", "gon-mnist-mlp", seed=0, inner_steps=2, data_noise=0.0)
    b = build_step("gon", "gon-mnist-mlp", seed=0, inner_steps=2, data_noise=0.1)
    real = torch.rand(4, 1, 28, 28) * 2 - 1
    torch.manual_seed(3)
    la = a.step(real)
    torch.manual_seed(3)
    lb = b.step(real)
    assert la["d_loss"].item() != lb["d_loss"].item()
    assert la["sample_loss"].item() == lb["sample_loss"].item()  # the chains are the same before the update


def test_spectral_norm_bounds_every_layers_largest_singular_value():
    step = chains(spectral_norm=True, inner_steps=2)
    linears = [m for m in step.D.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 5 and all(hasattr(m, "parametrizations") for m in linears)
    step.step(torch.rand(4, 1, 28, 28) * 2 - 1)  # a training forward runs the power iteration
    for _ in range(30):  # more power iterations converge the estimate of the top singular value
        with torch.no_grad():
            step.D(torch.zeros(1, 1, 28, 28))
    top = max(torch.linalg.matrix_norm(m.weight, ord=2).item() for m in linears)
    assert top == pytest.approx(1.0, abs=0.02)


def test_resume_continues_with_the_same_replay_buffer(tmp_path):
    def cfg(name, steps):
        return TrainConfig.of(arch="gon-mnist-mlp", mode="gon", data="synthetic", sample_every=0, log_every=1,
                              checkpoint_every=1, steps=steps, out=str(tmp_path / name), batch_size=4,
                              hparams={"init": "buffer", "replay_size": 16, "inner_steps": 2})

    run_training(cfg("full", 4))
    run_training(cfg("cut", 2))
    half = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["state"]["extra"]
    assert tuple(half["replay"].shape) == (16, 1, 28, 28) and half["replay_head"] == 8
    run_training(cfg("cut", 4), resume=True)
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["state"]["extra"]
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["state"]["extra"]
    assert full["replay_head"] == cut["replay_head"] == 0  # 4 steps of 4 chains filled the 16-slot ring once
    assert torch.equal(full["replay"], cut["replay"])  # the resumed run drew from the buffer it saved


def test_a_resumed_run_keeps_the_settings_it_started_with_when_a_default_changes(tmp_path):
    """A run made when replay_reset's default was 0 resumes with the reset off (its log grows no resets
    column), though it gave no --set: the step is built from the hyper-parameters config.json resolved."""
    cfg = dict(arch="gon-mnist-mlp", mode="gon", data="synthetic", sample_every=0, log_every=1, checkpoint_every=1,
               out=str(tmp_path / "old"), batch_size=4, hparams={"replay_size": 16, "inner_steps": 2})
    run_training(TrainConfig.of(steps=2, **cfg))
    stored = json.loads((tmp_path / "old" / "config.json").read_text())
    assert stored["resolved"]["hparams"]["replay_reset"] == 0.2  # today's default
    stored["resolved"]["hparams"]["replay_reset"] = 0.0  # as a run made before the default changed
    (tmp_path / "old" / "config.json").write_text(json.dumps(stored))
    run_training(TrainConfig.of(steps=4, **cfg), resume=True)
    lines = [json.loads(x) for x in (tmp_path / "old" / "log.jsonl").read_text().splitlines()]
    later = [x["losses"] for x in lines if x.get("step", 0) > 2 and "losses" in x]
    assert len(later) == 2 and not any("resets" in losses for losses in later)


@pytest.mark.parametrize("name,value", [("init", "bufer"), ("replay_size", 0), ("replay_restart", 1.5),
                                        ("replay_restart", -0.1), ("data_noise", 2.0),
                                        ("spectral_norm", "maybe"), ("replay_reset", 1.5), ("replay_reset", -0.1),
                                        ("replay_reset_age", -1), ("replay_reset_noise", 2.0),
                                        ("sample_from", "best"), ("sample_realness", 1.5)])
def test_bad_chain_settings_are_refused_in_one_line(name, value):
    with pytest.raises(IncompatibleError) as e:
        get_mode("gon").hparams(**{name: value})
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(f"hyper-parameter {name}=")


def test_chain_settings_ranges_are_declared():
    spec = get_mode("gon")
    assert spec.param("init").range_text() == "noise | buffer"
    assert spec.param("replay_size").range_text() == "from 1 to 1,000,000"
    assert spec.param("replay_restart").range_text() == "from 0 to 1"
    assert spec.param("data_noise").range_text() == "from 0 to 1"


def test_seed_path_refuses_a_replay_buffer():
    with pytest.raises(IncompatibleError, match="init=buffer needs the batched path"):
        build_step("gon", "gon-mnist-mlp", preset="seed", init="buffer")


def test_seed_preset_stays_the_seeds_procedure():
    hp = get_mode("gon").hparams("seed")
    assert (hp["init"], hp["inner_steps"], hp["inner_t_max"], hp["early_stop"]) == ("noise", 1000, 50, 30)
    assert hp["inner_lr"] == 0.02 and hp["batch_size"] == 10 and hp["fakes"] == 1 and hp["update_batch"] == 1
    assert (hp["inner_opt"], hp["lr"], hp["batched"], hp["data_noise"], hp["spectral_norm"]) == \
        ("adam", 5e-6, False, 0.0, False)


def test_a_rows_inner_iterations_are_the_mean_of_its_logged_steps(tmp_path):
    from gonprof.comparison.row import mean_inner_iters

    lines = [{"step": 1, "losses": {"d_loss": 0.3, "inner_iters": 20.0}},
             {"step": 2, "losses": {"d_loss": 0.3, "inner_iters": 11.0}},
             {"status": "ok"},
             {"step": 3, "losses": {"d_loss": 0.3, "inner_iters": 14.0}}]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert mean_inner_iters(str(tmp_path)) == pytest.approx((20 + 11 + 14) / 3)
    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 1, "losses": {"d_loss": 0.3}}) + "\n")
    assert mean_inner_iters(str(tmp_path)) is None  # a mode without an inner loop


def test_the_cost_table_shows_inner_iterations_only_where_a_row_has_them():
    from gonprof.records import RunRecord
    from gonprof.render.compare import compare_sheets

    gon = RunRecord(mode="gon", arch="gon-mnist-mlp", inner_iters_per_step=19.5)
    gan = RunRecord(mode="lsgan", arch="lsgan-original")
    cost = compare_sheets([gon, gan])[0]
    col = [c.header for c in cost.columns].index("inner iters/step (mean)")
    assert [row.cells[col] for row in cost.rows] == ["19.5", "-"]
    cost = compare_sheets([gan])[0]
    assert "inner iters/step (mean)" not in [c.header for c in cost.columns]
    assert "sample-iters/s" not in [c.header for c in cost.columns]


def test_sample_iterations_per_second_is_batch_times_inner_iterations_over_the_step_median():
    from gonprof.records import ProfileRecord, RunRecord, TimingStats
    from gonprof.render.compare import compare_sheets

    median = TimingStats(n=3, time_s_median=0.08, time_s_p10=0.07, time_s_p90=0.09, time_s_mean=0.08,
                         time_s_min=0.07, time_s_max=0.09, spread=0.25, noisy=False)
    prof = ProfileRecord(arch="gon-mnist-mlp", mode="gon", batch_size=64, step_time=median)
    gon = RunRecord(mode="gon", arch="gon-mnist-mlp", batch_size=64, inner_iters_per_step=20.0, profile=prof)
    assert gon.sample_iters_per_s == pytest.approx(64 * 20 / 0.08)  # 16,000 chain-iterations a second
    assert RunRecord(mode="lsgan", arch="lsgan-original", batch_size=64, profile=prof).sample_iters_per_s is None
    seed = RunRecord(mode="gon", arch="gon-mnist-mlp", batch_size=10, chains_per_step=1, inner_iters_per_step=20.0,
                     profile=prof)
    assert seed.sample_iters_per_s == pytest.approx(1 * 20 / 0.08)  # --preset seed: one chain a step, not 10
    assert build_step("gon", "gon-mnist-mlp", preset="seed").chains_per_step(10) == 1  # the seed's fakes
    assert chains().chains_per_step(64) == 64  # fakes 0: as many chains as the real batch
    assert build_step("lsgan", "lsgan-original").chains_per_step(64) is None  # no inner loop
    cost = compare_sheets([gon])[0]
    col = [c.header for c in cost.columns].index("sample-iters/s")
    assert cost.rows[0].cells[col] == "16,000"


def test_samples_pass_over_chains_restarted_from_noise_in_their_last_step():
    step = chains(replay_size=6, inner_steps=10, sample_realness=0.0)
    step.replay_buffer()
    # oldest to newest: ages 30, 10 (restarted last step), 25, 10, 40 and pixels 0.1 .. 0.5
    step.replay_push(torch.stack([torch.full((1, 28, 28), v / 10) for v in range(1, 6)]),
                     torch.tensor([30, 10, 25, 10, 40]))
    got = step.newest_chains(4)[:, 0, 0, 0].tolist()
    assert got == pytest.approx([0.5, 0.3, 0.1, 0.4])  # the ripe ones newest first, then the newest young one


def test_samples_pass_over_chains_d_rates_below_sample_realness(monkeypatch):
    step = chains(replay_size=5, inner_steps=10, sample_realness=0.25, sample_chunk=2)
    step.replay_buffer()
    # oldest to newest, all ripe: pixels 0.1 .. 0.5; D (faked) rates each chain real with its pixel value
    step.replay_push(torch.stack([torch.full((1, 28, 28), v / 10) for v in range(1, 6)]), torch.full((5,), 40))
    seen = []

    def realness(x):
        seen.append(x.shape[0])
        return x[:, 0, 0, 0].clone()

    monkeypatch.setattr(step, "realness", realness)
    got = step.newest_chains(4)[:, 0, 0, 0].tolist()
    assert got == pytest.approx([0.5, 0.4, 0.3, 0.2])  # 0.3-0.5 rated >= 0.25 first, then the newest stuck one
    assert seen == [2, 2, 1]  # D rated every ripe chain, sample_chunk at a time: only 3 of them pass
    seen.clear()
    assert step.newest_chains(2)[:, 0, 0, 0].tolist() == pytest.approx([0.5, 0.4])
    assert seen == [2]  # the first chunk gave enough: D rated no more chains
    # the ring wrapped: 0.6 and 0.7 overwrote 0.1 and 0.2; newest first 0.7, 0.6, 0.5, 0.4, 0.3
    step.replay_push(torch.stack([torch.full((1, 28, 28), v / 10) for v in (6, 7)]), torch.full((2,), 40))
    step.hparams["sample_realness"] = 0.45
    got = step.newest_chains(5)[:, 0, 0, 0].tolist()
    assert got == pytest.approx([0.7, 0.6, 0.5, 0.4, 0.3])  # three pass, then the stuck ones newest first
    assert step.newest_chains(2)[:, 0, 0, 0].tolist() == pytest.approx([0.7, 0.6])
    step.hparams["sample_realness"] = 0.0
    seen.clear()
    assert step.newest_chains(2)[:, 0, 0, 0].tolist() == pytest.approx([0.7, 0.6]) and seen == []  # no pass


def test_a_chains_age_is_its_iterations_since_its_noise():
    step = chains(replay_size=64, inner_steps=3, early_stop=1000, replay_restart=0.0)
    real = torch.rand(32, 1, 28, 28) * 2 - 1
    torch.manual_seed(0)
    step.step(real)  # 32 chains from the all-noise buffer (age 0): age 3 each
    assert sorted(step.replay_age.tolist()) == [0] * 32 + [3] * 32
    step.hparams["replay_restart"] = 1.0
    step.step(real)  # every chain restarted from noise: age 3 again, over the 32 untouched noise slots
    assert sorted(step.replay_age.tolist()) == [3] * 64


def test_the_fast_default_is_the_studys_chosen_row_and_preset_noise_the_fast_path_before_it():
    from gonprof.comparison.presets import GON_BUFFER_RESET, GON_NOISE, PRESETS

    spec = get_mode("gon")
    default, noise = spec.hparams(), spec.hparams("noise")
    assert {k: default[k] for k in GON_BUFFER_RESET} == GON_BUFFER_RESET
    assert {k: noise[k] for k in GON_NOISE} == GON_NOISE
    for name in ("gon-chains", "gon-chains-all"):
        rows = PRESETS[name]["pairs"]
        assert [r[3] if len(r) > 3 else r[0] for r in rows] == ["noise", "buffer", "buffer-data-noise",
                                                                "buffer-reset", "lsgan"]
    assert PRESETS["gon-chains"]["classes"] == [0] and "classes" not in PRESETS["gon-chains-all"]


def realness_loss(r: float) -> float:
    """The inner loss of a chain D rates real with probability r: CE on the softmax output, softplus(1 - 2 r)."""
    return torch.nn.functional.softplus(torch.tensor(1.0 - 2.0 * r)).item()


def test_a_stuck_chain_goes_back_as_a_copy_of_a_healthy_one_of_its_batch():
    step = chains(replay_reset=0.2, replay_reset_age=100, replay_reset_noise=0.0)
    # chains 0..3 (pixels 0.1 .. 0.4): healthy and old, stuck (realness 0.05, age 200), low but young, healthy
    x = torch.stack([torch.full((1, 28, 28), v / 10) for v in range(1, 5)])
    age = torch.tensor([300, 200, 40, 10])
    loss = torch.tensor([realness_loss(r) for r in (0.6, 0.05, 0.05, 0.5)])
    torch.manual_seed(0)
    kept, kept_age = step.reset_stuck(x, age, loss)
    assert step.last_resets == 1
    assert torch.equal(kept[[0, 2, 3]], x[[0, 2, 3]]) and kept_age[[0, 2, 3]].tolist() == [300, 40, 10]
    donor = kept[1, 0, 0, 0].item()
    assert donor == pytest.approx(0.1) or donor == pytest.approx(0.4)  # a copy of chain 0 or chain 3
    assert bool((kept[1] == kept[1, 0, 0, 0]).all())  # a whole copy, no noise at sigma 0
    assert kept_age[1].item() == (300 if donor == pytest.approx(0.1) else 10)  # with its donor's age
    assert torch.equal(x[1], torch.full((1, 28, 28), 0.2))  # the caller's batch is left as it was
    donors = set()
    for seed in range(20):  # the donor is drawn among the healthy chains only, both of them in 20 draws
        torch.manual_seed(seed)
        donors.add(round(step.reset_stuck(x, age, loss)[0][1, 0, 0, 0].item(), 3))
    assert donors == {0.1, 0.4}


def test_a_reset_copy_carries_gaussian_noise_of_replay_reset_noise():
    step = chains(replay_reset=0.2, replay_reset_age=0, replay_reset_noise=0.05)
    x = torch.zeros(2, 1, 28, 28)
    loss = torch.tensor([realness_loss(0.9), realness_loss(0.01)])
    torch.manual_seed(0)
    kept, _ = step.reset_stuck(x, torch.tensor([0, 0]), loss)
    assert torch.equal(kept[0], x[0])
    assert kept[1].std().item() == pytest.approx(0.05, rel=0.1)  # 784 draws: the sd's relative error ~2.5%


def test_no_reset_when_off_or_when_no_chain_of_the_batch_is_healthy():
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    age = torch.tensor([500, 500, 500])
    stuck = torch.tensor([realness_loss(0.05)] * 3)
    step = chains(replay_reset=0.2, replay_reset_age=100)
    kept, kept_age = step.reset_stuck(x, age, stuck)
    assert torch.equal(kept, x) and torch.equal(kept_age, age) and step.last_resets == 0
    step = chains(replay_reset=0.0)
    mixed = torch.tensor([realness_loss(0.9), realness_loss(0.05), realness_loss(0.05)])
    assert step.reset_stuck(x, age, mixed)[0] is x and step.last_resets == 0


def test_a_step_with_replay_reset_logs_its_resets_and_writes_the_copies_back():
    step = chains(replay_size=8, inner_steps=2, replay_restart=0.0, replay_reset=0.2, replay_reset_age=0,
                  replay_reset_noise=0.0)
    made = torch.stack([torch.full((1, 28, 28), v) for v in (0.5, -0.5, -0.5, -0.5)])

    def optimise(x0, batched=None):  # a stand-in inner loop: chain 0 healthy, chains 1-3 stuck
        step.last_iters = 2
        step.last_loss = torch.tensor([realness_loss(r) for r in (0.6, 0.05, 0.05, 0.05)])
        return made.clone()

    step.optimise = optimise
    losses = step.step(torch.rand(4, 1, 28, 28) * 2 - 1)
    assert losses["resets"].item() == 3
    assert bool((step.replay[:4] == 0.5).all())  # the three stuck chains went back as copies of chain 0
    assert step.replay_age[:4].tolist() == [2, 2, 2, 2]
    off = chains(replay_size=64, inner_steps=2, replay_reset=0.0)
    assert "resets" not in off.step(torch.rand(4, 1, 28, 28) * 2 - 1)


def test_realest_sampling_takes_the_ripe_chains_d_rates_most_real_first():
    step = chains(replay_size=6, inner_steps=10, sample_from="realest")
    step.replay_buffer()
    # pixels 0.1 .. 0.6, ages: 0.5 is young (restarted in its last step)
    step.replay_push(torch.stack([torch.full((1, 28, 28), v / 10) for v in range(1, 7)]),
                     torch.tensor([30, 30, 30, 30, 5, 30]))
    step.realness = lambda x: x.flatten(1).mean(1)  # a stand-in D: realness = the mean pixel
    assert step.realest_chains(6)[:, 0, 0, 0].tolist() == pytest.approx([0.6, 0.4, 0.3, 0.2, 0.1, 0.5])
    more = step.realest_chains(8)
    assert more.shape[0] == 8 and not bool((more[6:] == more[6, 0, 0, 0]).all())  # the rest is noise
    step.sample(3)  # sample() goes through realest_chains and leaves the buffer as it was
    assert step.replay_head == 0 and sorted(step.replay[:, 0, 0, 0].tolist()) == pytest.approx(
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_reset_settings_ranges_are_declared():
    spec = get_mode("gon")
    assert spec.param("replay_reset").range_text() == "from 0 to 1"
    assert spec.param("replay_reset_age").range_text() == "from 0 to 1,000,000"
    assert spec.param("replay_reset_noise").range_text() == "from 0 to 1"
    assert spec.param("sample_from").range_text() == "newest | realest"
    assert spec.param("sample_realness").range_text() == "from 0 to 1"
