"""The seeds' published claims as data, each ending in a verdict on a comparison's rows.

A :class:`Claim` names what its source said, the source's figure, the
quantity measured here that it maps to, and the rule that turns the
measurement into a verdict: ``holds``, ``does not hold`` or ``inconclusive``
(with the reason: the budget, a missing or failed row).  Each claim has a
form (:data:`FORMS`) that says when the evidence is enough:

- ``threshold``: "by budget B a run reaches quality Q".  It holds as soon as
  the row reaches Q, even below B (the verdict names the step it was scored
  at); only "does not hold" waits for B: below it, a row short of Q is
  inconclusive with the budget it trained.
- ``comparative``: one row's quality against another's (or a row's samples
  before and after a refinement).  Judged at any budget at which the rows
  trained the same (steps, or time for a time budget); inconclusive when
  their budgets differ.
- ``at the budget``: the state a run ends in at B ("crashes", "suffers mode
  collapse"), which an early, untrained row cannot show either way: judged
  only at B.
- ``budget-free``: memory, time and parameters, judged at any budget.

Nothing here imports torch: claims are judged on records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from .records import ProfileRecord, RunRecord

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


THRESHOLD, COMPARATIVE, AT_BUDGET, BUDGET_FREE = "threshold", "comparative", "at the budget", "budget-free"
FORMS = (THRESHOLD, COMPARATIVE, AT_BUDGET, BUDGET_FREE)

TIME_TOLERANCE = 0.98  # a row trained for a time budget counts as trained for it from 98% of it


@dataclass(frozen=True)
class TrainingLength:
    """How far the rows of a comparison trained: the fewest steps and the shortest time of any row."""

    steps: int = 0
    time_s: float = 0.0

    def short_of(self, steps: int | None, time_s: float | None) -> str:
        """Why this budget is below a claim's (\"\" when it is not)."""
        if steps and self.steps < steps:
            return f"trained {self.steps:,} of the {steps:,} iterations the claim is judged at"
        if time_s and self.time_s < TIME_TOLERANCE * time_s:  # a time budget stops at the end of a step
            return f"trained {self.time_s:,.0f} s of the {time_s:,.0f} s the claim is judged at"
        return ""

    @classmethod
    def of(cls, row: RunRecord) -> TrainingLength:
        """What one row trained."""
        return cls(steps=row.train_steps or 0, time_s=row.train_time_s or 0.0)


#: rows by key -> (measured, verdict, reason)
Judge = Callable[[dict[str, RunRecord], TrainingLength], tuple[str, str, str]]


@dataclass(frozen=True)
class Rule:
    """A claim's rule: the rows it reads (by key) and the function that judges them."""

    reads: tuple[str, ...]
    fn: Judge

    def __call__(self, rows: dict[str, RunRecord], budget: TrainingLength) -> tuple[str, str, str]:
        return self.fn(rows, budget)


@dataclass(frozen=True)
class Claim:
    text: str
    source_figure: str
    maps_to: str
    judge: Rule
    form: str  # one of FORMS: when the evidence is enough for a verdict
    needs_steps: int | None = None  # threshold / at-the-budget claims: the training steps the claim was made at
    needs_time_s: float | None = None  # ... or the training time (presets with a time budget)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"{self.text!r}: form {self.form!r} is not one of {FORMS}")
        budgeted = self.form in (THRESHOLD, AT_BUDGET)
        if budgeted != bool(self.needs_steps or self.needs_time_s):
            raise ValueError(f"{self.text!r}: a {self.form} claim {'needs' if budgeted else 'has no'} budget")
        if self.form == THRESHOLD and len(self.judge.reads) != 1:
            raise ValueError(f"{self.text!r}: a threshold claim reads one row")

    def verdict(self, rows: dict[str, RunRecord], budget: TrainingLength) -> Verdict:
        measured, verdict, reason = _safe(self.judge, rows, budget)
        if measured != "-":  # a row that did not finish says so; otherwise the claim's form decides
            read = [rows[k] for k in self.judge.reads if k in rows]
            verdict, reason = _BY_FORM[self.form](self, read, verdict, reason)
        return Verdict(self.text, self.source_figure, measured, self.maps_to, verdict, reason)

    def short_of(self, row: RunRecord) -> str:
        """Why ``row`` trained less than this claim's budget (\"\" when it did not)."""
        return TrainingLength.of(row).short_of(self.needs_steps, self.needs_time_s)


