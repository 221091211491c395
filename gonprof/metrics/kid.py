"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel, as torch-fidelity computes it.

``k(x, y) = (x.y / d + 1)^3``; the unbiased estimator drops the diagonal of the
within-set kernel matrices, so it can be slightly negative when the two sets
come from the same distribution.  The estimate is averaged over ``subsets``
random pairs of subsets of ``subset_size`` (torch-fidelity's defaults: 100 of
1000; the size is capped at the smaller set), and its standard deviation over
the subsets is reported beside it (0 when the subsets are the whole sets,
which are then scored once).
"""

from __future__ import annotations

import torch

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0,
                      gamma: float | None = None) -> torch.Tensor:
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between equal-size sets under the cubic polynomial kernel (float64)."""
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"need two sets of equal size >= 2, got {x.shape[0]} and {y.shape[0]}")
    kxx = polynomial_kernel(x, x)
    kyy = polynomial_kernel(y, y)
    kxy = polynomial_kernel(x, y)
    sxx = kxx.sum() - kxx.diagonal().sum()
    syy = kyy.sum() - kyy.diagonal().sum()
    return ((sxx + syy) / (m * (m - 1)) - 2 * kxy.sum() / (m * m)).item()


def kid(features1: torch.Tensor, features2: torch.Tensor, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of unbiased MMD^2 over random subset pairs; subsets drawn without replacement."""
    n1, n2 = features1.shape[0], features2.shape[0]
    size = min(subset_size, n1, n2)
    if size == n1 == n2:
        # Every subset is the whole of both sets: all draws give the same value.
        return mmd2_unbiased(features1, features2), 0.0
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        i1 = torch.randperm(n1, generator=gen)[:size]
        i2 = torch.randperm(n2, generator=gen)[:size]
        values.append(mmd2_unbiased(features1[i1], features2[i2]))
    v = torch.tensor(values, dtype=torch.float64)
    return v.mean().item(), (v.std(unbiased=False).item() if len(values) > 1 else 0.0)
