"""Steps of several kinds (one warning naming the phases, not "noisy"), and ``prof.iterate(loader)``: a loop
wrapped without ``prof.step()`` or breaks, its batches fetched outside the measured interval.  Fake clocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fake_clock import FakeClock
from gonprof.profiler import Profiler


def _model():
    torch.manual_seed(0)
    lin = nn.Linear(4, 1)
    return lin, torch.optim.SGD(lin.parameters(), lr=0.01), torch.randn(2, 4)


def _train(lin, opt, x):
    opt.zero_grad()
    lin(x).sum().backward()
    opt.step()


def _wgan_like(g_every: int, g_offset: int = 0):
    """A loop that runs ``d_step`` (10 ms) every step and ``g_step`` (40 ms more) on steps i with
    i % g_every == g_offset, as a WGAN that updates G every fifth iteration; warmup 2 (step 1 measures),
    5 timed steps."""
    lin, opt, x = _model()
    clock = FakeClock()
    with Profiler(models=lin, optimizers=opt, warmup=2, active=5, clock=clock) as prof:
        for i in range(20):
            with prof.phase("d_step"):
                _train(lin, opt, x)
                clock.t += 0.010
            if i % g_every == g_offset:
                with prof.phase("g_step"):
                    clock.t += 0.040
            prof.step()
            if prof.done:
                break
    return prof.report()


def test_timed_steps_with_a_phase_the_measuring_step_lacks_carry_one_warning_not_noise():
    rec = _wgan_like(g_every=5, g_offset=4)  # g_step on step 4 only (timed steps 2-6)
    assert [s.step_time_s for s in rec.steps] == pytest.approx([0.010, 0.010, 0.050, 0.010, 0.010])
    kinds = [w for w in rec.warnings if w.startswith("steps of several kinds")]
    assert len(kinds) == 1
    assert "timed steps ran phases the measuring step did not: g_step (in 1 of 5 timed steps)" in kinds[0]
    assert "(step 1, phases: d_step)" in kinds[0]
    # sorted times 10, 10, 10, 10, 50 ms: p10 = 10 ms, p90 = 10 + 0.6 * 40 = 34 ms, spread (34 - 10) / 10 = 240 %
    assert rec.step_time.spread == pytest.approx(2.4)
    assert "step-time spread (240%) comes from timed steps of several kinds, not from noise" in kinds[0]
    assert rec.step_time.noisy is False
    assert rec.phase_time["g_step"].n == 1 and rec.phase_time["d_step"].n == 5


def test_a_measuring_step_with_a_phase_some_timed_steps_lack_is_named_the_other_way():
    rec = _wgan_like(g_every=2, g_offset=1)  # g_step on odd steps: the measuring step 1, timed steps 3 and 5
    [kinds] = [w for w in rec.warnings if w.startswith("steps of several kinds")]
    assert "the measuring step ran phases some timed steps did not: g_step (not in 3 of 5 timed steps)" in kinds
    assert "(step 1, phases: d_step, g_step)" in kinds
    assert "timed steps ran phases" not in kinds


def test_timed_steps_all_of_the_measuring_steps_kind_get_no_warning_and_stay_noisy():
    lin, opt, x = _model()
    clock = FakeClock()
    with Profiler(models=lin, optimizers=opt, warmup=2, active=5, clock=clock) as prof:
        for i in range(7):
            with prof.phase("d_step"):
                _train(lin, opt, x)
                clock.t += 0.050 if i == 4 else 0.010  # one slow step of the same kind: noise
            prof.step()
    rec = prof.report()
    assert not [w for w in rec.warnings if "kinds" in w]
    assert rec.step_time.noisy is True


def test_steps_that_all_run_the_same_phases_get_no_warning():
    rec = _wgan_like(g_every=1, g_offset=0)  # every step runs d_step and g_step
    assert not [w for w in rec.warnings if "kinds" in w]


def test_timed_steps_all_of_one_other_kind_are_named_but_their_spread_is_not_explained_by_it():
    rec = _wgan_like(g_every=100, g_offset=1)  # g_step on the measuring step only
    [kinds] = [w for w in rec.warnings if w.startswith("steps of several kinds")]
    assert "g_step (not in 5 of 5 timed steps)" in kinds and "spread" not in kinds


class SlowLoader:
    """Batches whose fetch takes 1 s of the fake clock; counts its iterators and the batches it gave."""

    def __init__(self, clock: FakeClock, x: torch.Tensor, n: int) -> None:
        self.clock, self.x, self.n = clock, x, n
        self.iterators = 0
        self.fetched = 0

    def __iter__(self):
        self.iterators += 1
        self.clock.t += 5.0  # starting it (a DataLoader starts its workers here)
        return self._batches()

    def _batches(self):
        for _ in range(self.n):
            self.clock.t += 1.0
            self.fetched += 1
            yield self.x


def test_iterate_steps_after_each_batch_keeps_the_fetch_out_and_stops_when_done():
    lin, opt, x = _model()
    clock = FakeClock()
    loader = SlowLoader(clock, x, n=100)
    with Profiler(models=lin, optimizers=opt, warmup=2, active=3, clock=clock) as prof:
        for batch in prof.iterate(loader):
            _train(lin, opt, batch)
            clock.t += 0.010
    rec = prof.report()
    assert prof.done and rec.status == "ok" and rec.timed_steps == 3
    # 1 s of fetching before each step is outside it: every timed step is the body's 10 ms
    assert [s.step_time_s for s in rec.steps] == pytest.approx([0.010] * 3)
    assert rec.measuring_step_time_s == pytest.approx(0.010)
    assert loader.fetched == 5  # 2 untimed + 3 timed steps: no batch fetched after the last step


def test_iterate_in_nested_loops_needs_no_break_and_starts_no_loader_once_done():
    lin, opt, x = _model()
    clock = FakeClock()
    loader = SlowLoader(clock, x, n=2)
    bodies = 0
    with Profiler(models=lin, optimizers=opt, warmup=2, active=3, clock=clock) as prof:
        for _epoch in range(10):
            for batch in prof.iterate(loader):
                _train(lin, opt, batch)
                clock.t += 0.010
                bodies += 1
    rec = prof.report()
    assert bodies == 5 and rec.timed_steps == 3
    # starting the loader each epoch (5 s) and each fetch (1 s) are outside the steps
    assert [s.step_time_s for s in rec.steps] == pytest.approx([0.010] * 3)
    assert loader.iterators == 3  # epochs 0-2 (2 + 2 + 1 batches); epochs 3-9 never start the loader
    assert loader.fetched == 5


def test_iterate_does_not_step_twice_when_the_body_steps_itself():
    lin, opt, x = _model()
    clock = FakeClock()
    with Profiler(models=lin, optimizers=opt, warmup=2, active=3, clock=clock) as prof:
        bodies = 0
        for batch in prof.iterate([x] * 10):
            _train(lin, opt, batch)
            clock.t += 0.010
            bodies += 1
            prof.step()
    assert bodies == 5 and prof.report().timed_steps == 3


def test_iterate_over_a_short_loader_ends_with_it_and_says_how_many_steps_ran():
    lin, opt, x = _model()
    with Profiler(models=lin, optimizers=opt, warmup=2, active=3, clock=FakeClock()) as prof:
        for batch in prof.iterate([x] * 3):
            _train(lin, opt, batch)
    rec = prof.report()
    assert rec.timed_steps == 1 and rec.message == "only 1 of 3 timed steps ran"


def test_iterate_outside_the_with_block_is_refused():
    lin, opt, x = _model()
    prof = Profiler(models=lin, optimizers=opt)
    with pytest.raises(RuntimeError, match=r"iterate\(\) before its `with` block"):
        next(iter(prof.iterate([x])))


def _wgan_gp_models():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    G = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
    return D, G, opt_d, opt_g


def _critic_update(D, G, opt_d, real):
    fake = G(torch.randn(real.shape[0], 4)).detach()
    eps = torch.rand(real.shape[0], 1)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
    loss = D(fake).mean() - D(real).mean() + 10 * ((grad.norm(2, dim=1) - 1) ** 2).mean()
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()


def _generator_update(D, G, opt_g, n):
    opt_g.zero_grad(set_to_none=True)
    (-D(G(torch.randn(n, 4))).mean()).backward()
    opt_g.step()


def rounds(loader, n):
    """``n`` batches at a time (as docs/embedding.md writes it): one WGAN round each."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == n:
            yield group
            group = []


