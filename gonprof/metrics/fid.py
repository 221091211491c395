"""Fréchet distance between Gaussians fitted to feature sets, with a torch-only matrix square root.

``FID = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})``.

``Tr((S1 S2)^{1/2})`` is the sum of the square roots of the eigenvalues of the
covariance product.  S1 S2 is not symmetric, but it is similar to the
symmetric positive semi-definite ``S1^{1/2} S2 S1^{1/2}``, so its eigenvalues
are real and non-negative; they are computed as the eigenvalues of that
symmetric matrix with ``torch.linalg.eigvalsh`` in float64, and round-off
negatives are clipped to zero before the square root.  No scipy needed.

FID is biased upward at finite sample size (for two samples of the same
Gaussian, roughly ``2d/N`` plus terms in ``d^2/N``), so only scores at the same
N are comparable; see :func:`gonprof.metrics.scores.real_floor`.
"""

from __future__ import annotations

import torch


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)


def sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Principal square root of a symmetric positive semi-definite matrix (float64, eigh, clipped)."""
    a = _f64(a)
    a = (a + a.T) / 2
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """``Tr((S1 S2)^{1/2})`` for covariance matrices: the sum of square roots of the eigenvalues of S1 S2."""
    s1h = sqrtm_psd(sigma1)
    s2 = _f64(sigma2)
    m = s1h @ ((s2 + s2.T) / 2) @ s1h
    eig = torch.linalg.eigvalsh((m + m.T) / 2)
    return eig.clamp_min(0).sqrt().sum().item()


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), exact up to float64 round-off."""
    mu1, mu2, s1, s2 = _f64(mu1), _f64(mu2), _f64(sigma1), _f64(sigma2)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"shape mismatch: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
                         f"sigma {tuple(s1.shape)} / {tuple(s2.shape)}")
    diff = mu1 - mu2
    value = diff.dot(diff).item() + torch.trace(s1).item() + torch.trace(s2).item() - 2 * trace_sqrt_product(s1, s2)
    return max(value, 0.0)


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (divisor N - 1) of ``(N, D)`` features, in float64."""
    f = _f64(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {tuple(f.shape)}")
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def fid_from_features(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """FID between two ``(N, D)`` feature sets."""
    return frechet_distance(*feature_stats(features1), *feature_stats(features2))
