"""Planning a comparison: the rows (:class:`RunSpec`) a request asks for, every name and setting checked
before any row runs, and the N every row is scored at."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..records import RunRecord
from ..request import STEP_FIELDS, CarriesStep, StepSpec
from .presets import PRESET_SETTINGS, PRESETS, _rows

DEFAULT_TIME_BUDGET_S = 120.0
DEFAULT_N_SAMPLES = 1000
DEFAULT_PROFILE_STEPS = 5

#: The request of a row that trains no model (the floor): its data selection, seed and device only.
NO_MODEL = StepSpec(arch="")


@dataclass(frozen=True)
class RunSpec(CarriesStep):
    """One row to run: the step's request (``step``) and how the row trains, profiles and scores it.
    ``kind="floor"`` is the real-vs-real row (its ``step`` gives only the data, seed and device).

    ``steps`` are training steps (or ``time_budget_s`` seconds of training); ``profile_steps`` the timed
    steps profiled after training; ``memory_limit_bytes`` caps the worker's data segment (RLIMIT_DATA);
    ``cpus`` are the cores the worker is pinned to (``--jobs``; None: any); ``threads`` its torch threads;
    ``variant`` a preset row's name for its own hyper-parameters; ``continue_run`` trains on from the
    checkpoint in ``run_dir`` (``--resume`` sets it for a row whose run stopped part-way with the same settings,
    or with fewer steps: training resumes exactly, so a row extended to more steps is the row that trained
    them all).

    ``gate`` trains the row until its generator draws digits: every ``gate["every"]`` steps ``gate["n"]``
    samples are scored, and training stops once the quality classifier's mean confidence reaches
    ``gate["confidence"]`` and its class coverage ``gate["coverage"]``; ``steps`` is then the cap.
    ``init_from`` names the variant of an earlier row of the same comparison whose trained models (D and G,
    not its optimisers) this row starts from; ``init_checkpoint`` is where that row's checkpoint is (the
    comparison fills it in)."""

    step: StepSpec = NO_MODEL
    kind: str = "run"
    steps: int | None = None
    time_budget_s: float | None = None
    n_samples: int = DEFAULT_N_SAMPLES
    profile_steps: int = DEFAULT_PROFILE_STEPS
    run_dir: str | None = None
    memory_limit_bytes: int | None = None
    cpus: list[int] | None = None
    threads: int | None = None
    variant: str | None = None
    continue_run: bool = False
    gate: dict | None = None
    init_from: str | None = None
    init_checkpoint: str | None = None

    @classmethod
    def of(cls, **fields: Any) -> RunSpec:
        """A row from flat keywords: the request's (:data:`~gonprof.request.STEP_FIELDS`) and the row's."""
        step = {k: fields.pop(k) for k in list(fields) if k in STEP_FIELDS}
        if step.get("classes") is not None:
            step["classes"] = tuple(step["classes"])
        if "arch" in step or fields.get("kind", "run") == "run":
            arch = step.pop("arch", None) or ""
            return cls(step=StepSpec(arch=arch, **step), **fields)
        return cls(step=NO_MODEL.replace(**step), **fields)

    @property
    def mode(self) -> str | None:
        return self.step.mode if self.kind == "run" else None

    @property
    def arch(self) -> str | None:
        return self.step.arch if self.kind == "run" else None

    @property
    def label(self) -> str:
        if self.kind == "floor":
            return "real (floor)"
        return f"{self.mode} / {self.arch}" + (f" ({self.variant})" if self.variant else "")

    def base_record(self) -> RunRecord:
        """The record this row fills in (or fails with)."""
        s = self.step
        classes = list(s.classes) if s.classes is not None else None
        return RunRecord(kind=self.kind, mode=self.mode, arch=self.arch, generator=s.generator,
                         preset=s.preset, batch_size=s.batch_size, seed=s.seed, device=s.device,
                         time_budget_s=self.time_budget_s, run_dir=self.run_dir, variant=self.variant,
                         hparams=dict(s.hparams), classes=classes, per_class=s.per_class, cpus=self.cpus)


_ROW_FIELDS = {f.name for f in dataclasses.fields(RunSpec)} - {"step"}


def scope_hparams(hparams: dict, modes: list[str]) -> dict[str, dict]:
    """Split ``--set`` overrides by mode: ``gon.lr=1e-4`` goes to gon only (and wins over an unscoped
    ``lr``), ``lr=1e-4`` to every mode that has ``lr``.  A name no mode has (or a scope naming a mode
    not in the run) is an error."""
    from ..modes import get_mode
    from ..modes.base import ALIASES, IncompatibleError

    out: dict[str, dict] = {m: {} for m in modes}
    # unscoped names first, so that a scoped value wins whatever the order given
    for key, value in sorted(hparams.items(), key=lambda kv: "." in kv[0]):
        scope, dot, name = key.partition(".")
        name = ALIASES.get(name, name)
        key = f"{scope}.{name}" if dot else ALIASES.get(key, key)
        if dot and scope in out:
            known = get_mode(scope).defaults
            if name not in known:
                raise IncompatibleError(f"--set {key}: mode {scope} has no hyper-parameter {name!r} "
                                        f"(it has: {', '.join(sorted(known))})")
            out[scope][name] = value
            continue
        if dot:
            raise IncompatibleError(f"--set {key}: no {scope!r} row in this comparison (modes: {', '.join(out)})")
        takers = [m for m in out if key in get_mode(m).defaults]
        if not takers:
            raise IncompatibleError(f"--set {key}: none of {', '.join(out)} has a hyper-parameter {key!r}")
        for m in takers:
            out[m][key] = value
    return out


def split_levers(hparams: dict, modes: list[str]) -> tuple[dict, dict[str, dict]]:
    """``--set`` overrides split into hyper-parameters and levers (:data:`gonprof.levers.LEVER_DEFAULTS`:
    ``precision``, ``checkpoint``, ``micro_batches``, ``channels_last``), the levers by mode:
    ``lsgan.precision=bf16`` for the lsgan rows, ``precision=bf16`` for every row."""
    from ..levers import LEVER_DEFAULTS
    from ..modes.base import IncompatibleError

    rest: dict = {}
    levers: dict[str, dict] = {m: {} for m in modes}
    for key, value in sorted(hparams.items(), key=lambda kv: "." in kv[0]):
        scope, dot, name = key.partition(".")
        lever = name if dot else key
        if lever not in LEVER_DEFAULTS:
            rest[key] = value
            continue
        if dot and scope not in levers:
            raise IncompatibleError(f"--set {key}: no {scope!r} row in this comparison (modes: {', '.join(modes)})")
        for m in ([scope] if dot else modes):
            levers[m][lever] = value
    return rest, levers


def _levers_of(fields: dict) -> dict:
    from ..levers import LEVER_DEFAULTS

    return {k: v for k, v in fields.items() if k in LEVER_DEFAULTS}


def _lever_variant(variant: str | None, levers: dict) -> str | None:
    """A row's variant with its levers named (``bf16``, ``checkpoint D``, ``4 micro-batches``), so rows that
    differ only by a lever are told apart."""
    from ..levers import lever_label

    text = lever_label(levers)
    if not text:
        return variant
    return f"{variant}, {text}" if variant else text


def plan(modes: list[str], archs: list[str] | None = None, *, preset: str | None = None,
         **common: Any) -> list[RunSpec]:
    """The rows to run: every compatible (mode, architecture) pair, in the order given.

    Without ``archs`` each mode trains its own default discriminator.  With
    ``archs`` (names or globs) a mode trains each one it accepts; a pair that
    no mode accepts is an error, so a typo cannot silently drop a row.
    ``preset`` names an entry of :data:`PRESETS` (its settings yield to
    explicit ones).  ``common`` are :class:`RunSpec` fields shared by all rows.
    """
    from ..arch import ARCHITECTURES, get_arch
    from ..modes import get_mode
    from ..modes.base import IncompatibleError

    if preset is not None:
        if preset not in PRESETS:
            raise IncompatibleError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
        if archs:
            raise IncompatibleError(f"preset {preset} names its own architectures; drop --arch")
        p = dict(PRESETS[preset])
        quick = bool(common.pop("quick", False))
        if quick:  # the preset's short budget, for a look in minutes
            p.pop("steps", None), p.pop("time_budget_s", None)
            p.update(p.get("quick", {}))
        for key in PRESET_SETTINGS:
            if common.get(key) is None and key in p and not (key == "time_budget_s" and common.get("steps")):
                common[key] = p[key]
        for m in modes:  # unknown names fail with a did-you-mean, even beside a preset
            get_mode(m)
        rows = [r for r in _rows(p["pairs"]) if not modes or r[0] in modes]
        if not rows:
            raise IncompatibleError(f"preset {preset} runs no {', '.join(modes)} row "
                                    f"(its modes: {', '.join(dict.fromkeys(r[0] for r in _rows(p['pairs'])))})")
    else:
        if not modes:
            raise IncompatibleError("name at least one mode (e.g. gonprof compare gon lsgan) or a --preset")
        pairs = []
        names = ARCHITECTURES.match(archs) if archs else None
        for m in modes:
            spec = get_mode(m)
            if names is None:
                if not spec.default_arch:
                    raise IncompatibleError(f"mode {m} names no default discriminator; pass --arch")
                pairs.append((m, spec.default_arch))
                continue
            for a in names:
                arch = get_arch(a)
                if arch.role == "discriminator" and spec.accepts(arch.output):
                    pairs.append((m, a))
        if names is not None:
            unused = [a for a in names if not any(pa == a for _, pa in pairs)]
            if unused:
                raise IncompatibleError(f"no mode among {', '.join(modes)} can train {', '.join(unused)}")
        rows = [(m, a, {}, None, {}) for m, a in pairs]
    for m, a, *_ in rows:  # unknown names fail here, before anything runs
        get_mode(m), get_arch(a)
    fields_ = set(STEP_FIELDS) | _ROW_FIELDS
    unknown = sorted(set(common) - fields_ - {"quick"})
    if unknown:
        raise TypeError(f"plan() got unexpected setting(s) {', '.join(unknown)}; a row takes "
                        f"{', '.join(sorted(fields_ - {'step', 'kind', 'run_dir', 'cpus'}))}")
    shared = {k: v for k, v in common.items() if k in fields_ and v is not None}
    if "steps" not in shared and "time_budget_s" not in shared:
        shared["time_budget_s"] = DEFAULT_TIME_BUDGET_S
    row_modes = list(dict.fromkeys(m for m, *_ in rows))
    hparams, levers = split_levers(dict(shared.pop("hparams", {}) or {}), row_modes)
    scoped = scope_hparams(hparams, row_modes)
    _check_row_settings(rows, preset, scoped, {m: {**_levers_of(shared), **levers[m]} for m in row_modes})
    # every request checked (names, devices, every value against its mode's rules) before anything runs
    specs = [RunSpec.of(mode=m, arch=a, hparams={**row_hp, **scoped[m]},
                        variant=_lever_variant(variant, {**_levers_of(shared), **levers[m], **_levers_of(row)}),
                        **{**shared, **levers[m], **_row_settings(row, preset is not None and quick)})
             for m, a, row_hp, variant, row in rows]
    specs = [dataclasses.replace(s, step=s.step.checked()) for s in specs]
    if "classes" in shared or "per_class" in shared:  # a bad selection fails here, before anything runs
        from ..data import SelectionError, load_split

        kept = len(load_split(specs[0].step.data, specs[0].step.selection())[0])
        for s in specs:
            batch = s.step.effective_batch_size()
            if batch > kept:
                raise SelectionError(f"{s.mode} / {s.arch}: batch size {batch} exceeds the selection's {kept} "
                                     f"training images; pass --batch-size {kept} or fewer, or keep more images")
    return specs


def _check_row_settings(rows: list, preset: str | None, scoped: dict[str, dict], levers: dict[str, dict]) -> None:
    """A preset row's own settings define it (and its label): a ``--set`` of a hyper-parameter it sets, or a
    lever it sets given another value than the default, is an error rather than a silent override."""
    from ..levers import LEVER_DEFAULTS
    from ..modes.base import IncompatibleError

    for m, _, row_hp, variant, row in rows:
        clash = sorted(set(row_hp) & set(scoped[m]))
        if clash:
            raise IncompatibleError(f"--set {clash[0]}: preset {preset} sets it per row (row {variant or m}); "
                                    "drop it, or compare the variants you want without the preset")
        given = levers[m]
        clash = sorted(k for k in _levers_of(row) if k in given and given[k] != LEVER_DEFAULTS[k])
        if clash:
            raise IncompatibleError(f"--{clash[0].replace('_', '-')}: preset {preset} sets it per row (row "
                                    f"{variant or m}); drop it, or compare the variants you want without the preset")


def _row_settings(row: dict, quick: bool) -> dict:
    """A preset row's own RunSpec settings (they win over the shared ones), its ``quick`` ones with --quick."""
    out = {k: v for k, v in row.items() if k != "quick"}
    if quick:
        out.update(row.get("quick", {}))
    return out


def scoring_n(spec: RunSpec) -> tuple[int, int]:
    """(N every row of a comparison is scored at, held-out images of its selection).

    N is ``spec.n_samples`` unless the selection holds out fewer than ``2 N``
    images, in which case it is half of them, so that the floor exists at N.
    """
    from ..data import load_split
    from ..metrics.scores import floor_n

    held = load_split(spec.step.data, spec.step.selection())[1]
    return floor_n(spec.n_samples, len(held)), len(held)


