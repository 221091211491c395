"""The small API the CLI calls: specs in, typed records out.  Nothing here prints."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from . import claims, comparison
from ._version import __version__
from .arch import ARCHITECTURES, Shape, ShapeError, get_arch
from .budget import fit_batch, parse_bytes
from .budget import scaling as _scaling
from .comparison import CompareEvents
from .data import DataError, Selection, SelectionError
from .distributed import plan_ranks
from .estimate import build_on_meta, estimate_step_memory
from .executors import Placement
from .guard import available_bytes, check_fits
from .measure.flops import forward_table
from .metrics.scores import floor_n, held_out, score_with_floor
from .modes import get_mode
from .modes import list_modes as _list
from .modes.base import IncompatibleError
from .records import (
    SCHEMA_VERSION,
    BatchTrial,
    DistributedProfileRecord,
    FitRecord,
    LeverRecord,
    MemoryEstimate,
    ProfileRecord,
    RecordError,
    RequestError,
    RunRecord,
    ScalingRecord,
    TooBigError,
    load_extra,
    load_records,
    provenance,
    save_records,
)
from .registry import RegistryError, load_plugin_file
from .request import StepSpec, as_spec, cuda_here
from .runner import profile_request
from .sample_io import MIN_IMAGES, read_samples
from .summary import ArchReport, ArchSummary, LayerRow, ModeSummary, mode_settings, param_totals, summarize
from .train import TrainConfig, TrainError, TrainResult, load_run_config, run_training

if TYPE_CHECKING:
    from .claims import Verdict
    from .comparison.plan import RunSpec

#: The exceptions the verbs raise for a request that cannot be made as asked (a usage error, exit 2).
USAGE_ERRORS: tuple[type[Exception], ...] = (RegistryError, ShapeError, IncompatibleError, SelectionError,
                                              RequestError)
#: The exceptions the verbs raise for a run, data or results file that failed (exit 1).
RUN_ERRORS: tuple[type[Exception], ...] = (DataError, RecordError, TooBigError, TrainError)


def match_architectures(patterns: Sequence[str]) -> list[str]:
    """The architectures that ``patterns`` (names or globs) name, in natural order; an unknown name raises
    :class:`~gonprof.registry.UnknownNameError` with a did-you-mean."""
    return list(ARCHITECTURES.match(list(patterns)))


def load_plugins(paths: Sequence[str | os.PathLike[str]] | None) -> None:
    """Load each plugin file (``--plugin``): its architectures and modes join the registries."""

    for path in paths or ():
        load_plugin_file(Path(path))


def selection(classes: str | list[int] | tuple[int, ...] | None, per_class: int | None = None) -> Selection:
    """The data selection of ``classes`` (``"0,3"`` or a list) and ``per_class``; a bad one raises
    :class:`~gonprof.data.SelectionError`."""
    return Selection.parse(classes, per_class)


def list_architectures(pattern: str | None = None, role: str | None = None) -> list[ArchSummary]:
    rows = []
    for name in ARCHITECTURES.list(pattern):
        spec = ARCHITECTURES.get(name)
        if role is None or spec.role == role:
            rows.append(summarize(spec, ARCHITECTURES.origin(name)))
    return rows


def list_modes(pattern: str | None = None) -> list[ModeSummary]:

    return [
        ModeSummary(m.name, m.summary, tuple(m.phases), m.needs_generator, tuple(m.outputs), dict(m.defaults),
                    tuple(m.presets), m.source, m.default_arch, tuple(m.notes),
                    {k: dict(v) for k, v in m.presets.items()}, mode_settings(m))
        for m in _list(pattern)
    ]


def describe_mode(mode: str) -> ModeSummary:
    """One training mode: its defaults, presets (what each changes) and notes on where it departs from its seed."""

    name = get_mode(mode).name  # an unknown name fails here with a did-you-mean
    return next(m for m in list_modes() if m.name == name)


def describe(arch: str, input_shape: Shape | None = None) -> ArchReport:
    """Layer-by-layer parameters and forward FLOPs of ``arch`` for one sample."""

    spec = get_arch(arch)
    shape = tuple(input_shape) if input_shape else tuple(spec.input_shape)
    model = spec.build(shape)
    model_input: tuple[int, ...] = (1, *shape)
    if spec.role == "generator":
        assert spec.latent_dim is not None, f"generator {spec.name} declares no latent_dim"
        model_input = (1, spec.latent_dim)
    table = forward_table(model, model_input)
    rows = tuple(
        LayerRow(name=r.module, type=r.module_type, depth=r.depth,
                 output_shape=tuple(r.output_shape[1:]) if r.output_shape else None,
                 params=r.params, forward_flops=r.forward_flops)
        for r in table.rows if r.depth > 0
    )
    total, trainable = param_totals(model)
    return ArchReport(
        arch=summarize(spec, ARCHITECTURES.origin(arch)), input_shape=shape, layers=rows,
        total_params=total, trainable_params=trainable, forward_flops=table.total_forward_flops,
        uncounted_ops=dict(table.unsupported_ops), flops_note=table.note,
    )


def profile(spec: StepSpec | str | None = None, mode: str | None = None, *, warmup: int = 2, steps: int = 10,
            force: bool = False, nproc: int | None = None, **fields: Any) -> ProfileRecord | DistributedProfileRecord:
    """Profile ``steps`` optimization steps of the request ``spec``; returns a ProfileRecord.

    ``spec`` is a :class:`~gonprof.request.StepSpec`, or an architecture's name with the request's other
    fields as keywords (``mode``, ``generator``, ``preset``, ``hparams``, ``batch_size``, ``device``,
    ``seed``, ``data``, ``input_shape``, ``classes``, ``per_class``).  With ``nproc``, the step is
    profiled on that many data-parallel ranks instead, each on a batch of ``batch_size``
    (:func:`profile_distributed`): a DistributedProfileRecord.

    Builds the step, feeds it batches of real (embedded MNIST) or synthetic
    images, and runs it under :class:`gonprof.Profiler`: ``warmup`` untimed
    steps (the last one counts FLOPs and live bytes), then ``steps`` timed ones.
    ``classes`` / ``per_class`` select the training images the batches are
    drawn from (see :class:`gonprof.data.Selection`); a batch larger than the
    selection repeats its images.
    A failure inside a step (out of memory, NaN, Ctrl-C) comes back as the
    record's ``status``; errors in the request itself (unknown names, shapes,
    an impossible selection) raise before anything runs.
    """
    request = _request(spec, mode, fields, "profile")
    if nproc is not None:
        return profile_distributed(request, nproc=nproc, warmup=warmup, steps=steps, force=force)

    request = request.checked()
    check_fits(request, force=force)
    return profile_request(request, warmup=warmup, steps=steps)


def levers(spec: StepSpec | str | None = None, mode: str | None = None, *, warmup: int = 2, steps: int = 3,
           force: bool = False, **fields: Any) -> LeverRecord:
    """Profile the request ``spec`` as it is, under each memory lever alone (bf16; checkpoint of D, and of G;
    micro-batches; channels-last) and under the pair of the two that saved most, one after another in this
    process, each beside its estimate; a :class:`~gonprof.records.LeverRecord` (one row each, a lever its rule
    refuses listed as skipped with why)."""
    from .lever_table import lever_table

    request = _request(spec, mode, fields, "levers").checked()
    check_fits(request, force=force)
    return lever_table(request, warmup=warmup, steps=steps)


def profile_distributed(spec: StepSpec | str | None = None, mode: str | None = None, *, nproc: int,
                        warmup: int = 2, steps: int = 10, force: bool = False, threads: int | None = None,
                        plugins: Sequence[str | os.PathLike[str]] = (), **fields: Any) -> DistributedProfileRecord:
    """Profile the same step on ``nproc`` data-parallel ranks; returns a DistributedProfileRecord.

    The ranks are started by torch.distributed's elastic launcher (:mod:`gonprof.distributed`): gloo on
    the CPU, nccl with one GPU per rank (``device="cuda"``).  Each rank wraps the models in
    DistributedDataParallel, runs a step on its own batch of ``batch_size`` images (per rank, as torchrun
    scripts count it) and profiles it as :func:`profile` does, with the bytes DDP all-reduced per step.
    ``threads`` is each rank's torch threads (default: this machine's cores shared out, at least 1).
    ``plugins`` are files each rank loads (``--plugin``).  Errors in the request raise before any rank
    starts; a rank's failure is the record's status.
    """

    request = _request(spec, mode, fields, "profile_distributed").checked()
    return plan_ranks(request, nproc=nproc, warmup=warmup, steps=steps, force=force, threads=threads,
                      plugins=plugins)


def _request(spec: StepSpec | str | None, mode: str | None, fields: dict[str, Any], verb: str) -> StepSpec:
    """The verb's request: ``spec`` as given, or built from an architecture's name and ``fields``."""
    if mode is not None:
        fields = {**fields, "mode": mode}
    return as_spec(spec, fields, verb)


def estimate(spec: StepSpec | str | None = None, mode: str | None = None, *, measure: bool | None = None,
             **fields: Any) -> tuple[MemoryEstimate, ProfileRecord | None]:
    """(MemoryEstimate, measured ProfileRecord or None): a step's peak predicted on meta tensors and,
    when the device exists (``measure=None``) or ``measure=True``, measured on its second step as the
    estimate's figures are (the first creates optimizer state)."""

    request = _request(spec, mode, fields, "estimate").checked(need_device=False)
    est = estimate_step_memory(request)
    if measure is None:  # measure when the device is here and the step fits in it
        measure = (request.device == "cpu" or cuda_here()) and est.peak_bytes <= available_bytes(request.device)
    measured = None
    if measure:

        # the fit was just decided on this very estimate; do not estimate again
        measured = profile_request(request.checked(), warmup=2, steps=1)
    return est, measured


