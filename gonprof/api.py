"""The small API the CLI calls: specs in, typed records out.  Nothing here prints."""

from __future__ import annotations

from .arch import ARCHITECTURES, Shape, get_arch
from .modes.build import default_mode
from .records import to_jsonable
from .summary import ArchReport, ArchSummary, ModeSummary, summarize


def list_architectures(pattern: str | None = None, role: str | None = None) -> list[ArchSummary]:
    rows = []
    for name in ARCHITECTURES.list(pattern):
        spec = ARCHITECTURES.get(name)
        if role is None or spec.role == role:
            rows.append(summarize(spec, ARCHITECTURES.origin(name)))
    return rows


def list_modes(pattern: str | None = None) -> list[ModeSummary]:
    from .modes import list_modes as _list

    return [
        ModeSummary(m.name, m.summary, tuple(m.phases), m.needs_generator, tuple(m.outputs), dict(m.defaults),
                    tuple(m.presets), m.source, m.default_arch, tuple(m.notes),
                    {k: dict(v) for k, v in m.presets.items()})
        for m in _list(pattern)
    ]


def describe_mode(mode: str) -> ModeSummary:
    """One training mode: its defaults, presets (what each changes) and notes on where it departs from its seed."""
    from .modes import get_mode

    name = get_mode(mode).name  # an unknown name fails here with a did-you-mean
    return next(m for m in list_modes() if m.name == name)


def describe(arch: str, input_shape: Shape | None = None) -> ArchReport:
    """Layer-by-layer parameters and forward FLOPs of ``arch`` for one sample."""
    from .measure.flops import forward_table
    from .summary import LayerRow, param_totals

    spec = get_arch(arch)
    shape = tuple(input_shape) if input_shape else tuple(spec.input_shape)
    model = spec.build(shape)
    model_input = (1, spec.latent_dim) if spec.role == "generator" else (1, *shape)
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


