"""``gonprof compare``: train, profile and score (mode, architecture) pairs side by side.

Each pair runs in its own Python subprocess (``python -m gonprof.worker
compare-row SPEC.json RESULT.json``), so that one run's memory peak, crash or
out-of-memory kill cannot touch another's figures; :mod:`gonprof.executors`
runs them one at a time, ``--jobs N`` at once on disjoint cores, or as Ray
tasks.  A run that fails becomes a row with its status; Ctrl-C stops the
running rows and keeps the rows already finished; the results file is
rewritten after every row.

One row, in order:

1. train from scratch for ``steps`` or ``time_budget_s`` (:mod:`gonprof.train`;
   the run directory holds the log, checkpoint and sample grids);
2. profile ``profile_steps`` more steps of the trained models under the
   :class:`~gonprof.profiler.Profiler` (FLOPs, memory, time);
3. draw ``n_samples`` images the mode's way and score them against held-out
   real images (:func:`gonprof.metrics.scores.score_samples`).

The floor row scores ``n_samples`` real images against the same reference at
the same N: what a perfect generator would get.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import claims
from .executors import Executor, Job
from .records import RunRecord, classify_failure, looks_oom, save_records

DEFAULT_TIME_BUDGET_S = 120.0
DEFAULT_N_SAMPLES = 1000
DEFAULT_PROFILE_STEPS = 5


@dataclass(frozen=True)
class RunSpec:
    """One row to run.  ``kind="floor"`` is the real-vs-real row (mode and arch unused)."""

    mode: str | None = None
    arch: str | None = None
    kind: str = "run"
    generator: str | None = None
    preset: str | None = None
    steps: int | None = None
    time_budget_s: float | None = None
    batch_size: int | None = None
    seed: int = 0
    data: str | None = None
    device: str = "cpu"
    n_samples: int = DEFAULT_N_SAMPLES
    profile_steps: int = DEFAULT_PROFILE_STEPS
    hparams: dict = field(default_factory=dict)
    run_dir: str | None = None
    memory_limit_bytes: int | None = None  # cap on the worker's data segment (RLIMIT_DATA)
    cpus: list | None = None  # the cores the worker is pinned to (--jobs); None: any
    classes: list | None = None  # data selection for training and scoring (None: all labels)
    per_class: int | None = None  # first N training images of each kept class (None: all)
    threads: int | None = None  # torch threads in the worker (None: torch's default)
    variant: str | None = None  # a preset row's name for its own hyper-parameters

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        return cls(**d)

    @property
    def label(self) -> str:
        if self.kind == "floor":
            return "real (floor)"
        return f"{self.mode} / {self.arch}" + (f" ({self.variant})" if self.variant else "")

    def selection(self):
        from .data import Selection

        return Selection.parse(self.classes, self.per_class)

    def base_record(self) -> RunRecord:
        """The record this row fills in (or fails with)."""
        return RunRecord(kind=self.kind, mode=self.mode, arch=self.arch, generator=self.generator,
                         preset=self.preset, batch_size=self.batch_size, seed=self.seed, device=self.device,
                         time_budget_s=self.time_budget_s, run_dir=self.run_dir, variant=self.variant,
                         hparams=dict(self.hparams), classes=self.classes, per_class=self.per_class,
                         cpus=self.cpus)


# -- presets -------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # The GAS study: six discriminators under LSGAN, 2000 iterations of batch 32.
    "gas": {"pairs": [("lsgan", a) for a in ("lsgan-original", "depthwise-inception", "inception-k32",
                                              "depthwise-inception-dense", "inception-k16", "inception-k8")],
            "steps": claims.GAS_STEPS, "batch_size": 32, "quick": {"steps": 100}},
    # GON's discriminators trained as GONs, against GANs with their own seed architectures.
    "gon-vs-gan": {"pairs": [("gon", "gon-mnist-conv"), ("gon", "gon-mnist-mlp"), ("gan", "mlp-gan"),
                             ("lsgan", "lsgan-original")], "quick": {"time_budget_s": 30.0}},
    # The study GON users ask for: GON (MLP and conv) and the GAN modes on one digit, one budget.
    "gon-digit": {"pairs": [("gon", "gon-mnist-mlp"), ("gon", "gon-mnist-conv"), ("gan", "mlp-gan"),
                            ("lsgan", "lsgan-original"), ("wgan-gp", "dcd-mnist-sn"), ("dcd", "dcd-mnist-sn")],
                  "classes": [0], "time_budget_s": 300.0, "quick": {"time_budget_s": 60.0}},
    # GON's inner optimiser on the one-digit task: the seed's Adam on the input against the others.
    "gon-inner": {"pairs": [("gon", "gon-mnist-mlp", {"inner_opt": "adam"}, "adam"),
                            ("gon", "gon-mnist-mlp", {"inner_opt": "normalized"}, "normalized"),
                            ("gon", "gon-mnist-mlp", {"inner_opt": "langevin"}, "langevin"),
                            ("gon", "gon-mnist-mlp", {"inner_opt": "sgd", "inner_lr": 50.0}, "sgd")],
                  "classes": [0], "time_budget_s": 300.0, "quick": {"steps": 30}},
    # GON_MNIST's setting, 10 shots of one digit, and a GAN training the same discriminator on the same images.
    "gon": {"pairs": [("gon", "gon-mnist-mlp"), ("gan", "gon-mnist-mlp")], "classes": [0], "per_class": 10,
            "batch_size": 10, "time_budget_s": claims.GON_TIME_S, "quick": {"time_budget_s": 60.0}},
    # Improved-GAN's semi-supervised test error at the paper's four label counts (openai: 300 epochs of 600).
    "improved-gan": {"pairs": [("improved-gan", "improved-gan-mlp", {"labels": n}, f"labels-{n}")
                               for n in (20, 50, 100, 200)],
                     "steps": claims.IGAN_STEPS, "quick": {"steps": 1500}},
    # DCD: the same G(z) scored before and after the critic's Langevin refinement, in pixel and latent space.
    "dcd": {"pairs": [("dcd", "dcd-mnist-sn", {"langevin": "pixel"}, "pixel"),
                      ("dcd", "dcd-mnist-sn", {"langevin": "latent"}, "latent")],
            "steps": claims.DCD_STEPS, "quick": {"steps": 30}},
    # The Keras MLP GAN tutorial: BCE, batch 128, 500 epochs of 469 batches.
    "mlp-gan": {"pairs": [("gan", "mlp-gan")], "steps": claims.MLP_GAN_STEPS, "quick": {"steps": 2000}},
}

#: RunSpec fields a preset may set (explicit settings win).
PRESET_SETTINGS = ("steps", "batch_size", "classes", "per_class", "time_budget_s")


def _rows(pairs) -> list[tuple[str, str, dict, str | None]]:
    """A preset's rows as (mode, arch, hparams, variant)."""
    return [(p[0], p[1], dict(p[2]) if len(p) > 2 else {}, p[3] if len(p) > 3 else None) for p in pairs]