def _reached(claim: Claim, row: RunRecord) -> str:
    """Where a threshold claim's row reached its quality: the step it was scored at."""
    if row.train_steps is None:
        return "reached (the row records no step count)"
    where = f"reached by step {row.train_steps:,}"
    if claim.needs_time_s:
        return where + f", after {row.train_time_s or 0.0:,.0f} s of the {claim.needs_time_s:,.0f} s it is judged at"
    if claim.short_of(row):
        return where + f" of the {claim.needs_steps or 0:,} it is judged at"
    return where


def _threshold(claim: Claim, read: list[RunRecord], verdict: str, reason: str) -> tuple[str, str]:
    """Holds as soon as the row reaches the quality; anything else waits for the full budget."""
    if verdict == HOLDS:
        return HOLDS, _reached(claim, read[0])
    short = claim.short_of(read[0])
    return (UNSURE, short) if short else (verdict, reason)


def _at_budget(claim: Claim, read: list[RunRecord], verdict: str, reason: str) -> tuple[str, str]:
    """Judged only when every row it reads trained the full budget."""
    short = next((s for r in read if (s := claim.short_of(r))), "")
    return (UNSURE, short) if short else (verdict, reason)


def _trained_time(row: RunRecord) -> float:
    """A time-budgeted row's training time: its time budget once trained to TIME_TOLERANCE of it."""
    budget, t = row.time_budget_s or 0.0, row.train_time_s or 0.0
    return budget if budget and t >= TIME_TOLERANCE * budget else t


def _trained(row: RunRecord) -> str:
    """A row's budget in words: its training time for a time budget, else its steps."""
    return f"{_trained_time(row):,.0f} s" if row.time_budget_s else f"{row.train_steps or 0:,} steps"


def _same_budget(read: list[RunRecord]) -> bool:
    if all(r.time_budget_s for r in read):  # time budgets: the same time, to TIME_TOLERANCE
        times = [_trained_time(r) for r in read]
        return min(times) >= TIME_TOLERANCE * max(times)
    return not any(r.time_budget_s for r in read) and len({r.train_steps for r in read}) == 1


def _comparative(claim: Claim, read: list[RunRecord], verdict: str, reason: str) -> tuple[str, str]:
    """Judged at any budget the rows it compares share; inconclusive when their budgets differ."""
    if not _same_budget(read):
        trained = ", ".join(f"{k} {_trained(r)}" for k, r in zip(claim.judge.reads, read))
        return UNSURE, f"the rows trained different budgets ({trained}); compared only at the same budget"
    shortest = min(read, key=lambda r: _trained_time(r) if r.time_budget_s else r.train_steps or 0)
    at = f"compared at {_trained(shortest)}" + (" a row" if len(read) > 1 else "")
    return verdict, f"{reason}; {at}" if reason else at


def _budget_free(claim: Claim, read: list[RunRecord], verdict: str, reason: str) -> tuple[str, str]:
    return verdict, reason


_BY_FORM: dict[str, Callable[[Claim, list[RunRecord], str, str], tuple[str, str]]] = {
    THRESHOLD: _threshold, COMPARATIVE: _comparative, AT_BUDGET: _at_budget, BUDGET_FREE: _budget_free}


def _safe(judge, rows, budget) -> tuple[str, str, str]:
    try:
        return judge(rows, budget)
    except _Missing as exc:
        return "-", UNSURE, str(exc)


class _Missing(Exception):
    """A row a claim needs did not finish."""


