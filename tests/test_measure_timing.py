"""Timing statistics with an injected fake clock."""

from __future__ import annotations

import math

import pytest

from fake_clock import FakeClock
from gonprof.measure.timing import Timer, percentile, summarize


def test_timer_with_fake_clock():
    clock = FakeClock(100.0)
    timer = Timer(clock=clock)
    for d in [0.5, 0.25, 1.0]:
        with timer:
            clock.t += d
    timer.start()
    clock.t += 2.0
    assert timer.stop() == 2.0
    assert timer.times == [0.5, 0.25, 1.0, 2.0]
    s = timer.stats()
    assert s.n == 4
    assert s.time_s_median == 0.75
    assert s.time_s_mean == pytest.approx(3.75 / 4)
    assert (s.time_s_min, s.time_s_max) == (0.25, 2.0)


def test_summary_statistics_by_hand():
    s = summarize([float(x) for x in range(10, 0, -1)])  # 1..10 in any order
    # linear interpolation: position q*(n-1) in the sorted list
    assert s.time_s_median == 5.5
    assert s.time_s_p10 == pytest.approx(1.9)  # 1 + 0.9 * (2 - 1)
    assert s.time_s_p90 == pytest.approx(9.1)
    assert s.time_s_mean == 5.5
    assert s.spread == pytest.approx((9.1 - 1.9) / 5.5)
    assert s.noisy is True


def test_noisy_flag_threshold():
    quiet = summarize([1.0, 1.01, 0.99, 1.02, 0.98] * 4)
    assert quiet.noisy is False and quiet.noisy_threshold == 0.2
    assert quiet.spread < 0.2
    # spread 0.3 is noisy at the default 0.2 and not at 0.5
    xs = [0.85] * 5 + [1.0] * 10 + [1.15] * 5
    assert summarize(xs).noisy is True
    assert summarize(xs, noisy_threshold=0.5).noisy is False


def test_edge_cases():
    e = summarize([])
    assert e.n == 0 and math.isnan(e.time_s_median) and e.noisy is False
    one = summarize([0.003])
    assert (one.time_s_median, one.time_s_p10, one.time_s_p90, one.spread) == (0.003, 0.003, 0.003, 0.0)
    assert percentile([1.0, 2.0], 0.25) == 1.25
    with pytest.raises(RuntimeError):
        Timer().stop()


@pytest.mark.cuda
def test_cuda_timer_synchronises():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    timer = Timer(device="cuda")
    assert timer.sync is not None
    x = torch.randn(1024, 1024, device="cuda")
    with timer:
        (x @ x).sum()
    assert timer.times[0] > 0