def scope_hparams(hparams: dict, modes: list[str]) -> dict[str, dict]:
    """Split ``--set`` overrides by mode: ``gon.lr=1e-4`` goes to gon only (and wins over an unscoped
    ``lr``), ``lr=1e-4`` to every mode that has ``lr``.  A name no mode has (or a scope naming a mode
    not in the run) is an error."""
    from .modes import get_mode
    from .modes.base import IncompatibleError

    out: dict[str, dict] = {m: {} for m in modes}
    # unscoped names first, so that a scoped value wins whatever the order given
    for key, value in sorted(hparams.items(), key=lambda kv: "." in kv[0]):
        scope, dot, name = key.partition(".")
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


def plan(modes: list[str], archs: list[str] | None = None, *, preset: str | None = None,
         **common: Any) -> list[RunSpec]:
    """The rows to run: every compatible (mode, architecture) pair, in the order given.

    Without ``archs`` each mode trains its own default discriminator.  With
    ``archs`` (names or globs) a mode trains each one it accepts; a pair that
    no mode accepts is an error, so a typo cannot silently drop a row.
    ``preset`` names an entry of :data:`PRESETS` (its settings yield to
    explicit ones).  ``common`` are :class:`RunSpec` fields shared by all rows.
    """
    from .arch import ARCHITECTURES, get_arch
    from .modes import get_mode
    from .modes.base import IncompatibleError

    if preset is not None:
        if preset not in PRESETS:
            raise IncompatibleError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
        if archs:
            raise IncompatibleError(f"preset {preset} names its own architectures; drop --arch")
        p = dict(PRESETS[preset])
        if common.pop("quick", False):  # the preset's short budget, for a look in minutes
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
        rows = [(m, a, {}, None) for m, a in pairs]
    for m, a, _, _ in rows:  # unknown names fail here, before anything runs
        get_mode(m), get_arch(a)
    fields_ = {f.name for f in dataclasses.fields(RunSpec)}
    shared = {k: v for k, v in common.items() if k in fields_ and v is not None}
    if "steps" not in shared and "time_budget_s" not in shared:
        shared["time_budget_s"] = DEFAULT_TIME_BUDGET_S
    scoped = scope_hparams(dict(shared.pop("hparams", {}) or {}), list(dict.fromkeys(m for m, *_ in rows)))
    for m, _, row_hp, variant in rows:  # a preset row's own settings define it (and its label)
        clash = sorted(set(row_hp) & set(scoped[m]))
        if clash:
            raise IncompatibleError(f"--set {clash[0]}: preset {preset} sets it per row (row {variant or m}); "
                                    "drop it, or compare the variants you want without the preset")
    # every value checked against its mode's rules before anything runs
    resolved = [get_mode(m).hparams(shared.get("preset"), **{**row_hp, **scoped[m]}) for m, _, row_hp, _ in rows]
    if "classes" in shared or "per_class" in shared:  # a bad selection fails here, before anything runs
        from .data import Selection, SelectionError, load_split
        from .modes.base import batch_size_of

        kept = len(load_split(shared.get("data"), Selection.parse(shared.get("classes"), shared.get("per_class")))[0])
        for (m, a, _, _), hp in zip(rows, resolved):
            batch = shared.get("batch_size") or batch_size_of(hp)
            if batch > kept:
                raise SelectionError(f"{m} / {a}: batch size {batch} exceeds the selection's {kept} training "
                                     f"images; pass --batch-size {kept} or fewer, or keep more images")
    return [RunSpec(mode=m, arch=a, hparams={**row_hp, **scoped[m]}, variant=variant, **shared)
            for m, a, row_hp, variant in rows]