def profile(arch: str, mode: str | None = None, *, generator: str | None = None, preset: str | None = None,
            batch_size: int | None = None, device: str = "cpu", warmup: int = 2, steps: int = 10,
            seed: int = 0, data=None, input_shape: Shape | None = None, hparams: dict | None = None,
            classes=None, per_class: int | None = None, force: bool = False, nproc: int | None = None):
    """Profile ``steps`` optimization steps of ``arch`` trained as ``mode``; returns a ProfileRecord.

    With ``nproc``, the step is profiled on that many data-parallel ranks instead, each on a batch of
    ``batch_size`` (:func:`profile_distributed`, which also takes each rank's threads): a
    DistributedProfileRecord.

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
    if nproc is not None:
        return profile_distributed(arch, mode, nproc=nproc, generator=generator, preset=preset,
                                   batch_size=batch_size, device=device, warmup=warmup, steps=steps, seed=seed,
                                   data=data, input_shape=input_shape, hparams=hparams, classes=classes,
                                   per_class=per_class, force=force)
    from .data import Selection
    from .modes.base import batch_size_of
    from .modes.build import build_step

    selection = Selection.parse(classes, per_class)
    check_device(device)
    mode = mode or default_mode(arch)
    check_fits(arch, mode, batch_size=batch_size, device=device, generator=generator, preset=preset,
               input_shape=input_shape, hparams=hparams, force=force)
    step = build_step(mode, arch, generator=generator, preset=preset, device=device, input_shape=input_shape,
                      seed=seed, **(hparams or {}))
    batch_size = int(batch_size or batch_size_of(step.hparams))
    if batch_size <= 0:
        from .modes.base import IncompatibleError

        raise IncompatibleError(f"--batch-size must be positive, got {batch_size}")
    shape = tuple(input_shape) if input_shape else tuple(get_arch(arch).input_shape)
    from .runner import profile_data

    dataset = profile_data(data, shape, selection)
    context = {"preset": preset, "seed": seed, "data": dataset.name, "selection": selection.to_dict(),
               "train_images": len(dataset), "input_shape": list(shape),
               "hparams": to_jsonable(step.hparams), "notes": list(step.notes)}
    from .runner import profile_step

    return profile_step(step, dataset, batch_size=batch_size, warmup=warmup, steps=steps, seed=seed,
                        arch=arch, mode=mode, generator=step.generator or generator, extra=context)


def profile_distributed(arch: str, mode: str | None = None, *, nproc: int, generator: str | None = None,
                        preset: str | None = None, batch_size: int | None = None, device: str = "cpu",
                        warmup: int = 2, steps: int = 10, seed: int = 0, data=None, input_shape: Shape | None = None,
                        hparams: dict | None = None, classes=None, per_class: int | None = None,
                        force: bool = False, threads: int | None = None, plugins=()):
    """Profile the same step on ``nproc`` data-parallel ranks; returns a DistributedProfileRecord.

    The ranks are started by torch.distributed's elastic launcher (:mod:`gonprof.distributed`): gloo on
    the CPU, nccl with one GPU per rank (``device="cuda"``).  Each rank wraps the models in
    DistributedDataParallel, runs a step on its own batch of ``batch_size`` images (per rank, as torchrun
    scripts count it) and profiles it as :func:`profile` does, with the bytes DDP all-reduced per step.
    ``threads`` is each rank's torch threads (default: this machine's cores shared out, at least 1).
    ``plugins`` are files each rank loads (``--plugin``).  Errors in the request raise before any rank
    starts; a rank's failure is the record's status.
    """
    from pathlib import Path

    from .data import Selection
    from .distributed import RankSpec, launch
    from .modes import get_mode
    from .modes.base import IncompatibleError, batch_size_of
    from .records import RequestError

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise RequestError(f"--nproc must be a whole number of ranks, at least 1; got {nproc!r}")
    if threads is not None and threads < 1:
        raise RequestError(f"--threads must be at least 1, got {threads}")
    selection = Selection.parse(classes, per_class)
    check_device(device)
    backend = _check_distributed(device, nproc)
    mode = mode or default_mode(arch)
    spec = get_mode(mode)
    resolved = spec.hparams(preset, **(hparams or {}))  # unknown names and bad values: one line, here
    spec.check_ddp(resolved)
    bs = int(batch_size or batch_size_of(resolved))
    if bs <= 0:
        raise IncompatibleError(f"--batch-size must be positive, got {batch_size}")
    est = check_fits(arch, mode, batch_size=bs, device=device, generator=generator, preset=preset,
                     input_shape=input_shape, hparams=hparams, force=force)
    free = available_bytes("cpu")
    if device == "cpu" and nproc > 1 and est.peak_bytes * nproc > free and not force:
        from .records import TooBigError

        raise TooBigError(f"{arch} ({mode}) at batch {bs} per rank: {nproc} ranks on this machine need about "
                          f"{est.peak_bytes * nproc / 2**30:,.2f} GiB together (estimated on meta tensors), more "
                          f"than the {free / 2**30:,.2f} GiB available; fewer ranks or a smaller batch, or "
                          f"--force to run it anyway")
    from .cores import usable_cores

    cores = len(usable_cores())
    rank_spec = RankSpec(arch=arch, mode=mode, batch_size=bs, generator=generator, preset=preset, device=device,
                         warmup=warmup, steps=steps, seed=seed, data=data,
                         input_shape=list(input_shape) if input_shape else None, hparams=dict(hparams or {}),
                         classes=list(selection.classes) if selection.classes is not None else None,
                         per_class=selection.per_class, threads=int(threads or max(1, cores // nproc)),
                         backend=backend, plugins=[str(Path(p).resolve()) for p in plugins or ()])
    return launch(rank_spec, nproc)


def _check_distributed(device: str, nproc: int) -> str:
    """The backend for ``nproc`` ranks on ``device`` (gloo on the CPU, nccl on CUDA, one GPU per rank);
    a one-line RequestError when this machine cannot run them."""
    import torch.distributed as dist

    from .records import RequestError

    if not dist.is_available():
        raise RequestError("--nproc needs torch.distributed, which this torch build lacks")
    if device == "cpu":
        if not dist.is_gloo_available():
            raise RequestError("--nproc on the CPU needs torch.distributed's gloo backend, which this torch build "
                               "lacks")
        return "gloo"
    if device != "cuda":
        raise RequestError(f"--nproc puts rank r on cuda:r; give --device cuda, not {device}")
    import torch

    have = torch.cuda.device_count()
    if have < nproc:
        raise RequestError(f"--nproc {nproc} --device cuda needs one GPU per rank; this machine has {have}")
    if not dist.is_nccl_available():
        raise RequestError("--nproc with --device cuda needs torch.distributed's nccl backend, which this torch "
                           "build lacks")
    return "nccl"


def check_device(device: str, need_real: bool = True, hint: str = "") -> str:
    """``device`` if it names the CPU or a CUDA device (one that is here, when ``need_real``)."""
    from .records import RequestError

    if device != "cpu" and not str(device).startswith("cuda"):
        raise RequestError(f"--device must be cpu or cuda[:N], not {device!r}")
    if need_real and device != "cpu" and not _cuda_here():
        raise RequestError(f"--device {device}: no CUDA device is available on this machine{hint}")
    return device


def available_bytes(device: str = "cpu") -> int:
    """Memory a step may still take: the system's available memory on the CPU, the device's free memory
    on CUDA."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(arch: str, mode: str | None = None, *, batch_size: int | None = None, device: str = "cpu",
               generator: str | None = None, preset: str | None = None, input_shape: Shape | None = None,
               hparams: dict | None = None, force: bool = False):
    """Estimate a step's peak on meta tensors (nothing allocated) and refuse, with one line, a batch whose
    estimate exceeds the memory available (:func:`available_bytes`), unless ``force``.  Returns the
    MemoryEstimate."""
    from .estimate import estimate_step_memory
    from .modes import get_mode
    from .records import TooBigError

    mode = mode or default_mode(arch)
    bs = batch_size or get_mode(mode).batch_size(preset, **(hparams or {}))
    est = estimate_step_memory(arch, mode, batch_size=bs, device=device, generator=generator, preset=preset,
                               input_shape=input_shape, hparams=hparams, max_inner_steps=2)
    free = available_bytes(device)
    if est.peak_bytes > free and not force:
        raise TooBigError(f"{arch} ({mode}) at batch {bs}: one step needs about {est.peak_bytes / 2**30:,.2f} GiB "
                          f"(estimated on meta tensors), more than the {free / 2**30:,.2f} GiB available on "
                          f"{device}; lower the batch size, or pass --force to run it anyway")
    return est


