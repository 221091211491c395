"""Score generated MNIST samples against real ones in the project classifier's feature space.

:func:`score_samples` is the single entry point; :func:`real_floor` scores
real images against real images at the same N, the row every table needs
beside its generated rows (FID, KID, precision/recall and density/coverage
are all biased at finite N, so only scores at the same N compare).

Sample counts: the samples are subsampled (seeded) to ``n`` images and
scored against ``n`` held-out real images of the kept classes, chosen by
:func:`reference_sets` so that a table's rows and its floor share them; the
record states ``n_samples``, ``n_reference`` and ``n_held_out``.

Units: the features are the classifier's 128 post-ReLU penultimate
activations, unnormalised, so FID and KID are in the units of that space,
not comparable with Inception-based figures, nor between extractors.
Measured with the shipped weights (gonprof-mnist-cnn-v2): two disjoint sets
of 1,000 held-out images score FID 4.1 (KID within about +-1 of 0);
uniform noise scores FID about 1,100 and KID about 150.

Class statistics use the classifier's argmax predictions on the samples:

- ``on_class_fraction`` (with a class selection): share of the samples the
  classifier reads as a kept class *with confidence*: argmax a kept class and
  maximum softmax probability at least :data:`ON_CLASS_CONFIDENCE` (0.9), so
  that texture and noise, which the classifier reads at about 0.1 whatever its
  argmax, are never on-class (measured with the shipped weights on the 5,000
  held-out real digits: 98.7% read at 0.9 or more, 99.4% correctly);
- ``class_coverage``: fraction of the classes predicted for at least
  :data:`CLASS_COVERAGE_THRESHOLD` (1%) of the samples;
- ``class_entropy_nats``: entropy of the histogram of predicted classes
  (ln 10 = 2.303 when all ten are equally frequent; 0 under total collapse);
- ``mean_confidence``: mean over samples of the maximum softmax probability;
- ``classifier_score``: Inception-Score-like, ``exp(E_x KL(p(y|x) || p(y)))``
  on the classifier's logits (at most 10; high when each sample is confidently
  one digit and the digits are balanced).
"""

from __future__ import annotations

import math

import torch

from gonprof.metrics.classifier import EXTRACTOR_NAME, load_classifier, reference_split
from gonprof.metrics.fid import fid_from_features
from gonprof.metrics.kid import KID_SUBSET_SIZE, KID_SUBSETS, kid
from gonprof.metrics.prdc import DC_K, PR_K, prdc
from gonprof.records import QualityRecord

CLASS_COVERAGE_THRESHOLD = 0.01
#: A sample counts as on-class only where the classifier's maximum softmax probability is at least this.  The
#: shipped extractor (gonprof-mnist-cnn-v2) reads 98.7% of the 5,000 held-out real digits at 0.9 or more (the
#: 1st percentile is 0.85) and uniform noise, Gaussian noise and salt-and-pepper texture at 0.30 at most (0.10 on
#: average), so real digits stay on-class and texture never is.
ON_CLASS_CONFIDENCE = 0.9
BATCH = 500


def _images(x) -> torch.Tensor:
    x = getattr(x, "images", x)  # ImageData or tensor
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    return x.clamp(-1, 1)