def scoring_n(spec: RunSpec) -> tuple[int, int]:
    """(N every row of a comparison is scored at, held-out images of its selection).

    N is ``spec.n_samples`` unless the selection holds out fewer than ``2 N``
    images, in which case it is half of them, so that the floor exists at N.
    """
    from .data import load_split
    from .metrics.scores import floor_n

    held = load_split(spec.data, spec.selection())[1]
    return floor_n(spec.n_samples, len(held)), len(held)


# -- running one row (inside the worker process) --------------------------------------

def run_spec(spec: RunSpec, progress: Any = None) -> RunRecord:
    """Train, profile and score one row in this process.  Never raises for a failed run."""
    t0 = time.perf_counter()
    base = spec.base_record()
    try:
        rec = _floor(spec, base) if spec.kind == "floor" else _run(spec, base, progress)
    except (KeyboardInterrupt, Exception) as exc:
        status, message = classify_failure(exc)
        rec = base.replace(status=status, message="interrupted" if status == "interrupted" else message)
    return rec.replace(wall_time_s=round(time.perf_counter() - t0, 3))


def _floor(spec: RunSpec, base: RunRecord) -> RunRecord:
    from .data import load_split
    from .metrics.scores import real_floor

    held = load_split(spec.data, spec.selection())[1]
    return base.replace(quality=real_floor(held, n=spec.n_samples, seed=spec.seed, classes=spec.classes))


