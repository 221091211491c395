"""Precision / recall on k-NN manifolds (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020).

Each point's ball has radius the distance to its k-th nearest neighbour in its
own set (itself excluded).  With real features R and generated features G:

- precision: fraction of G inside the union of the balls of R (k = 3);
- recall: fraction of R inside the union of the balls of G (k = 3);
- density: mean over G of the number of R-balls containing it, divided by k (k = 5);
  about 1 when G is distributed like R, unbounded above;
- coverage: fraction of R whose ball contains at least one G point (k = 5).

"Inside" is a strict ``<``, as in the reference implementation (``prdc``).
Two independent samples of the same distribution stay below 1 on all four
(the real-vs-real floor shows by how much); a set scored against itself gets
precision = recall = coverage = 1 exactly.

Distances are computed in float64 (so the matrix-product form of the
Euclidean distance loses nothing that matters) with ``torch.cdist`` in row
chunks, so memory stays at ``chunk x N`` rather than ``N x M``.
"""

from __future__ import annotations

from typing import TypedDict

import torch

PR_K = 3
DC_K = 5
CHUNK = 1024


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")


def knn_radii(x: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row."""
    x = x.to(torch.float64)
    if x.shape[0] <= k:
        raise ValueError(f"need more than k={k} points, got {x.shape[0]}")
    out = []
    for i in range(0, x.shape[0], chunk):
        d = _cdist(x[i:i + chunk], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself (0)
    return torch.cat(out)


class PRDC(TypedDict):
    """What :func:`prdc` returns: the four figures, by name."""

    precision: float
    recall: float
    density: float
    coverage: float


def prdc(real: torch.Tensor, fake: torch.Tensor, pr_k: int = PR_K, dc_k: int = DC_K,
         chunk: int = CHUNK) -> PRDC:
    """precision, recall (k = pr_k) and density, coverage (k = dc_k) of ``fake`` against ``real``."""
    real = real.to(torch.float64)
    fake = fake.to(torch.float64)
    r_pr = knn_radii(real, pr_k, chunk)
    f_pr = knn_radii(fake, pr_k, chunk)
    r_dc = r_pr if dc_k == pr_k else knn_radii(real, dc_k, chunk)
    in_real_ball: float = 0   # fakes inside some real ball (precision)
    density_count: float = 0  # sum over fakes of the number of real balls containing them
    real_recalled = torch.zeros(real.shape[0], dtype=torch.bool)
    real_min_dist = torch.full((real.shape[0],), float("inf"), dtype=torch.float64)
    for i in range(0, fake.shape[0], chunk):
        d = _cdist(fake[i:i + chunk], real)                      # (c, n_real)
        in_real_ball += (d < r_pr).any(dim=1).sum().item()
        density_count += (d < r_dc).sum().item()
        real_recalled |= (d < f_pr[i:i + chunk, None]).any(dim=0)
        real_min_dist = torch.minimum(real_min_dist, d.min(dim=0).values)
    n_fake = fake.shape[0]
    return {
        "precision": in_real_ball / n_fake,
        "recall": real_recalled.double().mean().item(),
        "density": density_count / (dc_k * n_fake),
        "coverage": (real_min_dist < r_dc).double().mean().item(),
    }