def test_one_step_as_a_whole_wgan_round_has_one_kind_and_counts_both_updates():
    """docs/embedding.md: ``prof.iterate(rounds(loader, 5))`` makes each step five critic updates and one
    generator update, so the measuring step counts both and the steps are all of one kind."""
    D, G, opt_d, opt_g = _wgan_gp_models()
    loader = [torch.randn(4, 8) for _ in range(60)]
    with Profiler(models={"D": D, "G": G}, optimizers={"D": opt_d, "G": opt_g}, warmup=2, active=3) as prof:
        for batches in prof.iterate(rounds(loader, 5)):
            with prof.phase("critic"):
                for real in batches:
                    _critic_update(D, G, opt_d, real)
            with prof.phase("generator"):
                _generator_update(D, G, opt_g, 4)
    rec = prof.report()
    assert rec.status == "ok" and rec.timed_steps == 3
    assert not [w for w in rec.warnings if "kinds" in w]
    assert set(rec.flops.flops_by_phase) == {"critic", "generator"}
    assert all(v > 0 for v in rec.flops.flops_by_phase.values())


def test_a_generator_update_every_fifth_step_is_named_by_the_warning():
    """The public WGAN-GP loop as it is (a step per critic update, G every fifth): the record names g_step."""
    D, G, opt_d, opt_g = _wgan_gp_models()
    loader = [torch.randn(4, 8) for _ in range(60)]
    with Profiler(models={"D": D, "G": G}, optimizers={"D": opt_d, "G": opt_g}, warmup=2, active=5) as prof:
        for i, real in enumerate(prof.iterate(loader)):
            with prof.phase("d_step"):
                _critic_update(D, G, opt_d, real)
            if i % 5 == 4:
                with prof.phase("g_step"):
                    _generator_update(D, G, opt_g, 4)
    rec = prof.report()
    [kinds] = [w for w in rec.warnings if w.startswith("steps of several kinds")]
    assert "g_step (in 1 of 5 timed steps)" in kinds and set(rec.flops.flops_by_phase) == {"d_step"}