def _run(spec: RunSpec, base: RunRecord, progress: Any) -> RunRecord:
    import torch

    from .data import load_split
    from .runner import profile_step
    from .summary import param_totals
    from .train import TrainConfig, default_make_step, run_training

    data, held = load_split(spec.data, spec.selection())
    holder: dict[str, Any] = {}
    make = default_make_step(data.shape)

    def make_step(config):
        holder["step"] = make(config)
        return holder["step"]

    config = TrainConfig(arch=spec.arch, mode=spec.mode, generator=spec.generator, preset=spec.preset,
                         steps=spec.steps, batch_size=spec.batch_size, seed=spec.seed, data=spec.data,
                         device=spec.device, out=spec.run_dir, sample_every=0, hparams=dict(spec.hparams),
                         time_budget_s=spec.time_budget_s, classes=spec.classes, per_class=spec.per_class,
                         threads=spec.threads)
    result = run_training(config, make_step=make_step, progress=progress, overwrite=True)
    step = holder.get("step")
    rec = base.replace(train_steps=result.steps_done, train_time_s=result.wall_time_s, run_dir=result.path,
                       generator=(step.generator if step is not None else None) or spec.generator)
    if step is not None:
        d = step.models.get("D")
        g = step.models.get("G")
        rec = rec.replace(d_params=param_totals(d)[0] if d is not None else None,
                          g_params=param_totals(g)[0] if g is not None else None,
                          batch_size=_batch_size(result, spec))
    final = Path(result.path) / "samples" / "final.png"
    if final.is_file():
        rec = rec.replace(samples_png=str(final))
    if result.status != "ok":
        status = "oom" if looks_oom(result.message) else result.status
        return rec.replace(status=status, message=f"training: {result.message}")
    prof = profile_step(step, data, batch_size=rec.batch_size, warmup=1, steps=spec.profile_steps,
                        seed=spec.seed + 1, arch=spec.arch, mode=spec.mode, generator=rec.generator)
    rec = rec.replace(profile=prof)
    if prof.status != "ok":
        return rec.replace(status=prof.status, message=f"profiling: {prof.message}")
    if tuple(data.shape) != (1, 28, 28):
        return rec.replace(message=f"not scored: the quality classifier takes 1x28x28 images, data is {data.shape}")
    from .metrics.scores import score_samples

    if callable(getattr(step, "test_error", None)):  # a classifier discriminator (improved-gan)
        rec = rec.replace(test_error_fraction=step.test_error(held.images, held.labels), n_test_images=len(held))
    torch.manual_seed(spec.seed)
    unrefined = None
    if callable(getattr(step, "sample_with_unrefined", None)):  # a refining sampler (dcd)
        unrefined, samples = step.sample_with_unrefined(spec.n_samples)
        unrefined = unrefined.detach().cpu()
    else:
        samples = step.sample(spec.n_samples)
    samples = samples.detach().cpu()
    if not bool(torch.isfinite(samples).all()):
        return rec.replace(status="nan", message="samples contain NaN or infinite values")

    def score(x):
        return score_samples(x, held, n=spec.n_samples, seed=spec.seed, classes=spec.classes)

    if unrefined is not None and bool(torch.isfinite(unrefined).all()):
        rec = rec.replace(quality_unrefined=score(unrefined))
    return rec.replace(quality=score(samples))


def _batch_size(result, spec: RunSpec) -> int | None:
    try:
        cfg = json.loads((Path(result.path) / "config.json").read_text())
        return int(cfg["resolved"]["batch_size"])
    except (OSError, KeyError, ValueError, TypeError):
        return spec.batch_size


# -- running rows, each in its own process (gonprof.executors) -----------------------

def record_of(spec: RunSpec, out) -> RunRecord:
    """The record a row's worker :class:`~gonprof.isolation.Outcome` stands for."""
    cap = spec.memory_limit_bytes
    if out.result is not None:
        try:
            rec = RunRecord.from_dict(out.result)
        except (ValueError, TypeError, KeyError) as exc:
            return spec.base_record().replace(status="error", message=f"unreadable worker result: {exc}")
        if cap and rec.status == "error" and ("ImportError" in rec.message or "MemoryError" in rec.message):
            # an import or allocation that failed under the cap: the cap, not the code
            rec = rec.replace(status="oom", message=f"out of memory under --memory-limit {cap / 2**20:,.0f} MiB: "
                                                    f"{rec.message}")
        return rec
    status, message = out.failure()
    if status == "interrupted":
        message = "interrupted (Ctrl-C); finished rows are kept"
    elif cap and (out.signal_name in ("SIGKILL", "SIGSEGV", "SIGABRT") or looks_oom(out.tail)
                  or "ImportError" in out.tail or "MemoryError" in out.tail):
        # under a cap, a worker killed or failing to import or allocate ran out of it
        status, message = "oom", f"out of memory under --memory-limit {cap / 2**20:,.0f} MiB: {message}"
    return spec.base_record().replace(status=status, message=message, wall_time_s=round(out.wall_s, 3))


