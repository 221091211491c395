"""Helpers shared by the per-family zoo tests (test_zoo_*.py)."""

import functools

import pytest
import torch
from torch import nn

from gonprof.arch import get_arch


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.cache
def built(name: str, shape=None) -> nn.Module:
    """One instance per (name, shape) for read-only checks; each test sets the mode it needs."""
    return get_arch(name).build(shape)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