def _row(rows: dict[str, RunRecord], key: str) -> RunRecord:
    r = rows.get(key)
    if r is None or r.status != "ok" or r.profile is None:
        raise _Missing(f"no finished {key} row")
    return r


def _profile(rows: dict[str, RunRecord], key: str) -> ProfileRecord:
    profile = _row(rows, key).profile
    assert profile is not None  # _row refuses a row without one
    return profile


def _peak(rows: dict[str, RunRecord], arch: str) -> int:
    peak = _profile(rows, arch).peak_live_bytes
    if peak is None:
        raise _Missing(f"{arch} has no peak memory")
    return peak


def _quality(rows, arch):
    q = _row(rows, arch).quality
    if q is None:
        raise _Missing(f"{arch} was not scored")
    return q


def _memory_ratio(base: str, other: str, claimed: float) -> Rule:
    def judge(rows, budget):
        ratio = _peak(rows, base) / _peak(rows, other)
        measured = f"{ratio:.2f}x ({_peak(rows, base) / 2**20:,.1f} / {_peak(rows, other) / 2**20:,.1f} MiB)"
        if ratio >= 0.9 * claimed:
            return measured, HOLDS, ""
        if ratio < 1.0 + 0.5 * (claimed - 1.0):
            return measured, FAILS, f"less than half the claimed saving of {claimed:.2f}x"
        return measured, UNSURE, "between half the claimed saving and 90% of it"
    return Rule((base, other), judge)


def _not_digits(before, after) -> str:
    """Why FID cannot compare two sample sets neither of which the classifier reads as digits ("" if it can):
    the extractor maps every noise-like image to about the same place."""
    conf = (before.mean_confidence, after.mean_confidence)
    if max(conf) < 0.5:
        return (f"neither set is read as digits (classifier confidence {conf[0]:.2f} -> {conf[1]:.2f}); "
                "FID does not rank non-digits")
    return ""


def _fid_close(base: str, other: str) -> Rule:
    def judge(rows, budget):
        qa, qb = _quality(rows, base), _quality(rows, other)
        a, b = qa.fid, qb.fid
        measured = f"FID {b:,.1f} against {a:,.1f}"
        why = _not_digits(qa, qb)
        if why:
            return measured, UNSURE, why
        if b <= 1.25 * a:
            return measured, HOLDS, ""
        if b > 2.0 * a:
            return measured, FAILS, "FID more than twice the original's"
        return measured, UNSURE, "FID between 1.25x and 2x the original's"
    return Rule((base, other), judge)


#: Recall below which, with at most one class drawn, a generator has collapsed onto one image: the k-NN
#: precision of such samples can be high (one point inside the real manifold) while none is a correct digit.
COLLAPSED_RECALL = 0.05


def _crashes(base: str, arch: str) -> Rule:
    def judge(rows, budget):
        q, ref = _quality(rows, arch), _quality(rows, base)
        measured = (f"precision {q.precision:.2f}, recall {q.recall:.2f}, {q.class_coverage:.0%} of classes, "
                    f"FID {q.fid:,.1f} (original {ref.fid:,.1f})")
        if q.precision < 0.1:
            return measured, HOLDS, ""
        if q.recall < COLLAPSED_RECALL and q.class_coverage <= 0.1:  # one image over and over: none correct
            return measured, HOLDS, "every sample the same image (recall near 0, one class)"
        if q.fid <= 1.5 * ref.fid:
            return measured, FAILS, "draws digits about as well as the original"
        return measured, UNSURE, "neither empty nor as good as the original"
    return Rule((arch, base), judge)


def _collapses(arch: str) -> Rule:
    def judge(rows, budget):
        q = _quality(rows, arch)
        measured = f"class coverage {q.class_coverage:.0%}, entropy {q.class_entropy_nats:.2f} nats"
        if q.class_coverage <= 0.5:
            return measured, HOLDS, ""
        if q.class_coverage >= 0.9:
            return measured, FAILS, "draws (nearly) every class"
        return measured, UNSURE, "coverage between 50% and 90%"
    return Rule((arch,), judge)