def _cuda_here() -> bool:
    import torch

    return torch.cuda.is_available()


def estimate(arch: str, mode: str | None = None, *, batch_size: int | None = None, device: str = "cpu",
             generator: str | None = None, preset: str | None = None, input_shape: Shape | None = None,
             seed: int = 0, hparams: dict | None = None, measure: bool | None = None):
    """(MemoryEstimate, measured ProfileRecord or None): a step's peak predicted on meta tensors and,
    when the device exists (``measure=None``) or ``measure=True``, measured on its second step as the
    estimate's figures are (the first creates optimizer state)."""
    from .estimate import estimate_step_memory
    from .modes import get_mode

    check_device(device, need_real=False)
    mode = mode or default_mode(arch)
    bs = batch_size or get_mode(mode).batch_size(preset, **(hparams or {}))
    est = estimate_step_memory(arch, mode, batch_size=bs, device=device, generator=generator, preset=preset,
                               input_shape=input_shape, seed=seed, hparams=hparams)
    if measure is None:  # measure when the device is here and the step fits in it
        measure = (device == "cpu" or _cuda_here()) and est.peak_bytes <= available_bytes(device)
    measured = None
    if measure:
        # force: the fit was just decided on this very estimate; do not estimate again
        measured = profile(arch, mode, generator=generator, preset=preset, batch_size=bs, device=device, warmup=2,
                           steps=1, seed=seed, input_shape=input_shape, hparams=hparams, force=True)
    return est, measured