def _refuse_micro_batches(request: StepSpec, verb: str) -> None:
    """fit and scaling try batch sizes that K micro-batches need not divide: one line instead."""
    if request.micro_batches != 1:
        raise RequestError(f"--micro-batches does not apply to {verb}: its trials take batch sizes that "
                           f"{request.micro_batches} need not divide; profile or estimate a batch that it divides")


def _placement(placement: Placement | None, device: str, estimate: bool) -> Placement:
    """The placement of measured trials or points, checked: a bad combination is one line before anything
    runs."""
    checked = (placement or Placement()).checked(device)
    if checked.executor == "inline":
        raise RequestError("the inline executor runs compare rows in this process; fit trials and scaling points "
                           "each need a process of their own: use --executor local or ray")
    if estimate and not checked.default:
        raise RequestError("--estimate runs its trials in this process on meta tensors (milliseconds each); "
                           "--jobs and --executor ray place measured trials: drop one or the other")
    return checked


def scaling(spec: StepSpec | str | None = None, mode: str | None = None, *,
            batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32), estimate: bool = False,
            placement: Placement | None = None, progress: Callable[[BatchTrial], None] | None = None,
            **fields: Any) -> ScalingRecord:
    """Peak memory (and step time when measured) against batch size, fitted as fixed + per sample.

    Without the device (CUDA on a machine without a GPU, and no Ray cluster to run on) the points are
    estimated.  Measured points each run in their own worker process, placed by ``placement``
    (:class:`~gonprof.executors.Placement`): one at a time, ``jobs`` at once each pinned to its own
    cores, or (``executor="ray"``) as Ray tasks on the cluster at ``address`` (None: a local one) with
    ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs each.  ``progress(point)`` as each point finishes.
    """

    request = _request(spec, mode, fields, "scaling")
    _refuse_micro_batches(request, "scaling")
    request = request.checked(need_device=False)
    runner = _placement(placement, request.device, estimate)
    measurable = request.device == "cpu" or cuda_here() or runner.executor == "ray"
    build_on_meta(request)  # the output contract (and every name) refused before the first point
    return _scaling(request, batch_sizes=batch_sizes, estimate=estimate or not measurable, progress=progress,
                    placement=runner)


