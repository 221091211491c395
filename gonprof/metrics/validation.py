"""Validate a feature extractor against known corruptions of real digits.

For held-out real digits (the last 5,000 images of the embedded split, the
reference set of every quality score) :func:`validate` draws two disjoint,
seeded sets of ``n`` images: a clean *reference* set and a *test* set.  The
test set is scored against the reference clean (the real-vs-real floor), then
under each corruption of :data:`gonprof.metrics.corruptions.CORRUPTIONS` at
its three strengths, and ``n`` images of uniform noise in ``[-1, 1]`` are
scored last.  Each row has the classifier's accuracy on the test set's labels
(none for noise), its mean confidence (maximum softmax probability) and the
FID, KID, precision and recall against the clean reference, all at the same N.

A good extractor reads corrupted digits as the digits they are (accuracy
holds), ranks corruptions by strength (FID grows with it) and is not
confident about noise.  ``python -m gonprof.metrics.validation`` prints the
table for the old (``gonprof-mnist-cnn-v1``) and the shipped extractor side by
side, as a markdown table (the README's)::

    python -m gonprof.metrics.validation --n 1000 --seed 0 --threads 1

FID and KID are in each extractor's own feature space: compare rows within
one extractor's columns (and with its clean row, the floor), not across.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from gonprof.metrics.classifier import V1_WEIGHTS_PATH, WEIGHTS_PATH, load_classifier, reference_split
from gonprof.metrics.corruptions import CORRUPTIONS, STRENGTHS, uniform_noise
from gonprof.metrics.scores import extract, score_outputs

CLEAN = "clean"
NOISE = "uniform-noise"


@dataclass(frozen=True)
class ValidationRow:
    """One set of images scored against the clean reference."""

    corruption: str  # "clean", a name in CORRUPTIONS, or "uniform-noise"
    strength: str  # "mild" / "moderate" / "strong", or "" for clean and noise
    parameter: str  # the corruption's parameter at that strength, e.g. "10%" or "sigma 1 px"
    accuracy: float | None  # share of the test digits read as their label; None for noise
    mean_confidence: float  # mean maximum softmax probability
    fid: float
    kid_mean: float
    precision: float
    recall: float
    predicted_classes: dict = field(default_factory=dict)  # class -> count

    @property
    def label(self) -> str:
        return self.corruption if not self.parameter else f"{self.corruption} {self.parameter}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ValidationTable:
    """:func:`validate`'s result for one extractor."""

    extractor: str
    weights_hash: str
    n: int
    seed: int
    rows: tuple[ValidationRow, ...]

    def row(self, corruption: str, strength: str = "") -> ValidationRow:
        for r in self.rows:
            if r.corruption == corruption and r.strength == strength:
                return r
        raise KeyError((corruption, strength))

    def series(self, corruption: str) -> list[ValidationRow]:
        """The rows of ``corruption`` from mild to strong."""
        return [self.row(corruption, s) for s in STRENGTHS]

    def to_dict(self) -> dict:
        return {"extractor": self.extractor, "weights_hash": self.weights_hash, "n": self.n, "seed": self.seed,
                "rows": [r.to_dict() for r in self.rows]}