def _executor(executor: str, jobs: int, address, cpus_per_run: int, gpus_per_run: int, device: str,
              estimate: bool):
    """The executor of measured trials or points (:class:`gonprof.executors.Executor`), checked: a bad
    combination is one line before anything runs."""
    from .executors import Executor
    from .records import RequestError

    runner = Executor.checked(executor, jobs, address, cpus_per_run, gpus_per_run, device)
    if estimate and not runner.default:
        raise RequestError("--estimate runs its trials in this process on meta tensors (milliseconds each); "
                           "--jobs and --executor ray place measured trials: drop one or the other")
    return runner


def scaling(arch: str, mode: str | None = None, *, batch_sizes=(1, 2, 4, 8, 16, 32), device: str = "cpu",
            estimate: bool = False, generator: str | None = None, preset: str | None = None,
            input_shape: Shape | None = None, seed: int = 0, hparams: dict | None = None, progress=None,
            jobs: int = 1, executor: str = "local", address: str | None = None, cpus_per_run: int = 1,
            gpus_per_run: int = 0):
    """Peak memory (and step time when measured) against batch size, fitted as fixed + per sample.

    Without the device (CUDA on a machine without a GPU, and no Ray cluster to run on) the points are
    estimated.  Measured points each run in their own worker process: one at a time, ``jobs`` at once
    each pinned to its own cores, or (``executor="ray"``) as Ray tasks on the cluster at ``address``
    (None: a local one) with ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs each.  ``progress(point)``
    as each point finishes.
    """
    from .budget import scaling as _scaling

    check_device(device, need_real=False)
    measurable = device == "cpu" or _cuda_here() or executor == "ray"
    runner = _executor(executor, jobs, address, cpus_per_run, gpus_per_run, device, estimate)
    return _scaling(arch, mode or default_mode(arch), batch_sizes=batch_sizes, device=device,
                    estimate=estimate or not measurable, generator=generator, preset=preset,
                    input_shape=input_shape, seed=seed, hparams=hparams, progress=progress, executor=runner)


def fit(arch: str, mode: str | None = None, *, memory, device: str = "cpu", estimate: bool = False,
        generator: str | None = None, preset: str | None = None, max_batch: int = 65536,
        hparams: dict | None = None, progress=None, jobs: int = 1, executor: str = "local",
        address: str | None = None, cpus_per_run: int = 1, gpus_per_run: int = 0, on_plan=None):
    """The largest batch whose step peak stays within ``memory`` (bytes or text like ``"4GiB"``); a FitRecord.

    Measured trials each run in their own process, guided by estimates; ``estimate=True`` estimates only
    (any device, CUDA without a GPU).  The search's trials depend on the ones before, so ``jobs`` > 1 (each
    trial pinned to its own cores) or ``executor="ray"`` (as :func:`scaling`) runs it in rounds of
    independent trials: the estimate's answer and the size above it in one round, or the interval cut into
    more parts than two (:func:`gonprof.budget.search_batch`).  ``on_plan()`` once the request is checked,
    before any trial; ``progress(trial)`` as each trial finishes.
    """
    from .budget import fit_batch, parse_bytes
    from .records import RequestError

    try:
        budget = parse_bytes(memory)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    check_device(device, need_real=not estimate and executor != "ray", hint="; add --estimate to fit without one")
    runner = _executor(executor, jobs, address, cpus_per_run, gpus_per_run, device, estimate)
    if on_plan:
        on_plan()
    return fit_batch(arch, mode or default_mode(arch), memory_bytes=budget, device=device, estimate=estimate,
                     guide=not estimate, generator=generator, preset=preset, max_batch=max_batch,
                     progress=progress, hparams=hparams, executor=runner)