def fit(spec: StepSpec | str | None = None, mode: str | None = None, *, memory: int | str,
        estimate: bool = False, max_batch: int = 65536, placement: Placement | None = None,
        progress: Callable[[BatchTrial], None] | None = None, on_plan: Callable[[], None] | None = None,
        **fields: Any) -> FitRecord:
    """The largest batch whose step peak stays within ``memory`` (bytes or text like ``"4GiB"``); a FitRecord.

    Measured trials each run in their own process, guided by estimates; ``estimate=True`` estimates only
    (any device, CUDA without a GPU).  The search's trials depend on the ones before, so ``jobs`` > 1 (each
    trial pinned to its own cores) or ``executor="ray"`` (as :func:`scaling`) runs it in rounds of
    independent trials: the estimate's answer and the size above it in one round, or the interval cut into
    more parts than two (:func:`gonprof.budget.search_batch`).  ``on_plan()`` once the request is checked,
    before any trial; ``progress(trial)`` as each trial finishes.
    """

    try:
        budget = parse_bytes(memory)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    request = _request(spec, mode, fields, "fit")
    _refuse_micro_batches(request, "fit")
    runner = (placement or Placement())
    request = request.checked(need_device=not estimate and runner.executor != "ray",
                              device_hint="; add --estimate to fit without one")
    runner = _placement(runner, request.device, estimate)
    build_on_meta(request)  # the output contract (and every name) refused before the first trial
    if on_plan:
        on_plan()
    return fit_batch(request, memory_bytes=budget, estimate=estimate, max_batch=max_batch,
                     progress=progress, placement=runner)


