"""Sample-quality metrics in the feature space of gonprof's own MNIST classifier.

- :mod:`gonprof.metrics.classifier`: the extractor (train, save, load, weights hash);
- :mod:`gonprof.metrics.fid`: Fréchet distance with a torch-only matrix square root;
- :mod:`gonprof.metrics.kid`: KID, unbiased MMD^2 with the cubic polynomial kernel;
- :mod:`gonprof.metrics.prdc`: precision / recall (k=3) and density / coverage (k=5);
- :mod:`gonprof.metrics.scores`: :func:`score_samples`, :func:`real_floor`, :func:`score_with_floor`;
- :mod:`gonprof.metrics.corruptions`: seeded corruptions (salt-and-pepper, noise, blur, ...) at named strengths;
- :mod:`gonprof.metrics.validation`: an extractor's accuracy and scores under each corruption.
"""

from __future__ import annotations

from gonprof._lazy import lazy_exports

_LAZY = {
    "QualityRecord": "gonprof.metrics.scores",
    "score_samples": "gonprof.metrics.scores",
    "real_floor": "gonprof.metrics.scores",
    "score_outputs": "gonprof.metrics.scores",
    "extract": "gonprof.metrics.scores",
    "class_stats": "gonprof.metrics.scores",
    "default_reference": "gonprof.metrics.scores",
    "score_with_floor": "gonprof.metrics.scores",
    "held_out": "gonprof.metrics.scores",
    "CLASS_COVERAGE_THRESHOLD": "gonprof.metrics.scores",
    "MnistClassifier": "gonprof.metrics.classifier",
    "train_classifier": "gonprof.metrics.classifier",
    "load_classifier": "gonprof.metrics.classifier",
    "save_classifier": "gonprof.metrics.classifier",
    "weights_hash": "gonprof.metrics.classifier",
    "reference_split": "gonprof.metrics.classifier",
    "EXTRACTOR_NAME": "gonprof.metrics.classifier",
    "WEIGHTS_PATH": "gonprof.metrics.classifier",
    "frechet_distance": "gonprof.metrics.fid",
    "fid_from_features": "gonprof.metrics.fid",
    "sqrtm_psd": "gonprof.metrics.fid",
    "trace_sqrt_product": "gonprof.metrics.fid",
    "mmd2_unbiased": "gonprof.metrics.kid",
}

# (kid() and prdc() share their modules' names: import them from
# gonprof.metrics.kid / gonprof.metrics.prdc.)
__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports('gonprof.metrics', globals(), _LAZY)