def train(config=None, *, resume: bool = False, progress=None, make_step=None, overwrite: bool = False,
          force: bool = False, **fields):
    """Train one (architecture, mode) pair and record it in a run directory; returns the TrainResult.

    Pass a :class:`gonprof.train.TrainConfig`, or its fields as keywords (``mode`` defaults to the
    architecture's own).  ``resume=True`` with only ``out`` continues the run stored there (``steps``,
    ``batch_size`` and ``threads`` may still be given).  See :func:`gonprof.train.run_training`.
    """
    from .train import TrainConfig, load_run_config, run_training

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
            check_device(config.device)
        else:
            if fields.get("arch") is None:
                from .records import RequestError

                raise RequestError("--arch is required (or --out DIR --resume to continue a run)")
            fields["mode"] = fields.get("mode") or default_mode(fields["arch"])
            check_device(fields.get("device", "cpu"))
            config = TrainConfig(**fields)
    if make_step is None:  # a step of the zoo: refuse one that cannot fit before anything is written
        check_fits(config.arch, config.mode, batch_size=config.batch_size, device=config.device,
                   generator=config.generator, preset=config.preset, hparams=dict(config.hparams), force=force)
    return run_training(config, resume=resume, progress=progress, make_step=make_step, overwrite=overwrite)


def _check_memory_limit(limit: int) -> None:
    """Refuse a --memory-limit below what a worker needs just to start: the data segment of a process
    that has imported torch and gonprof (this one, once torch is loaded)."""
    import importlib

    import psutil

    from .records import RequestError

    importlib.import_module("torch")  # a worker imports it before anything else

    footprint = int(psutil.Process().memory_info().data)
    if limit < footprint:
        raise RequestError(f"--memory-limit {limit / 2**20:,.0f} MiB is below a worker's start-up footprint "
                           f"({footprint / 2**20:,.0f} MiB of data segment once torch is imported); "
                           "allow more than that for the run itself")


class CompareResult(list):
    """The rows :func:`compare` ran (floor first; a list of RunRecords), with where they went and the N
    they were scored at: ``specs``, ``out``, ``json_path``, ``n_samples``, ``n_held_out``, ``grid``."""

    def __init__(self, rows, specs, out, json_path, n_samples: int, n_held_out: int, grid):
        super().__init__(rows)
        self.write_errors: list[str] = []  # results-file writes that failed (the rows are still here)
        self.claims: list = []  # the preset's claims, each with its verdict (gonprof.claims)
        self.specs, self.out, self.json_path = specs, out, json_path
        self.n_samples, self.n_held_out, self.grid = n_samples, n_held_out, grid

    @property
    def rows(self) -> list:
        return list(self)