def train(config: TrainConfig | None = None, *, resume: bool = False, progress: Any = None,
          make_step: Callable[[TrainConfig], Any] | None = None, overwrite: bool = False, force: bool = False,
          **fields: Any) -> TrainResult:
    """Train one (architecture, mode) pair and record it in a run directory; returns the TrainResult.

    Pass a :class:`gonprof.train.TrainConfig`, or its fields as keywords: the request's
    (:class:`~gonprof.request.StepSpec`: ``arch``, ``mode`` (default: the architecture's own), ...) and
    the run's (``steps``, ``epochs``, ``time_budget_s``, ``out``, ...).  ``resume=True`` with only ``out``
    continues the run stored there (``steps``, ``batch_size`` and ``threads`` may still be given).  See
    :func:`gonprof.train.run_training`.
    """

    if config is None:
        if resume and fields.get("arch") is None and fields.get("out") is not None:
            stored = load_run_config(fields["out"])
            given = {k: v for k, v in fields.items()
                     if k in ("steps", "epochs", "batch_size", "threads", "time_budget_s") and v is not None}
            if "steps" in given or "epochs" in given:  # a new bound replaces the stored ones
                given.setdefault("steps", None)
                given.setdefault("epochs", None)
                given.setdefault("time_budget_s", None)
            config = stored.replace(**given)
        else:
            config = TrainConfig.of(**fields)
    config = config.replace(step=config.step.checked())
    if make_step is None:  # a step of the zoo: refuse one that cannot fit before anything is written
        check_fits(config.step, force=force)
    return run_training(config, resume=resume, progress=progress, make_step=make_step, overwrite=overwrite)


def _check_memory_limit(limit: int) -> None:
    """Refuse a --memory-limit below what a worker needs just to start: the data segment of a process
    that has imported torch and gonprof (this one, once torch is loaded)."""



    importlib.import_module("torch")  # a worker imports it before anything else

    footprint = int(psutil.Process().memory_info().data)
    if limit < footprint:
        raise RequestError(f"--memory-limit {limit / 2**20:,.0f} MiB is below a worker's start-up footprint "
                           f"({footprint / 2**20:,.0f} MiB of data segment once torch is imported); "
                           "allow more than that for the run itself")


