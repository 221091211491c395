"""The seeds' published claims as data, each ending in a verdict on a comparison's rows.

A :class:`Claim` names what its source said, the source's figure, the
quantity measured here that it maps to, and the rule that turns the
measurement into a verdict: ``holds``, ``does not hold`` or ``inconclusive``
(with the reason: the budget, a missing or failed row).  Claims about
quality are judged only at the source's own training budget; a shorter run
(``compare --quick``) says "inconclusive at this budget" for them.  Claims
about memory do not depend on the budget.

Nothing here imports torch: claims are judged on records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

from .records import RunRecord

HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"


@dataclass(frozen=True)
class Verdict:
    claim: str
    source_figure: str
    measured: str  # what was measured here, in words and numbers
    maps_to: str  # the defined figure the source's quantity maps to
    verdict: str  # holds | does not hold | inconclusive
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Claim:
    text: str
    source_figure: str
    maps_to: str
    judge: Callable[[dict[str, RunRecord], int], tuple[str, str, str]]  # rows by arch, budget -> (measured, verdict, reason)
    needs_budget: Optional[int] = None  # the training steps the claim was made at (quality claims)

    def verdict(self, rows: dict[str, RunRecord], steps: int) -> Verdict:
        if self.needs_budget and steps < self.needs_budget:
            measured, _, _ = _safe(self.judge, rows, steps)
            return Verdict(self.text, self.source_figure, measured, self.maps_to, UNSURE,
                           f"trained {steps:,} of the source's {self.needs_budget:,} iterations")
        measured, verdict, reason = _safe(self.judge, rows, steps)
        return Verdict(self.text, self.source_figure, measured, self.maps_to, verdict, reason)


def _safe(judge, rows, steps) -> tuple[str, str, str]:
    try:
        return judge(rows, steps)
    except _Missing as exc:
        return "-", UNSURE, str(exc)


class _Missing(Exception):
    """A row a claim needs did not finish."""


def _row(rows: dict[str, RunRecord], arch: str) -> RunRecord:
    r = rows.get(arch)
    if r is None or r.status != "ok" or r.profile is None:
        raise _Missing(f"no finished {arch} row")
    return r


def _peak(rows, arch) -> int:
    return _row(rows, arch).profile.peak_live_bytes


def _quality(rows, arch):
    q = _row(rows, arch).quality
    if q is None:
        raise _Missing(f"{arch} was not scored")
    return q


def _memory_ratio(base: str, other: str, claimed: float) -> Callable:
    def judge(rows, steps):
        ratio = _peak(rows, base) / _peak(rows, other)
        measured = f"{ratio:.2f}x ({_peak(rows, base) / 2**20:,.1f} / {_peak(rows, other) / 2**20:,.1f} MiB)"
        if ratio >= 0.9 * claimed:
            return measured, HOLDS, ""
        if ratio < 1.0 + 0.5 * (claimed - 1.0):
            return measured, FAILS, f"less than half the claimed saving of {claimed:.2f}x"
        return measured, UNSURE, "between half the claimed saving and 90% of it"
    return judge


def _fid_close(base: str, other: str) -> Callable:
    def judge(rows, steps):
        a, b = _quality(rows, base).fid, _quality(rows, other).fid
        measured = f"FID {b:,.1f} against {a:,.1f}"
        if b <= 1.25 * a:
            return measured, HOLDS, ""
        if b > 2.0 * a:
            return measured, FAILS, "FID more than twice the original's"
        return measured, UNSURE, "FID between 1.25x and 2x the original's"
    return judge


def _crashes(base: str, arch: str) -> Callable:
    def judge(rows, steps):
        q, ref = _quality(rows, arch), _quality(rows, base)
        measured = f"precision {q.precision:.2f}, FID {q.fid:,.1f} (original {ref.fid:,.1f})"
        if q.precision < 0.1:
            return measured, HOLDS, ""
        if q.fid <= 1.5 * ref.fid:
            return measured, FAILS, "draws digits about as well as the original"
        return measured, UNSURE, "neither empty nor as good as the original"
    return judge


def _collapses(arch: str) -> Callable:
    def judge(rows, steps):
        q = _quality(rows, arch)
        measured = f"class coverage {q.class_coverage:.0%}, entropy {q.class_entropy_nats:.2f} nats"
        if q.class_coverage <= 0.5:
            return measured, HOLDS, ""
        if q.class_coverage >= 0.9:
            return measured, FAILS, "draws (nearly) every class"
        return measured, UNSURE, "coverage between 50% and 90%"
    return judge


GAS_STEPS = 2000
_GAS_SIZE = ("GAS's discriminator 'size (MB)' was a TensorFlow process figure on a GPU; mapped to the "
             "tensor-level peak of a profiled step (MiB)")

#: Each preset's claims.
CLAIMS: dict[str, tuple[Claim, ...]] = {
    "gas": (
        Claim("inception-k32 needs 1.59x less discriminator memory than lsgan-original", "777 vs 489 MB",
              _GAS_SIZE, _memory_ratio("lsgan-original", "inception-k32", 777 / 489)),
        Claim("depthwise-inception needs 3.9x less memory than lsgan-original", "777 vs 199 MB", _GAS_SIZE,
              _memory_ratio("lsgan-original", "depthwise-inception", 777 / 199)),
        Claim("inception-k32 performs about as well as lsgan-original", "approximately the same",
              "FID against held-out images, same N", _fid_close("lsgan-original", "inception-k32"),
              needs_budget=GAS_STEPS),
        Claim("depthwise-inception crashes (no correct images)", "crash", "precision (k-NN manifold)",
              _crashes("lsgan-original", "depthwise-inception"), needs_budget=GAS_STEPS),
        Claim("inception-k16 suffers mode collapse", "mode collapse", "class coverage of the samples",
              _collapses("inception-k16"), needs_budget=GAS_STEPS),
        Claim("inception-k8 suffers mode collapse", "mode collapse", "class coverage of the samples",
              _collapses("inception-k8"), needs_budget=GAS_STEPS),
    ),
}


def judge(preset: Optional[str], rows: list[RunRecord]) -> list[Verdict]:
    """The verdicts on ``preset``'s claims over a comparison's rows ([] for a preset without claims)."""
    claims = CLAIMS.get(preset or "", ())
    if not claims:
        return []
    by_arch = {r.arch: r for r in rows if r.kind == "run" and r.arch}
    steps = min((r.train_steps or 0 for r in by_arch.values()), default=0)
    return [c.verdict(by_arch, steps) for c in claims]