def compare(modes: list[str] | None = None, archs: list[str] | None = None, *, out=None,
            preset: str | None = None, json_path=None, isolate: bool = True, on_plan=None, on_start=None,
            on_row=None, force: bool = False, resume: bool = False, on_reuse=None, jobs: int = 1,
            executor: str = "local", address: str | None = None, cpus_per_run: int = 1, gpus_per_run: int = 0,
            quick: bool = False, **settings) -> CompareResult:
    """Train, profile and score each (mode, architecture) pair; returns a :class:`CompareResult`.

    ``settings`` are :class:`gonprof.comparison.RunSpec` fields shared by every row (``steps`` or
    ``time_budget_s``, ``batch_size``, ``n_samples``, ``classes``, ``hparams`` with ``MODE.NAME`` scopes,
    ...).  ``on_plan(specs, n_samples, n_held_out)`` is called once the request is checked and before
    anything runs; ``on_start(i, n, spec)`` and ``on_row(record)`` as each row starts and ends.  ``out``
    defaults to ``runs/compare-<time>``; rows are saved to ``json_path`` (default ``OUT/results.json``)
    after each one.  ``resume=True`` continues the comparison in ``out``: rows that finished with the same
    settings are kept (``on_reuse(record)``), the rest run.
    """
    import time
    from pathlib import Path

    from . import comparison

    limit = settings.get("memory_limit_bytes")
    if isinstance(limit, str):  # "4GiB"
        from .budget import parse_bytes
        from .records import RequestError

        try:
            settings["memory_limit_bytes"] = limit = parse_bytes(limit)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
    if limit:
        _check_memory_limit(int(limit))
    check_device(settings.get("device", "cpu"))
    from .records import RequestError

    if quick and not preset:
        raise RequestError("--quick picks a preset's short budget; name a --preset")
    if quick:
        settings["quick"] = True
    from .executors import Executor

    runner = Executor.checked(executor, jobs, address, cpus_per_run, gpus_per_run, settings.get("device", "cpu"))
    specs = comparison.plan(list(modes or []), archs, preset=preset, **settings)
    for s in specs:  # a row whose step cannot fit is refused before any row runs
        check_fits(s.arch, s.mode, batch_size=s.batch_size, device=s.device, generator=s.generator, preset=s.preset,
                   hparams=s.hparams, force=force)
    n, held = comparison.scoring_n(specs[0])
    out = Path(out) if out else Path("runs") / time.strftime("compare-%Y%m%d-%H%M%S")
    if on_plan:
        on_plan(specs, n, held)
    write_errors: list[str] = []
    rows = comparison.compare(specs, out=out, json_path=json_path, isolate=isolate, on_start=on_start,
                              on_row=on_row, write_errors=write_errors, resume=resume, on_reuse=on_reuse,
                              jobs=runner.jobs, executor=runner.name, address=runner.address,
                              cpus_per_run=runner.cpus_per_run, gpus_per_run=runner.gpus_per_run)
    grid = comparison.grid_image(rows, out / "samples.png")
    res = CompareResult(rows, specs, out, Path(json_path) if json_path else out / "results.json", n, held, grid)
    res.write_errors = write_errors
    from . import claims

    res.claims = claims.judge(preset, list(rows))
    if res.claims and not write_errors:  # the verdicts join the rows in the results file
        from .records import save_records

        try:
            save_records(list(rows), res.json_path,
                         extra={"preset": preset, "claims": [v.to_dict() for v in res.claims]})
        except OSError as exc:
            res.write_errors.append(f"{res.json_path} not written: {exc.strerror or exc}")
    return res


class ScoreResult:
    """What :func:`score` read and measured: (floor, samples) RunRecords and a description of the input."""

    def __init__(self, rows, samples, source: str, n: int, n_read: int, n_held_out: int):
        self.rows, self.samples, self.source = rows, samples, source
        self.n, self.n_read, self.n_held_out = n, n_read, n_held_out

    def to_json(self) -> dict:
        from ._version import __version__
        from .records import SCHEMA_VERSION, provenance

        floor, run = self.rows
        return {"gonprof": __version__, "kind": "compare", "schema_version": SCHEMA_VERSION,
                "records": [r.to_dict() for r in self.rows], **provenance(), "samples": self.samples,
                "quality": run.quality.to_dict(), "floor": floor.quality.to_dict()}


def score(path, *, classes=None, n: int | None = None, seed: int = 0) -> ScoreResult:
    """Score images from a file or folder (see :mod:`gonprof.sample_io`) against held-out real images of
    ``classes``, beside the real-vs-real floor at the same N (default: as many as a floor allows)."""
    from pathlib import Path

    from .data import Selection
    from .metrics.scores import floor_n, held_out, score_with_floor
    from .records import RequestError, RunRecord
    from .sample_io import MIN_IMAGES, read_samples

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


def report(path) -> list:
    """The records a results file holds (profile, compare, estimate, fit, scaling), to render again."""
    from .records import load_records

    return load_records(path)


def report_claims(path, rows: list | None = None) -> tuple[str | None, list]:
    """(preset, verdicts on its claims) of a compare results file ((None, []) when it names no preset).

    They are judged again over the file's rows by this version's rules
    (:func:`gonprof.claims.judge`), so a file and its table never disagree.
    """
    from . import claims
    from .records import load_extra

    preset = load_extra(path).get("preset")
    if not preset:
        return None, []
    return preset, claims.judge(preset, rows if rows is not None else report(path))