def validation_sets(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reference images, test images, test labels): two disjoint seeded draws of ``n`` held-out images."""
    held = reference_split()[1]
    if 2 * n > len(held):
        raise ValueError(f"n={n}: two disjoint sets need {2 * n} held-out images, there are {len(held)}")
    perm = torch.randperm(len(held), generator=torch.Generator().manual_seed(seed))
    ref, test = perm[:n], perm[n:2 * n]
    return held.images[ref], held.images[test], held.labels[test]


def validate(classifier=None, n: int = 1000, seed: int = 0,
             corruptions: Iterable[str] | None = None) -> ValidationTable:
    """The validation table of ``classifier`` (default: the shipped extractor) at ``n`` images per set.

    ``corruptions`` limits the table to some names of ``CORRUPTIONS`` (default:
    all); the clean and uniform-noise rows are always there.  Deterministic
    for a given ``seed``.
    """
    classifier = load_classifier() if classifier is None else classifier
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    for name in names:
        if name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    ident = (getattr(classifier, "extractor_name", "?"), getattr(classifier, "weights_hash", ""))
    ref, test, labels = validation_sets(n, seed)
    f_ref, _ = extract(classifier, ref)

    def row(corruption, strength, parameter, images, with_labels=True) -> ValidationRow:
        f, logits = extract(classifier, images)
        q = score_outputs(f, logits, f_ref, seed, *ident)
        pred = logits.argmax(1)
        counts = torch.bincount(pred, minlength=logits.shape[1])
        return ValidationRow(
            corruption=corruption, strength=strength, parameter=parameter,
            accuracy=(pred == labels).double().mean().item() if with_labels else None,
            mean_confidence=q.mean_confidence, fid=q.fid, kid_mean=q.kid_mean,
            precision=q.precision, recall=q.recall,
            predicted_classes={str(c): int(k) for c, k in enumerate(counts.tolist()) if k})

    rows = [row(CLEAN, "", "", test)]
    for i, name in enumerate(names):
        c = CORRUPTIONS[name]
        for level, strength in enumerate(STRENGTHS):
            rows.append(row(name, strength, c.label(level), c(test, level, seed=seed * 1000 + i)))
    rows.append(row(NOISE, "", "", uniform_noise(n, tuple(test.shape[1:]), seed=seed + 1), with_labels=False))
    return ValidationTable(extractor=ident[0], weights_hash=ident[1], n=n, seed=seed, rows=tuple(rows))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def markdown(tables: Sequence[ValidationTable]) -> str:
    """The tables side by side (same rows, same N) as one markdown table."""
    if not tables:
        return ""
    base = tables[0]
    for t in tables[1:]:
        if [r.label for r in t.rows] != [r.label for r in base.rows] or t.n != base.n:
            raise ValueError("tables to set side by side need the same rows and N")
    head = [f"images (N = {base.n:,} each)"]
    for t in tables:
        tag = t.extractor.replace("gonprof-mnist-cnn-", "")
        head += [f"{tag} accuracy", f"{tag} confidence", f"{tag} FID", f"{tag} KID", f"{tag} precision",
                 f"{tag} recall"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, r in enumerate(base.rows):
        cells = [r.label + (" (floor)" if r.corruption == CLEAN else "")]
        for t in tables:
            x = t.rows[i]
            cells += [_pct(x.accuracy), f"{x.mean_confidence:.3f}", f"{x.fid:,.1f}", f"{x.kid_mean:,.1f}",
                      f"{x.precision:.3f}", f"{x.recall:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    legend = "; ".join(f"{t.extractor.replace('gonprof-mnist-cnn-', '')} = {t.extractor} (weights {t.weights_hash})"
                       for t in tables)
    return "\n".join(lines) + f"\n\n{legend}; seed {base.seed}.\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gonprof.metrics.validation",
                                 description="Score held-out digits under known corruptions in the features of "
                                             "one or more extractors; print a markdown table.")
    ap.add_argument("--n", type=int, default=1000, help="images per set (at most 2,500; default %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", action="append", default=None,
                    help="weights file (repeatable; default: the v1 weights, then the shipped ones)")
    ap.add_argument("--corruption", action="append", default=None, choices=list(CORRUPTIONS),
                    help="limit to these corruptions (repeatable)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--json", default=None, help="also write the tables as JSON to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = args.weights or [p for p in (V1_WEIGHTS_PATH, WEIGHTS_PATH) if p.is_file()]
    tables = [validate(load_classifier(p), n=args.n, seed=args.seed, corruptions=args.corruption) for p in paths]
    print(markdown(tables), end="")
    if args.json:
        import json
        from pathlib import Path

        Path(args.json).write_text(json.dumps([t.to_dict() for t in tables], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