class CompareResult(list[RunRecord]):
    """The rows :func:`compare` ran (floor first; a list of RunRecords), with where they went and the N
    they were scored at: ``specs``, ``out``, ``json_path``, ``n_samples``, ``n_held_out``, ``grid``."""

    def __init__(self, rows: Iterable[RunRecord], specs: list[RunSpec], out: Path, json_path: Path, n_samples: int,
                 n_held_out: int, grid: Path | None) -> None:
        super().__init__(rows)
        self.write_errors: list[str] = []  # results-file writes that failed (the rows are still here)
        self.claims: list[Verdict] = []  # the preset's claims, each with its verdict (gonprof.claims)
        self.specs, self.out, self.json_path = specs, out, json_path
        self.n_samples, self.n_held_out, self.grid = n_samples, n_held_out, grid

    @property
    def rows(self) -> list[RunRecord]:
        return list(self)


def compare_resume_problem(out: str | os.PathLike[str], json_path: str | os.PathLike[str] | None = None) -> str:
    """Why :func:`compare` with ``resume=True`` would refuse ``out`` ("" when it would continue it): not a
    comparison's folder (:func:`gonprof.comparison.resume_problem`)."""
    return comparison.resume_problem(out, json_path)


def compare(modes: list[str] | None = None, archs: list[str] | None = None, *,
            out: str | os.PathLike[str] | None = None, preset: str | None = None,
            json_path: str | os.PathLike[str] | None = None, resume: bool = False,
            force: bool = False, placement: Placement | None = None, events: CompareEvents | None = None,
            **settings: Any) -> CompareResult:
    """Train, profile and score each (mode, architecture) pair; returns a :class:`CompareResult`.

    ``settings`` are the fields every row shares: the request's (:class:`~gonprof.request.StepSpec`:
    ``batch_size``, ``classes``, ``hparams`` with ``MODE.NAME`` scopes, ...) and the row's
    (:class:`gonprof.comparison.RunSpec`: ``steps`` or ``time_budget_s``, ``n_samples``, ...), and
    ``quick=True`` for a preset's short budget.  ``events`` (:class:`~gonprof.comparison.CompareEvents`)
    reports the plan once the request is checked, before anything runs, and each row as it starts, ends or
    is kept.  ``out`` defaults to ``runs/compare-<time>``; rows are saved to ``json_path`` (default
    ``OUT/results.json``) after each one.  ``resume=True`` continues the comparison in ``out``: rows that
    finished with the same settings are kept, the rest run.  ``placement`` (:class:`Placement`) says
    where the rows run (``Placement("inline")``: in this process, one after another).
    """


    events = events or CompareEvents()
    if resume:  # only into a comparison's own folder, refused before anything is written
        problem = compare_resume_problem(out, json_path) if out is not None else \
            "resume=True continues the comparison in out: name its folder"
        if problem:
            raise RequestError(problem)
    limit = settings.get("memory_limit_bytes")
    if isinstance(limit, str):  # "4GiB"

        try:
            settings["memory_limit_bytes"] = limit = parse_bytes(limit)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
    if limit:
        _check_memory_limit(int(limit))
    if settings.get("quick") and not preset:
        raise RequestError("--quick picks a preset's short budget; name a --preset")
    specs = comparison.plan(list(modes or []), archs, preset=preset, **settings)  # every row's request checked
    runner = (placement or Placement()).checked(specs[0].step.device)
    for s in specs:  # a row whose step cannot fit is refused before any row runs
        check_fits(s.step, force=force)
    n, held = comparison.scoring_n(specs[0])
    out = Path(out) if out else Path("runs") / time.strftime("compare-%Y%m%d-%H%M%S")
    if events.on_plan:
        events.on_plan(specs, n, held)
    write_errors: list[str] = []
    rows = comparison.compare(specs, out=out, json_path=json_path, events=events, write_errors=write_errors,
                              resume=resume, placement=runner)
    grid = comparison.grid_image(rows, out / "samples.png")
    res = CompareResult(rows, specs, out, Path(json_path) if json_path else out / "results.json", n, held, grid)
    res.write_errors = write_errors

    res.claims = claims.judge(preset, list(rows))
    if res.claims and not write_errors:  # the verdicts join the rows in the results file

        try:
            save_records(list(rows), res.json_path,
                         extra={"preset": preset, "claims": [v.to_dict() for v in res.claims]})
        except OSError as exc:
            res.write_errors.append(f"{res.json_path} not written: {exc.strerror or exc}")
    return res