def _saving(gon: str, gan: str, claimed: float) -> Rule:
    """GON's peak against a GAN's as a saving (1 - gon / gan), against a claimed saving ("up to")."""
    def judge(rows, budget):
        a, b = _peak(rows, gon), _peak(rows, gan)
        saving = 1.0 - a / b
        less = f"{saving:.0%} less" if saving >= 0 else f"{-saving:.0%} more"
        measured = f"{less} ({a / 2**20:,.2f} / {b / 2**20:,.2f} MiB)"
        if saving >= 0.9 * claimed:
            return measured, HOLDS, ""
        if saving <= 0.0:
            return measured, FAILS, "GON needs as much memory as the GAN or more"
        return measured, UNSURE, f"a saving, smaller than 90% of the claimed {claimed:.0%}"
    return Rule((gon, gan), judge)


def _time_ratio(gon: str, gan: str, claimed: float) -> Rule:
    """GON's median step time over a GAN's, against a claimed ratio (1.05 = 5% more)."""
    def judge(rows, budget):
        a, b = _profile(rows, gon).step_time_s_median, _profile(rows, gan).step_time_s_median
        if not a or not b:
            raise _Missing("no timed steps")
        ratio = a / b
        measured = f"{ratio:,.2f}x ({a * 1e3:,.1f} / {b * 1e3:,.1f} ms per step)"
        if ratio <= 1.25 * claimed:
            return measured, HOLDS, ""
        if ratio > 2.0 * claimed:
            return measured, FAILS, f"more than twice the claimed {claimed:.2f}x"
        return measured, UNSURE, f"between 1.25x and 2x the claimed {claimed:.2f}x"
    return Rule((gon, gan), judge)


def _on_digit(key: str) -> Rule:
    def judge(rows, budget):
        q = _quality(rows, key)
        if q.on_class_fraction is None:
            raise _Missing(f"{key} was not trained on a class selection")
        measured = f"{q.on_class_fraction:.0%} read as the kept class, confidence {q.mean_confidence:.2f}"
        if q.on_class_fraction >= 0.8:
            return measured, HOLDS, ""
        if q.on_class_fraction < 0.5:
            return measured, FAILS, "fewer than half the samples read as the digit"
        return measured, UNSURE, "between 50% and 80% read as the digit"
    return Rule((key,), judge)


def _test_error(key: str, paper: float) -> Rule:
    """Semi-supervised test error (a fraction) against the paper's (a fraction): holds within 1.5x + 0.5 pp."""
    def judge(rows, budget):
        r = _row(rows, key)
        if r.test_error_fraction is None:
            raise _Missing(f"{key} has no test error")
        measured = f"{r.test_error_fraction:.2%} of {r.n_test_images:,} held-out images"
        if r.test_error_fraction <= 1.5 * paper + 0.005:
            return measured, HOLDS, ""
        return measured, FAILS, f"above 1.5x the paper's {paper:.2%} plus 0.5 points"
    return Rule((key,), judge)


def _refinement(key: str) -> Rule:
    """FID of the same samples after the critic's Langevin refinement against before."""
    def judge(rows, budget):
        r = _row(rows, key)
        if r.quality is None or r.quality_unrefined is None:
            raise _Missing(f"{key} has no before/after scores")
        before, after = r.quality_unrefined.fid, r.quality.fid
        measured = f"FID {before:,.1f} -> {after:,.1f} (N={r.quality.n_samples:,})"
        why = _not_digits(r.quality_unrefined, r.quality)
        if why:
            return measured, UNSURE, why
        if after <= 0.95 * before:
            return measured, HOLDS, ""
        if after >= before:
            return measured, FAILS, "refinement did not lower FID"
        return measured, UNSURE, "less than 5% lower: within FID's sampling noise at this N"
    return Rule((key,), judge)