@torch.no_grad()
def extract(classifier, images: torch.Tensor, batch_size: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), logits (N, C)) of ``images`` in [-1, 1], batched, eval mode."""
    images = _images(images)
    was = classifier.training
    classifier.eval()
    try:
        feats, logits = [], []
        for i in range(0, len(images), batch_size):
            f, lg = classifier.features_and_logits(images[i:i + batch_size])
            feats.append(f)
            logits.append(lg)
    finally:
        classifier.train(was)
    return torch.cat(feats), torch.cat(logits)


def class_stats(logits: torch.Tensor, threshold: float = CLASS_COVERAGE_THRESHOLD,
                classes: list[int] | tuple[int, ...] | None = None,
                confidence: float = ON_CLASS_CONFIDENCE) -> dict:
    """Class statistics of the samples' predictions, from logits (N, C).

    ``class_coverage``: share of the kept classes (all C without ``classes``)
    predicted for at least ``threshold`` of the samples; ``class_entropy_nats``:
    entropy of the histogram of predictions that fall on a kept class (ln K when
    the K kept classes are equally frequent, 0 under collapse);
    ``on_class_fraction``: share of samples the classifier reads as a kept class
    with confidence, i.e. argmax a kept class *and* maximum softmax probability
    at least ``confidence`` (:data:`ON_CLASS_CONFIDENCE`, 0.9: an unsure argmax,
    as on noise or texture, is not on-class); None without ``classes``;
    ``on_class_confidence``: that threshold (None without ``classes``);
    ``predicted_classes``: class -> count of argmax predictions, over all C;
    ``mean_confidence``: mean maximum softmax probability; ``classifier_score``:
    ``exp(E_x KL(p(y|x) || p(y)))``.
    """
    logits = logits.to(torch.float64)
    n, c = logits.shape
    logp = torch.log_softmax(logits, dim=1)
    p = logp.exp()
    top, pred = p.max(1)
    counts = torch.bincount(pred, minlength=c)
    kept = list(range(c)) if classes is None else [int(k) for k in classes]
    if any(k >= c for k in kept):
        raise ValueError(f"classes {kept} outside the classifier's {c} classes")
    kept_counts = counts[kept].to(torch.float64)
    freq = kept_counts / n
    in_kept = kept_counts.sum().item()
    share = kept_counts[kept_counts > 0] / in_kept if in_kept else kept_counts[:0]
    sure = top >= confidence
    on_class = int((torch.isin(pred, torch.tensor(kept, dtype=pred.dtype)) & sure).sum())
    log_py = torch.log(p.mean(0).clamp_min(1e-300))
    kl = (p * (logp - log_py)).sum(1)
    return {
        "class_coverage": (freq >= threshold).double().mean().item(),
        "class_entropy_nats": max(0.0, -(share * share.log()).sum().item()),
        "mean_confidence": top.mean().item(),
        "classifier_score": math.exp(kl.mean().item()),
        "on_class_fraction": None if classes is None else on_class / n,
        "on_class_confidence": None if classes is None else float(confidence),
        "predicted_classes": {str(k): int(v) for k, v in enumerate(counts.tolist()) if v},
    }


def score_outputs(sample_features: torch.Tensor, sample_logits: torch.Tensor,
                  reference_features: torch.Tensor, seed: int = 0, extractor: str = EXTRACTOR_NAME,
                  weights_hash: str = "", classes=None, n_held_out: int | None = None) -> QualityRecord:
    """Score already-extracted features (all sets used whole; subsample before calling)."""
    ns, nr = len(sample_features), len(reference_features)
    if min(ns, nr) <= max(PR_K, DC_K):
        raise ValueError(f"need more than {max(PR_K, DC_K)} images in each set, got {ns} samples and {nr} reference")
    kid_mean, kid_std = kid(sample_features, reference_features, seed=seed)
    return QualityRecord(
        fid=fid_from_features(sample_features, reference_features),
        kid_mean=kid_mean, kid_std=kid_std,
        **prdc(reference_features, sample_features),
        **class_stats(sample_logits, classes=classes),
        n_samples=ns, n_reference=nr, extractor=extractor, weights_hash=weights_hash, seed=seed,
        kid_subsets=KID_SUBSETS, kid_subset_size=min(KID_SUBSET_SIZE, ns, nr),
        classes=None if classes is None else [int(k) for k in classes], n_held_out=n_held_out,
    )


def _subset(x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    return x if len(x) == n else x[torch.randperm(len(x), generator=gen)[:n]]


def _ident(classifier) -> tuple[str, str]:
    return getattr(classifier, "extractor_name", EXTRACTOR_NAME), getattr(classifier, "weights_hash", "")


def default_reference() -> torch.Tensor:
    """The held-out reference: the last 5,000 images of the embedded MNIST test split."""
    return reference_split()[1].images


def held_out(classes=None, data=None) -> torch.Tensor:
    """Held-out real images of ``classes`` (all when None) from ``data``'s held-out part.

    ``data`` is a source as :func:`gonprof.data.load_split` takes it (None: the
    embedded split, whose held-out part is the extractor's reference half).
    """
    from gonprof.data import Selection, load_split

    return load_split(data, Selection.parse(classes))[1].images


def reference_sets(reference: torch.Tensor, n: int, seed: int = 0) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Split held-out images into (floor images, reference images) of ``n`` each, disjoint and seeded.

    Every row of a table is scored against the same reference images and the
    floor scores the other ``n`` against them.  When fewer than ``2n`` images
    exist the floor images are None (no floor at that N) and the reference is
    ``n`` of them.
    """
    if n < 1 or n > len(reference):
        raise ValueError(f"n={n} but only {len(reference)} held-out images")
    perm = torch.randperm(len(reference), generator=torch.Generator().manual_seed(seed))
    if 2 * n <= len(reference):
        return reference[perm[:n]], reference[perm[n:2 * n]]
    return None, reference[perm[:n]]


def floor_n(n_wanted: int, n_held_out: int) -> int:
    """The largest N not above ``n_wanted`` at which a floor exists (2N held-out images)."""
    return max(0, min(int(n_wanted), n_held_out // 2))


def score_samples(samples: torch.Tensor, reference=None, classifier=None, n: int | None = None,
                  seed: int = 0, classes=None) -> QualityRecord:
    """Score ``samples`` ``(N, 1, 28, 28)`` in [-1, 1] against held-out real images.

    ``reference`` defaults to the held-out images of ``classes`` (all classes:
    :func:`default_reference`); an ``ImageData`` is accepted too; ``classifier``
    defaults to the shipped extractor.  ``n`` (default: the smaller set) images
    of each set are used: the samples subsampled with ``seed``, the reference
    images as :func:`reference_sets` picks them, so a table's rows and its
    floor (:func:`real_floor`, same ``n`` and ``seed``) share one reference.
    Class coverage and entropy are over ``classes``.  Values outside [-1, 1]
    are clamped; NaN or infinite values raise ValueError.
    """
    classifier = load_classifier() if classifier is None else classifier
    samples = _images(samples)
    pool = _images(held_out(classes) if reference is None else reference)
    n = min(len(samples), len(pool)) if n is None else n
    if n > len(samples) or n > len(pool):
        raise ValueError(f"n={n} exceeds the {len(samples)} samples or {len(pool)} reference images")
    _, ref = reference_sets(pool, n, seed)
    samples = _subset(samples, n, torch.Generator().manual_seed(seed))
    fs, ls = extract(classifier, samples)
    fr, _ = extract(classifier, ref)
    return score_outputs(fs, ls, fr, seed, *_ident(classifier), classes=classes, n_held_out=len(pool))


def real_floor(reference=None, n: int | None = None, seed: int = 0, classifier=None, real=None,
               classes=None) -> QualityRecord:
    """Real images scored against real images at the same N: the floor row of a table.

    Without ``real``, ``n`` held-out images (of ``classes``) are scored against
    the ``n`` reference images that :func:`score_samples` uses at the same
    ``n`` and ``seed`` (so ``2n`` held-out images are needed; default ``n``
    is half of them).  With ``real`` (another set of real images), ``n`` of
    them are scored against ``n`` reference images; the sets should be disjoint.

    With the shipped 5,000-image reference the largest true floor is n = 2,500.
    The classifier's own training half is *not* a stand-in for unseen real
    images: the extractor embeds the images it was trained on more tightly, so
    keep tables at n <= half the held-out images to have a floor row.
    """
    classifier = load_classifier() if classifier is None else classifier
    pool = _images(held_out(classes) if reference is None else reference)
    if real is None:
        n = len(pool) // 2 if n is None else n
        if n < 1 or 2 * n > len(pool):
            raise ValueError(f"a floor at n={n} needs 2n={2 * n} disjoint real images but the reference has "
                             f"{len(pool)}; pass real= another set of real images")
        a, b = reference_sets(pool, n, seed)
        assert a is not None  # 2n images are there (checked above), so the floor set is drawn
    else:
        real = _images(real)
        n = min(len(real), len(pool)) if n is None else n
        if n > len(real) or n > len(pool):
            raise ValueError(f"n={n} exceeds the {len(real)} real or {len(pool)} reference images")
        a = _subset(real, n, torch.Generator().manual_seed(seed))
        _, b = reference_sets(pool, n, seed)
    fa, la = extract(classifier, a)
    fb, _ = extract(classifier, b)
    return score_outputs(fa, la, fb, seed, *_ident(classifier), classes=classes, n_held_out=len(pool))


def score_with_floor(samples: torch.Tensor, *, classes=None, n: int | None = None, seed: int = 0,
                     classifier=None, reference=None) -> tuple[QualityRecord, QualityRecord]:
    """(samples' scores, the real-vs-real floor), both against the same reference images.

    The reference is the held-out real images of ``classes`` (or ``reference``);
    ``n`` defaults to the largest N, at most the number of samples, at which a
    floor exists (half the held-out images).
    """
    classifier = load_classifier() if classifier is None else classifier
    samples = _images(samples)
    pool = _images(held_out(classes) if reference is None else reference)
    n = floor_n(len(samples), len(pool)) if n is None else n
    if n > floor_n(n, len(pool)):
        raise ValueError(f"a floor at n={n} needs {2 * n} held-out real images; there are {len(pool)} "
                         f"(use n <= {len(pool) // 2})")
    if n > len(samples):
        raise ValueError(f"n={n} exceeds the {len(samples)} samples")
    return (score_samples(samples, pool, classifier, n, seed, classes),
            real_floor(pool, n, seed, classifier, classes=classes))