def compare(specs: list[RunSpec], *, out: str | os.PathLike, json_path: str | os.PathLike | None = None,
            floor: bool = True, isolate: bool = True,
            on_start: Callable[[int, int, RunSpec], None] | None = None,
            on_row: Callable[[RunRecord], None] | None = None,
            write_errors: list | None = None, resume: bool = False,
            on_reuse: Callable[[RunRecord], None] | None = None, jobs: int = 1,
            executor: str = "local", address: str | None = None, cpus_per_run: int = 1,
            gpus_per_run: int = 0) -> list[RunRecord]:
    """Run every spec (plus the floor row) and return their records, saved after each row.

    ``out`` holds one folder per row (its ``spec.json``, run directory, worker
    log) and, unless ``json_path`` says otherwise, ``results.json``.
    ``resume=True`` continues a comparison in ``out``: a row that finished
    (status ok) with the very same spec is kept as it is (``on_reuse(record)``),
    every other row (failed, interrupted, never run, or asked with other
    settings) runs.  Each row runs in its own worker process, placed by the
    executor of :mod:`gonprof.executors`: ``jobs`` > 1 runs that many rows at
    once, each worker pinned to its own disjoint set of cores with torch
    threads to match; ``executor="ray"`` runs every row as a Ray task in a
    fresh worker on the cluster at ``address`` (None: a local one, started and
    stopped here), ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs each.  The
    results file keeps the plan's order.  ``isolate=False`` runs the rows in
    this process, one after another (tests).  ``on_start(i, n, spec)`` and
    ``on_row(record)`` report progress; nothing here prints.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(json_path) if json_path else out / "results.json"
    done = finished_rows(out, json_path) if resume else {}
    rows: list[RunRecord] = []
    todo = list(specs)
    if todo:  # every row scores at one N, at which the selection's held-out images give a floor
        n, _ = scoring_n(todo[0])
        todo = [dataclasses.replace(s, n_samples=n) for s in todo]
    if floor and todo:
        first = todo[0]
        todo.insert(0, RunSpec(kind="floor", n_samples=first.n_samples, seed=first.seed, device=first.device,
                               data=first.data, classes=first.classes, per_class=first.per_class))
    placed = []
    for i, spec in enumerate(todo):
        name = f"{i:02d}-{spec.mode}-{spec.arch}" + (f"-{spec.variant}" if spec.variant else "")
        folder = out / ("floor" if spec.kind == "floor" else name.replace(" ", "_").replace("/", "_"))
        placed.append((dataclasses.replace(spec, run_dir=str(folder / "run")) if spec.kind == "run" else spec,
                       folder))
    if isolate:
        return _compare_workers(placed, done, json_path, Executor(executor, jobs, address, cpus_per_run, gpus_per_run),
                                on_start, on_row, on_reuse, write_errors)
    for i, (spec, folder) in enumerate(placed):  # every row in this process (tests)
        kept = _kept_row(done, spec, folder, on_reuse)
        if kept is not None:
            rows.append(kept)
            continue
        if on_start:
            on_start(i, len(todo), spec)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
        rec = run_spec(spec)
        rows.append(rec)
        _save_rows(rows, json_path, write_errors)
        if on_row:
            on_row(rec)
        if rec.status == "interrupted":
            break
    return rows


def _compare_workers(placed, done, json_path, executor: Executor, on_start, on_row, on_reuse,
                     write_errors) -> list[RunRecord]:
    """Every row not kept from an earlier run as a worker job of ``executor`` (:mod:`gonprof.executors`):
    rows come back as they finish, the results file (in the plan's order) is rewritten after each, and
    Ctrl-C keeps the finished rows beside the interrupted ones."""
    results: dict[int, RunRecord] = {}
    todo: list[tuple[int, RunSpec, Path]] = []
    for i, (spec, folder) in enumerate(placed):
        kept = _kept_row(done, spec, folder, on_reuse)
        if kept is not None:
            results[i] = kept
        else:
            todo.append((i, spec, folder))
    running: dict[int, RunSpec] = {}  # each row's spec as it runs (its cores and threads set)

    def save() -> None:
        _save_rows([results[i] for i in sorted(results)], json_path, write_errors)

    def started(k: int, spec: dict) -> None:
        running[k] = RunSpec.from_dict(spec)
        if on_start:
            on_start(todo[k][0], len(placed), running[k])

    def finished(k: int, outcome) -> None:
        results[todo[k][0]] = rec = record_of(running[k], outcome)
        save()
        if on_row:
            on_row(rec)

    jobs = [Job("compare-row", spec.to_dict(), folder) for _, spec, folder in todo]
    with executor.session() as session:
        outcomes = session.run(jobs, on_start=started, on_done=finished)
    # the rows Ctrl-C stopped, and any that finished while Ctrl-C cut its on_done short (before its record
    # was kept or saved): every started row is in the results file
    stopped = [k for k, out in outcomes.items() if out.interrupted or todo[k][0] not in results]
    for k in stopped:
        results[todo[k][0]] = record_of(running[k], outcomes[k])
    save()  # once more at the end: a Ctrl-C inside a row's own save must not leave that row unsaved
    return [results[i] for i in sorted(results)]


def _kept_row(done: dict, spec: RunSpec, folder: Path, on_reuse) -> RunRecord | None:
    """The earlier record of a row that finished with the same settings (``resume``), reported through
    ``on_reuse``; None when the row must run."""
    kept = done.get(folder.name)
    if kept is None or not same_settings(kept[0], spec.to_dict()):
        return None
    if on_reuse:
        on_reuse(kept[1])
    return kept[1]


def _save_rows(rows: list[RunRecord], json_path: Path, write_errors: list | None) -> None:
    """Rewrite the results file; a write that fails is noted once in ``write_errors`` (the caller reports
    it after printing the rows) and the comparison goes on."""
    try:
        save_records(rows, json_path)
    except OSError as exc:
        if write_errors is not None and not write_errors:
            write_errors.append(f"{json_path} not written: {exc.strerror or exc}")


def same_settings(a: dict, b: dict) -> bool:
    """Whether two row specs ask for the same run (the cores and threads a row ran with aside)."""
    ignore = ("cpus", "threads")
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def finished_rows(out: Path, json_path: Path) -> dict[str, tuple[dict, RunRecord]]:
    """The rows of an earlier comparison in ``out`` that finished: row folder -> (its spec, its record)."""
    from .records import RecordError, load_records

    try:
        records = load_records(json_path)
    except RecordError:
        return {}
    done = {}
    for rec in records:
        if rec.status != "ok":
            continue
        folder = "floor" if rec.kind == "floor" else (Path(rec.run_dir).parent.name if rec.run_dir else None)
        spec_path = out / folder / "spec.json" if folder else None
        if spec_path is not None and spec_path.is_file():
            try:
                done[folder] = (json.loads(spec_path.read_text()), rec)
            except ValueError:
                continue
    return done


def grid_image(rows: list[RunRecord], path: str | os.PathLike) -> Path | None:
    """The rows' final sample grids side by side, each captioned, in one PNG."""
    from PIL import Image, ImageDraw

    tiles = [(r.label, Image.open(r.samples_png).convert("RGB")) for r in rows
             if r.samples_png and Path(r.samples_png).is_file()]
    if not tiles:
        return None
    caption = 14
    w = sum(im.width for _, im in tiles) + 8 * (len(tiles) - 1)
    h = max(im.height for _, im in tiles) + caption
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, im in tiles:
        draw.text((x + 2, 1), label, fill="black")
        canvas.paste(im, (x, caption))
        x += im.width + 8
    path = Path(path)
    canvas.save(path)
    return path