def _param_counts(key: str, d: int, g: int) -> Rule:
    def judge(rows, budget):
        r = _row(rows, key)
        measured = f"{r.d_params:,} / {r.g_params:,}"
        if (r.d_params, r.g_params) == (d, g):
            return measured, HOLDS, ""
        return measured, FAILS, f"the source's pair has {d:,} / {g:,}"
    return Rule((key,), judge)


def _recognisable(key: str) -> Rule:
    def judge(rows, budget):
        q = _quality(rows, key)
        measured = f"classifier confidence {q.mean_confidence:.2f}, class coverage {q.class_coverage:.0%}"
        if q.mean_confidence >= 0.8 and q.class_coverage >= 0.9:
            return measured, HOLDS, ""
        if q.mean_confidence < 0.5:
            return measured, FAILS, "the classifier reads most samples as no digit"
        return measured, UNSURE, "confident on some samples, or some digits missing"
    return Rule((key,), judge)


GAS_STEPS = 2000
_GAS_SIZE = ("GAS's discriminator 'size (MB)' was a TensorFlow process figure on a GPU; mapped to the "
             "tensor-level peak of a profiled step (MiB)")

GON_TIME_S = 300.0  # the gon preset's budget: the source gives none for its few-shot figure
IGAN_STEPS = 300 * 600  # openai/improved-gan: 300 epochs of 600 batches of 100 (60,000 images)
_IGAN_ERROR = ("classification error of argmax D(x) on the held-out images (the paper: MNIST's 10,000 test "
               "images, D trained beside 60,000; the offline split trains on 5,000)")
DCD_STEPS = 100  # the dcd preset's critic fine-tuning: the source fine-tunes a pre-trained CIFAR-10 critic
DCD_PRETRAIN_CAP = 4000  # the most WGAN-GP steps the dcd preset trains its critic and generator for
#: the dcd preset's quality gate: the generator draws digits (mean classifier confidence and class coverage on
#: n samples), checked every `every` WGAN-GP steps
DCD_GATE = {"every": 250, "n": 500, "confidence": 0.8, "coverage": 0.9}
_DCD_FID = "FID of the same N samples before (G(z)) and after refinement: same z, critic and reference"
MLP_GAN_STEPS = 500 * 469  # the tutorial: 500 epochs of 469 batches of 128 (60,000 images)

