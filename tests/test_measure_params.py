"""Parameter counts and persistent-state bytes against arithmetic."""

from __future__ import annotations

import torch
import torch.nn as nn

from gonprof.measure.params import count_params, persistent_state

F32 = 4


def test_counts_trainable_frozen_buffers_and_dtypes():
    net = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20), nn.Linear(20, 3))
    for p in net[0].parameters():
        p.requires_grad_(False)
    net[2].to(torch.float64)
    mp = count_params(net, "D")
    l0, bn, l2 = 10 * 20 + 20, 20 + 20, 20 * 3 + 3
    assert mp.name == "D"
    assert mp.params_total == l0 + bn + l2
    assert mp.params_frozen == l0
    assert mp.params_trainable == bn + l2
    assert mp.param_tensors == 6
    # BatchNorm1d buffers: running_mean (20), running_var (20), num_batches_tracked (1, int64)
    assert mp.buffer_tensors == 3 and mp.buffer_elements == 41
    assert mp.buffer_bytes == 40 * F32 + 8
    assert mp.buffer_bytes_by_dtype == {"float32": 160, "int64": 8}
    assert mp.param_bytes_by_dtype == {"float32": (l0 + bn) * F32, "float64": l2 * 8}
    assert mp.param_bytes == (l0 + bn) * F32 + l2 * 8


def test_shared_parameter_counted_once():
    a = nn.Linear(5, 5, bias=False)
    net = nn.Sequential(a, nn.ReLU(), a)
    assert count_params(net).params_total == 25


def test_persistent_bytes_adam_exact():
    d = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    g = nn.Linear(4, 8)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    opt_g = torch.optim.SGD(g.parameters(), lr=1e-3)  # no momentum: no state
    x = torch.randn(3, 4)
    opt_d.zero_grad()
    opt_g.zero_grad()
    d(g(x)).sum().backward()
    opt_d.step()
    opt_g.step()
    pb = persistent_state({"D": d, "G": g}, {"D": opt_d, "G": opt_g})
    nd = 8 * 16 + 16 + 16 + 1
    ng = 4 * 8 + 8
    assert pb.param_bytes_by_model == {"D": nd * F32, "G": ng * F32}
    assert pb.grad_bytes_by_model == {"D": nd * F32, "G": ng * F32}
    # Adam: exp_avg + exp_avg_sq per parameter element, plus a float32 scalar `step` per tensor
    adam = 2 * nd * F32 + 4 * 4
    assert pb.optimizer_state_bytes_by_optimizer == {"D": adam, "G": 0}
    assert pb.optimizer_state_bytes == adam
    assert pb.total_bytes == (nd + ng) * F32 * 2 + adam
    # gradients set to None are not counted
    opt_d.zero_grad(set_to_none=True)
    assert persistent_state({"D": d}, {"D": opt_d}).grad_bytes == 0


def test_sgd_momentum_state_and_frozen_params_without_state():
    m = nn.Linear(6, 2)
    m.bias.requires_grad_(False)
    opt = torch.optim.SGD([m.weight], lr=0.1, momentum=0.9)
    m(torch.randn(5, 6)).sum().backward()
    opt.step()
    pb = persistent_state({"m": m}, {"opt": opt})
    assert pb.grad_bytes == 12 * F32  # the frozen bias has no grad
    assert pb.optimizer_state_bytes == 12 * F32  # momentum_buffer for the weight only
