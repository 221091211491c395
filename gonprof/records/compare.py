"""Records of ``gonprof compare`` and ``gonprof score``: sample quality, rows, and the Pareto front."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .base import SCHEMA_VERSION, JsonRecord
from .profile import ProfileRecord


@dataclass(frozen=True)
class QualityRecord(JsonRecord):
    """Quality of one sample set; every figure is at ``n_samples`` vs ``n_reference``."""

    fid: float
    kid_mean: float
    kid_std: float
    precision: float
    recall: float
    density: float
    coverage: float
    class_coverage: float
    class_entropy_nats: float
    mean_confidence: float
    classifier_score: float
    n_samples: int
    n_reference: int
    extractor: str = "gonprof-mnist-cnn-v1"  # gonprof.metrics.classifier.EXTRACTOR_NAME
    weights_hash: str = ""
    seed: int = 0
    kid_subsets: int = 100  # gonprof.metrics.kid.KID_SUBSETS
    kid_subset_size: int = 1000  # gonprof.metrics.kid.KID_SUBSET_SIZE
    classes: list[int] | None = None  # the kept classes scored against (None: all); coverage / entropy are over them
    predicted_classes: dict[str, int] = dataclasses.field(default_factory=dict)  # class -> samples predicted as it
    # share of samples read as a kept class with a maximum softmax probability of at least on_class_confidence
    # (None: no selection); on_class_confidence None in a record from before the threshold: argmax only
    on_class_fraction: float | None = None
    on_class_confidence: float | None = None
    n_held_out: int | None = None  # held-out real images of the kept classes the reference was drawn from

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityRecord:
        """Inverse of ``to_dict``; keys this version does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class RunRecord(JsonRecord):
    """One row of ``gonprof compare``: a (mode, architecture) pair trained, profiled and scored.

    ``kind`` is ``"run"`` for a trained pair and ``"floor"`` for the real-vs-real
    row (real held-out images scored like samples, at the same N).  A run that
    failed keeps its status and message and whatever was measured before.
    """

    schema_version: int = SCHEMA_VERSION
    kind: str = "run"
    status: str = "ok"
    message: str = ""
    mode: str | None = None
    arch: str | None = None
    generator: str | None = None
    preset: str | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    d_params: int | None = None  # discriminator parameters (count)
    g_params: int | None = None  # generator parameters (count); None when the mode has none
    train_steps: int | None = None  # optimization steps trained before scoring
    train_time_s: float | None = None  # wall time of those steps
    time_budget_s: float | None = None
    profile: ProfileRecord | None = None  # figures of steps profiled after training
    quality: QualityRecord | None = None
    samples_png: str | None = None  # the run's final sample grid
    run_dir: str | None = None
    wall_time_s: float | None = None  # the whole row: train + profile + score
    variant: str | None = None  # a preset row's name for its own hyper-parameters (e.g. "inner sgd")
    hparams: dict[str, Any] = field(default_factory=dict)  # the overrides this row ran with
    classes: list[int] | None = None  # data selection: kept labels (None: all)
    per_class: int | None = None  # data selection: first N training images of each kept class
    cpus: list[int] | None = None  # the cores the row's worker was pinned to (compare --jobs)
    # the mode's samples before its refinement (dcd: G(z) without the Langevin steps), scored at the same N
    quality_unrefined: QualityRecord | None = None
    test_error_fraction: float | None = None  # improved-gan: share of held-out images argmax D(x) misclassifies
    n_test_images: int | None = None  # held-out labelled images the test error was measured on
    # mean iterations of the mode's inner loop per trained step (GON's chains: its ``inner_iters`` loss)
    inner_iters_per_step: float | None = None
    # the chains (samples) one step's inner loop advances (GON: ``fakes``, or as many as the real batch)
    chains_per_step: int | None = None

    @property
    def sample_iters_per_s(self) -> float | None:
        """Chains advanced one inner iteration per second: chains a step x mean inner iterations per trained
        step / the profiled step's median wall time (GON's sampling throughput; None without an inner loop).
        The chains a step are ``chains_per_step`` (files before it: the batch size)."""
        p = self.profile
        chains = self.chains_per_step or self.batch_size
        if self.inner_iters_per_step is None or p is None or not p.step_time_s_median or not chains:
            return None
        return chains * self.inner_iters_per_step / p.step_time_s_median

    @property
    def label(self) -> str:
        if self.kind == "floor":
            return "real (floor)"
        return f"{self.mode} / {self.arch}" + (f" ({self.variant})" if self.variant else "")

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "kind": self.kind, "status": self.status, "message": self.message, "mode": self.mode,
            "arch": self.arch, "generator": self.generator, "batch_size": self.batch_size, "seed": self.seed,
            "device": self.device, "d_params": self.d_params, "g_params": self.g_params,
            "train_steps": self.train_steps, "train_time_s": self.train_time_s, "wall_time_s": self.wall_time_s,
            "variant": self.variant, "classes": self.classes, "per_class": self.per_class,
            "inner_iters_per_step": self.inner_iters_per_step, "chains_per_step": self.chains_per_step,
        }
        if self.profile is not None:
            row.update({f"profile.{k}": v for k, v in self.profile.to_row().items()
                        if k not in ("arch", "mode", "batch_size", "generator", "status", "message")})
        if self.quality is not None:
            row.update({f"quality.{k}": v for k, v in self.quality.to_dict().items()})
        if self.quality_unrefined is not None:
            row.update({f"quality_unrefined.{k}": v for k, v in self.quality_unrefined.to_dict().items()})
        if self.test_error_fraction is not None:
            row.update({"test_error_fraction": self.test_error_fraction, "n_test_images": self.n_test_images})
        return row


def peak_memory_bytes(rec: RunRecord) -> int | None:
    """The memory figure compare rows are ranked by: the tensor-level peak of a profiled step."""
    return rec.profile.peak_live_bytes if rec.profile is not None else None


def pareto_front(rows: list[RunRecord]) -> set[int]:
    """Indices of the trained rows no other row beats on both peak memory and FID (lower is better)."""
    pts = [(i, m, r.quality.fid) for i, r in enumerate(rows)
           if r.kind == "run" and r.status == "ok" and r.quality is not None
           and (m := peak_memory_bytes(r)) is not None and math.isfinite(r.quality.fid)]
    front: set[int] = set()
    for i, m, f in pts:
        dominated = any((m2 <= m and f2 <= f) and (m2 < m or f2 < f) for j, m2, f2 in pts if j != i)
        if not dominated:
            front.add(i)
    return front