class ScoreResult:
    """What :func:`score` read and measured: (floor, samples) RunRecords and a description of the input."""

    def __init__(self, rows: list[RunRecord], samples: dict[str, Any], source: str, n: int, n_read: int,
                 n_held_out: int) -> None:
        self.rows, self.samples, self.source = rows, samples, source
        self.n, self.n_read, self.n_held_out = n, n_read, n_held_out

    def to_json(self) -> dict[str, Any]:

        floor, run = self.rows
        assert floor.quality is not None and run.quality is not None  # score() scored both
        return {"gonprof": __version__, "kind": "compare", "schema_version": SCHEMA_VERSION,
                "records": [r.to_dict() for r in self.rows], **provenance(), "samples": self.samples,
                "quality": run.quality.to_dict(), "floor": floor.quality.to_dict()}


def score(path: str | os.PathLike[str], *, classes: str | list[int] | tuple[int, ...] | None = None,
          n: int | None = None, seed: int = 0) -> ScoreResult:
    """Score images from a file or folder (see :mod:`gonprof.sample_io`) against held-out real images of
    ``classes``, beside the real-vs-real floor at the same N (default: as many as a floor allows)."""


    path = Path(path)
    selection = Selection.parse(classes)
    kept = list(selection.classes) if selection.classes is not None else None
    read = read_samples(path)
    pool = held_out(kept)
    if n is not None:
        if n < MIN_IMAGES:
            raise RequestError(f"--samples {n}: scoring needs at least {MIN_IMAGES} images")
        if n > len(read):
            raise RequestError(f"--samples {n} but {path} holds {len(read)} images")
        if n > len(pool) // 2:
            raise RequestError(f"--samples {n}: a floor at N={n} needs {2 * n} held-out real images "
                               f"and there are {len(pool)} (use --samples {len(pool) // 2} or fewer)")
    n = n if n is not None else floor_n(len(read), len(pool))
    if n < MIN_IMAGES:
        raise RequestError(f"{len(pool)} held-out real images of {selection.label()}: too few for a floor of "
                           f"{MIN_IMAGES} or more")
    source = (f"{path}: {len(read):,} images, {read.format} ({read.layout}), values read as {read.value_range}")
    try:
        quality, floor = score_with_floor(read.images, classes=kept, n=n, seed=seed, reference=pool)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    rows = [RunRecord(kind="floor", seed=seed, quality=floor),
            RunRecord(kind="run", mode="score", arch=path.name or str(path), seed=seed, quality=quality)]
    return ScoreResult(rows, read.describe(), source, n, len(read), len(pool))


def report(path: str | os.PathLike[str]) -> list[Any]:
    """The records a results file holds (profile, compare, estimate, fit, scaling), to render again."""

    return load_records(path)


def report_claims(path: str | os.PathLike[str], rows: list[RunRecord] | None = None
                  ) -> tuple[str | None, list[Verdict]]:
    """(preset, verdicts on its claims) of a compare results file ((None, []) when it names no preset).

    They are judged again over the file's rows by this version's rules
    (:func:`gonprof.claims.judge`), so a file and its table never disagree.
    """

    preset = load_extra(path).get("preset")
    if not preset:
        return None, []
    return preset, claims.judge(preset, rows if rows is not None else report(path))
