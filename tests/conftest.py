"""Fixtures the test modules share."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny steps: their ops are dominated by thread hand-offs, and on a
    busy 2-core machine OpenMP's spinning makes two threads many times slower than one.  Restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