#: Each preset's claims.
CLAIMS: dict[str, tuple[Claim, ...]] = {
    "gas": (
        Claim("inception-k32 needs 1.59x less discriminator memory than lsgan-original", "777 vs 489 MB",
              _GAS_SIZE, _memory_ratio("lsgan-original", "inception-k32", 777 / 489), BUDGET_FREE),
        Claim("depthwise-inception needs 3.9x less memory than lsgan-original", "777 vs 199 MB", _GAS_SIZE,
              _memory_ratio("lsgan-original", "depthwise-inception", 777 / 199), BUDGET_FREE),
        Claim("inception-k32 performs about as well as lsgan-original", "approximately the same",
              "FID against held-out images, same N", _fid_close("lsgan-original", "inception-k32"), COMPARATIVE),
        Claim("depthwise-inception crashes (no correct images)", "crash", "precision (k-NN manifold)",
              _crashes("lsgan-original", "depthwise-inception"), AT_BUDGET, needs_steps=GAS_STEPS),
        Claim("inception-k16 suffers mode collapse", "mode collapse", "class coverage of the samples",
              _collapses("inception-k16"), AT_BUDGET, needs_steps=GAS_STEPS),
        Claim("inception-k8 suffers mode collapse", "mode collapse", "class coverage of the samples",
              _collapses("inception-k8"), AT_BUDGET, needs_steps=GAS_STEPS),
    ),
    "gon": (
        Claim("GON generates the trained digit from 10 shots", "generated zeros, few-shot (GON_MNIST README)",
              "share of samples the quality classifier reads as the kept digit", _on_digit("gon"),
              THRESHOLD, needs_time_s=GON_TIME_S),
        Claim("GON needs up to 58% less memory than a GAN", "up to 58% less (time series, Raspberry Pi)",
              "tensor-level peak of a profiled step; the GAN trains the same discriminator with a generator",
              _saving("gon", "gan", 0.58), BUDGET_FREE),
        Claim("GON takes about 5% more training time than a GAN", "5% more (time series, Raspberry Pi)",
              "median wall time of a profiled step, same data and batch", _time_ratio("gon", "gan", 1.05), BUDGET_FREE),
        Claim("GON's samples are about as good as the GAN's", "comparable or better (paper)",
              "FID against held-out images of the kept digit, same N", _fid_close("gan", "gon"),
              COMPARATIVE),
    ),
    "improved-gan": tuple(
        Claim(f"test error at {n} labels is {paper:.2%}", f"{paper:.2%} (paper); {repro:.2%} (reproduction)",
              _IGAN_ERROR, _test_error(f"labels-{n}", paper), THRESHOLD, needs_steps=IGAN_STEPS)
        for n, paper, repro in ((20, 0.1677, 0.1952), (50, 0.0221, 0.0569), (100, 0.0093, 0.0433),
                                (200, 0.0090, 0.0398))),
    "improved-gan-100": (),  # filled in below: the improved-gan preset's claim at 100 labels
    "dcd": (
        Claim("Langevin refinement in pixel space improves G's samples", "CIFAR-10 FID 21.67 (no MNIST figure)",
              _DCD_FID, _refinement("pixel"), COMPARATIVE),
        Claim("Langevin refinement in latent space improves G's samples", "CIFAR-10 FID 16.24 (no MNIST figure)",
              _DCD_FID, _refinement("latent"), COMPARATIVE),
    ),
    "mlp-gan": (
        Claim("the pair has 1.46M / 1.49M parameters", "1,460,225 / 1,486,352 (Keras summaries)",
              "parameter counts of the trained discriminator / generator", _param_counts("gan", 1_460_225, 1_486_352),
              BUDGET_FREE),
        Claim("the GAN draws recognisable digits", "recognisable digits after 500 epochs",
              "the quality classifier's mean confidence and class coverage", _recognisable("gan"),
              THRESHOLD, needs_steps=MLP_GAN_STEPS),
    ),
}


CLAIMS["improved-gan-100"] = tuple(c for c in CLAIMS["improved-gan"] if c.judge.reads == ("labels-100",))
CLAIMS["dcd-no-sn"] = CLAIMS["dcd"]  # the same study on the critic without spectral norm


def _rows_by_key(rows: list[RunRecord]) -> dict[str, RunRecord]:
    """Trained rows under each name a claim may use: variant, mode, architecture, ``mode/arch``.

    A name two rows share is dropped, so that a claim never reads the wrong row.
    """
    seen: dict[str, list[RunRecord]] = {}
    for r in rows:
        if r.kind != "run":
            continue
        for key in dict.fromkeys(k for k in (r.variant, r.mode, r.arch, f"{r.mode}/{r.arch}") if k):
            seen.setdefault(key, []).append(r)
    return {k: v[0] for k, v in seen.items() if len(v) == 1}


def judge(preset: str | None, rows: list[RunRecord]) -> list[Verdict]:
    """The verdicts on ``preset``'s claims over a comparison's rows ([] for a preset without claims)."""
    claims = CLAIMS.get(preset or "", ())
    if not claims:
        return []
    # the budget of the rows that finished: a failed row says so in its own claims ("no finished ... row")
    trained = [r for r in rows if r.kind == "run" and r.status == "ok"]
    budget = TrainingLength(steps=min((r.train_steps or 0 for r in trained), default=0),
                    time_s=min((r.train_time_s or 0.0 for r in trained), default=0.0))
    by_key = _rows_by_key(rows)
    return [c.verdict(by_key, budget) for c in claims]
