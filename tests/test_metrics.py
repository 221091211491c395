"""Quality metrics against closed forms, and the shipped MNIST feature extractor."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from gonprof.data import load_dataset
from gonprof.metrics.classifier import (
    DEFAULT_EPOCHS,
    EXTRACTOR_NAME,
    V1_WEIGHTS_PATH,
    WEIGHTS_PATH,
    MnistClassifier,
    Recipe,
    accuracy,
    load_classifier,
    reference_split,
    train_classifier,
    weights_hash,
)
from gonprof.metrics.fid import feature_stats, fid_from_features, frechet_distance, sqrtm_psd, trace_sqrt_product
from gonprof.metrics.kid import kid, mmd2_unbiased, polynomial_kernel
from gonprof.metrics.prdc import knn_radii, prdc
from gonprof.metrics.scores import QualityRecord, class_stats, extract, real_floor, score_outputs, score_samples

D64 = torch.float64

# The shipped extractor, as `python -m gonprof.metrics.classifier --epochs 30 --seed 0 --threads 1` writes it.
SHIPPED_EXTRACTOR = "gonprof-mnist-cnn-v2"
SHIPPED_HASH = "578f9b0f6357"
V1_HASH = "2255af189069"  # gonprof-mnist-cnn-v1 (clean digits only), kept beside it for comparison


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _random_spd(d, seed, scale=1.0):
    a = torch.randn(d, d, generator=_gen(seed), dtype=D64)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=D64))


# ----------------------------------------------------------------------------- FID


def test_fid_of_identical_feature_sets_is_zero():
    x = torch.randn(500, 16, generator=_gen(0))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    mu, s = feature_stats(x)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_diagonal_gaussians_closed_form():
    g = _gen(1)
    d = 12
    mu1, mu2 = torch.randn(d, generator=g, dtype=D64), torch.randn(d, generator=g, dtype=D64)
    a, b = torch.rand(d, generator=g, dtype=D64) * 3 + 0.01, torch.rand(d, generator=g, dtype=D64) * 3 + 0.01
    expected = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    got = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)


def test_frechet_distance_non_commuting_2x2_closed_form():
    # For a 2x2 matrix M similar to a PSD one, Tr sqrt(M) = sqrt(Tr M + 2 sqrt(det M)).
    s1 = torch.tensor([[2.0, 0.7], [0.7, 0.5]], dtype=D64)
    s2 = torch.tensor([[1.0, -0.4], [-0.4, 3.0]], dtype=D64)
    mu1, mu2 = torch.tensor([0.3, -1.0], dtype=D64), torch.tensor([1.0, 2.0], dtype=D64)
    m = s1 @ s2
    tr_sqrt = math.sqrt(torch.trace(m).item() + 2 * math.sqrt(torch.det(m).item()))
    assert trace_sqrt_product(s1, s2) == pytest.approx(tr_sqrt, rel=1e-12)
    expected = ((mu1 - mu2) ** 2).sum().item() + torch.trace(s1 + s2).item() - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_is_rotation_invariant_and_symmetric():
    d = 10
    s1, s2 = _random_spd(d, 2), _random_spd(d, 3, scale=2.0)
    mu1, mu2 = torch.randn(d, generator=_gen(4), dtype=D64), torch.zeros(d, dtype=D64)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=_gen(5), dtype=D64))
    base = frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T) == pytest.approx(base, rel=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(base, rel=1e-9)


def test_fid_from_samples_matches_closed_form_within_tolerance():
    g = _gen(6)
    d, n = 4, 40_000
    mu1, mu2 = torch.zeros(d, dtype=D64), torch.tensor([1.0, 0.0, -0.5, 0.0], dtype=D64)
    a, b = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=D64), torch.tensor([0.25, 2.0, 1.0, 4.0], dtype=D64)
    x = mu1 + torch.randn(n, d, generator=g, dtype=D64) * a.sqrt()
    y = mu2 + torch.randn(n, d, generator=g, dtype=D64) * b.sqrt()
    expected = ((mu1 - mu2) ** 2).sum().item() + ((a.sqrt() - b.sqrt()) ** 2).sum().item()
    assert fid_from_features(x, y) == pytest.approx(expected, rel=0.03)


def test_fid_finite_sample_bias_for_identical_gaussians():
    # E[FID] ~ 2d/N + d(d+1)/(2N) for two N-samples of the same standard Gaussian.
    d, n = 8, 1000
    vals = [fid_from_features(torch.randn(n, d, generator=_gen(100 + r), dtype=D64),
                              torch.randn(n, d, generator=_gen(200 + r), dtype=D64)) for r in range(10)]
    predicted = 2 * d / n + d * (d + 1) / (2 * n)
    assert sum(vals) / len(vals) == pytest.approx(predicted, rel=0.2)


def test_matrix_sqrt_matches_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    d = 32
    s1, s2 = _random_spd(d, 7), _random_spd(d, 8, scale=3.0)
    root = sqrtm_psd(s1)
    assert torch.allclose(root, torch.from_numpy(scipy_linalg.sqrtm(s1.numpy()).real), atol=1e-9)
    assert torch.allclose(root @ root, s1, atol=1e-10)
    ref = float(torch.from_numpy(scipy_linalg.sqrtm((s1 @ s2).numpy())).trace().real)
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-8)
    # Rank-deficient covariance (fewer samples than dimensions): clipped, still finite and close.
    f = torch.randn(20, d, generator=_gen(9), dtype=D64)
    _, s3 = feature_stats(f)
    ref3 = float(torch.from_numpy(scipy_linalg.sqrtm((s3 @ s2).numpy())).trace().real)
    assert trace_sqrt_product(s3, s2) == pytest.approx(ref3, rel=1e-5)


# ----------------------------------------------------------------------------- KID


def test_mmd2_unbiased_matches_a_direct_double_sum():
    g = _gen(10)
    x, y = torch.randn(30, 5, generator=g, dtype=D64), torch.randn(30, 5, generator=g, dtype=D64) + 0.3
    m = 30

    def k(a, b):
        return (a.dot(b) / 5 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mmd2_unbiased(x, y) == pytest.approx((xx + yy - 2 * xy).item(), rel=1e-10)
    assert polynomial_kernel(x[:2], y[:3]).shape == (2, 3)


def test_kid_near_zero_for_same_distribution_and_positive_when_shifted():
    g = _gen(11)
    x, y = torch.randn(1000, 16, generator=g), torch.randn(1000, 16, generator=g)
    mean, std = kid(x, y, subsets=10, subset_size=300)
    assert abs(mean) < 0.02 and std > 0
    shifted, _ = kid(x, y + 0.5, subsets=10, subset_size=300)
    assert shifted > 0.05 and shifted > 10 * abs(mean)
    # Subset size is capped at the smaller set; the estimator is unbiased, so it can go negative.
    values = [kid(torch.randn(50, 4, generator=_gen(s)), torch.randn(50, 4, generator=_gen(s + 99)),
                  subsets=1, subset_size=1000)[0] for s in range(20)]
    assert min(values) < 0 < max(values)


# ----------------------------------------------------------------------------- precision / recall / density / coverage


def _prdc_bruteforce(real, fake, pr_k=3, dc_k=5):
    drr, dff, drf = torch.cdist(real, real), torch.cdist(fake, fake), torch.cdist(real, fake)
    r_pr = drr.sort(1).values[:, pr_k]
    f_pr = dff.sort(1).values[:, pr_k]
    r_dc = drr.sort(1).values[:, dc_k]
    return {
        "precision": (drf < r_pr[:, None]).any(0).double().mean().item(),
        "recall": (drf < f_pr[None, :]).any(1).double().mean().item(),
        "density": (drf < r_dc[:, None]).double().sum().item() / (dc_k * fake.shape[0]),
        "coverage": (drf.min(1).values < r_dc).double().mean().item(),
    }


def test_prdc_matches_brute_force_with_small_chunks():
    g = _gen(12)
    real, fake = torch.randn(300, 6, generator=g, dtype=D64), torch.randn(250, 6, generator=g, dtype=D64) * 1.3
    got = prdc(real, fake, chunk=37)
    expected = _prdc_bruteforce(real, fake)
    assert got == pytest.approx(expected, abs=1e-12)
    assert knn_radii(real, 3, chunk=11).shape == (300,)


def test_prdc_identical_sets_and_independent_samples():
    g = _gen(13)
    x = torch.randn(1000, 8, generator=g)
    same = prdc(x, x)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert 0.9 < same["density"] < 1.6
    other = prdc(x, torch.randn(1000, 8, generator=g))
    for key in ("precision", "recall", "coverage"):
        assert 0.5 < other[key] < 1.0, (key, other)
    far = prdc(x, torch.randn(1000, 8, generator=g) + 10)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0.0


# ----------------------------------------------------------------------------- class statistics


def test_class_stats_closed_forms():
    confident = torch.full((1000, 10), -30.0)
    confident[torch.arange(1000), torch.arange(1000) % 10] = 30.0
    s = class_stats(confident)
    assert s["class_coverage"] == 1.0
    assert s["class_entropy_nats"] == pytest.approx(math.log(10), abs=1e-12)
    assert s["mean_confidence"] == pytest.approx(1.0, abs=1e-9)
    assert s["classifier_score"] == pytest.approx(10.0, rel=1e-6)
    collapsed = class_stats(confident[confident.argmax(1) == 3])
    assert collapsed["class_coverage"] == pytest.approx(0.1)
    assert collapsed["class_entropy_nats"] == 0.0
    assert collapsed["classifier_score"] == pytest.approx(1.0, rel=1e-6)
    uniform = class_stats(torch.zeros(100, 10))
    assert uniform["mean_confidence"] == pytest.approx(0.1)
    assert uniform["classifier_score"] == pytest.approx(1.0)
    # The 1% threshold: a class predicted for 5 of 1000 samples does not count as covered.
    rare = confident.clone()[:1000]
    rare[:995] = confident[confident.argmax(1) == 0][:1].expand(995, 10)
    assert class_stats(rare)["class_coverage"] == pytest.approx(0.1)


# ----------------------------------------------------------------------------- the shipped classifier


@pytest.fixture(scope="module")
def clf():
    return load_classifier()


@pytest.fixture(scope="module")
def heldout():
    return reference_split()[1]


@pytest.fixture(scope="module")
def heldout_outputs(clf, heldout):
    return extract(clf, heldout.images)


def test_weights_are_small_and_hash_matches_file(clf):
    assert WEIGHTS_PATH.stat().st_size < 1_000_000
    digest = hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest()[:12]
    assert weights_hash() == digest == clf.weights_hash == SHIPPED_HASH
    assert clf.extractor_name == EXTRACTOR_NAME == SHIPPED_EXTRACTOR
    assert clf.train_report["recipe"] == "augment+outliers" and clf.train_report["epochs"] == DEFAULT_EPOCHS
    assert sum(p.numel() for p in clf.parameters()) < 300_000


def test_v1_weights_still_load_and_name_themselves():
    old = load_classifier(V1_WEIGHTS_PATH)
    assert old.extractor_name == "gonprof-mnist-cnn-v1" and old.weights_hash == weights_hash(V1_WEIGHTS_PATH) == V1_HASH
    assert old.feature_dim == load_classifier().feature_dim


def test_classifier_heldout_accuracy_at_least_98_percent(clf, heldout, heldout_outputs):
    assert len(heldout) == 5000
    feats, logits = heldout_outputs
    assert feats.shape == (5000, clf.feature_dim) and logits.shape == (5000, 10)
    acc = (logits.argmax(1) == heldout.labels).float().mean().item()
    assert acc >= 0.98, acc
    assert torch.allclose(clf.features(heldout.images[:7]), feats[:7], atol=1e-5)


def test_classifier_score_and_class_stats_on_real_heldout(heldout_outputs):
    s = class_stats(heldout_outputs[1])
    assert s["classifier_score"] > 9.5
    assert s["class_coverage"] == 1.0
    assert s["class_entropy_nats"] > 0.99 * math.log(10)
    assert s["mean_confidence"] > 0.97


def test_missing_classes_show_in_coverage_entropy_and_recall(clf, heldout, heldout_outputs):
    feats, logits = heldout_outputs
    low = heldout.labels < 5
    s = class_stats(logits[low])
    assert s["class_coverage"] == pytest.approx(0.5)
    # ln 5, give or take the unequal class sizes and the few digits misread as 5-9.
    assert s["class_entropy_nats"] == pytest.approx(math.log(5), abs=0.06)
    assert s["classifier_score"] < 5.2
    n = 1000
    half = score_outputs(feats[low][:n], logits[low][:n], feats[~low][-n:])
    full = score_outputs(feats[:n], logits[:n], feats[-n:])
    assert half.recall < 0.7 * full.recall and half.coverage < 0.7 * full.coverage
    assert half.fid > 5 * full.fid
    assert half.class_coverage == 0.5 and full.class_coverage == 1.0


def test_score_samples_identical_set_and_record_round_trip(clf, heldout):
    x = heldout.images[:300]
    rec = score_samples(x, x, classifier=clf)
    assert rec.fid == pytest.approx(0.0, abs=1e-4)
    assert rec.precision == rec.recall == rec.coverage == 1.0
    assert (rec.n_samples, rec.n_reference) == (300, 300)
    assert rec.weights_hash == clf.weights_hash and rec.extractor == EXTRACTOR_NAME
    assert QualityRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    with pytest.raises(ValueError):
        score_samples(x, x, classifier=clf, n=301)
    with pytest.raises(ValueError):
        score_samples(torch.full_like(x, float("nan")), x, classifier=clf)


def test_real_floor_is_small_but_not_perfect_and_noise_is_far(clf, heldout):
    floor = real_floor(heldout.images, n=500, seed=0, classifier=clf)
    assert (floor.n_samples, floor.n_reference) == (500, 500)
    assert 0 < floor.fid < 20
    assert abs(floor.kid_mean) < 5.0 and floor.kid_std == 0.0  # one subset: the whole of both sets
    assert 0.5 < floor.precision < 1 and 0.5 < floor.recall < 1 and 0.5 < floor.coverage < 1
    noise = score_samples(torch.rand(500, 1, 28, 28, generator=_gen(14)) * 2 - 1, heldout.images,
                          classifier=clf, n=500)
    # Outlier exposure maps noise near the origin of the feature space, so its distance is about the
    # digits' own feature norm (FID ~1,100, KID ~150 with the v2 weights), far above the floor.
    assert noise.fid > 20 * floor.fid and noise.kid_mean > 20 * abs(floor.kid_mean) + 50
    assert noise.precision < 0.1 and noise.recall < 0.1
    with pytest.raises(ValueError):
        real_floor(heldout.images[:100], n=51, classifier=clf)


def test_classifier_trains_on_synthetic_idx_data_quickly():
    from gonprof.data import synthetic

    data = synthetic(n=300, seed=1)
    model, report = train_classifier(data, Recipe(epochs=1, n_train=256, width=4, feature_dim=16), seed=0)
    assert isinstance(model, MnistClassifier)
    assert report.n_train == 256 and report.n_heldout == 44
    assert model.features(data.images[:3]).shape == (3, 16)
    model2, report2 = train_classifier(data, Recipe(epochs=1, n_train=256, width=4, feature_dim=16), seed=0)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)  # deterministic for a seed


@pytest.mark.slow
def test_retraining_the_classifier_reproduces_the_shipped_weights(tmp_path):
    from gonprof.metrics.classifier import save_classifier

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shipped weights were trained on one thread
    try:
        model, report = train_classifier(load_dataset(), Recipe(epochs=DEFAULT_EPOCHS), seed=0)
    finally:
        torch.set_num_threads(threads)
    assert report.heldout_accuracy >= 0.98
    path = tmp_path / "clf.pt"
    digest = save_classifier(model, path, report)
    loaded = load_classifier(path)
    assert loaded.weights_hash == digest == SHIPPED_HASH
    assert accuracy(loaded, reference_split()[1]) == pytest.approx(report.heldout_accuracy)
