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

The package's modules, one job each: :mod:`.presets` (the seed studies as data), :mod:`.plan` (the rows a
request asks for, :class:`RunSpec`), :mod:`.row` (one row, inside its worker) and this module (running the
rows on an executor, resuming, the results file and the side-by-side grid).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..executors import Job, Placement
from ..isolation import Outcome
from ..records import RunRecord, save_records
from .plan import (
    DEFAULT_N_SAMPLES,
    DEFAULT_PROFILE_STEPS,
    DEFAULT_TIME_BUDGET_S,
    NO_MODEL,
    RunSpec,
    plan,
    scope_hparams,
    scoring_n,
)
from .presets import PRESET_SETTINGS, PRESETS
from .row import record_of, run_spec


@dataclass(frozen=True)
class CompareEvents:
    """What a comparison reports as it goes (each optional): ``on_plan(specs, n_samples, n_held_out)`` once
    the request is checked and before anything runs; ``on_start(i, n, spec)`` and ``on_row(record)`` as
    each row starts and ends; ``on_reuse(record)`` for a row a resume keeps."""

    on_plan: Callable[[list[RunSpec], int, int], None] | None = None
    on_start: Callable[[int, int, RunSpec], None] | None = None
    on_row: Callable[[RunRecord], None] | None = None
    on_reuse: Callable[[RunRecord], None] | None = None


__all__ = [
    "CompareEvents", "Placement",
    "DEFAULT_N_SAMPLES", "DEFAULT_PROFILE_STEPS", "DEFAULT_TIME_BUDGET_S", "PRESETS", "PRESET_SETTINGS",
    "RunSpec", "compare", "finished_rows", "grid_image", "plan", "record_of", "resume_problem", "run_spec",
    "same_settings",
    "scope_hparams", "scoring_n",
]


def compare(specs: list[RunSpec], *, out: str | os.PathLike, json_path: str | os.PathLike | None = None,
            floor: bool = True, events: CompareEvents | None = None, write_errors: list | None = None,
            resume: bool = False, placement: Placement | None = None) -> list[RunRecord]:
    """Run every spec (plus the floor row) and return their records, saved after each row.

    ``out`` holds one folder per row (its ``spec.json``, run directory, worker
    log) and, unless ``json_path`` says otherwise, ``results.json``.
    ``resume=True`` continues a comparison in ``out``: a row that finished
    (status ok) with the very same spec is kept as it is (``events.on_reuse(record)``),
    every other row (failed, interrupted, never run, or asked with other
    settings) runs; one whose training run stopped part-way, or trained fewer
    steps of the same settings, trains on from its checkpoint
    (:attr:`RunSpec.continue_run`) rather than from the start.  Each row runs in its own worker process, placed by
    ``placement`` (:class:`gonprof.executors.Placement`): ``jobs`` > 1 runs that many rows at
    once, each worker pinned to its own disjoint set of cores with torch
    threads to match; ``executor="ray"`` runs every row as a Ray task in a
    fresh worker on the cluster at ``address`` (None: a local one, started and
    stopped here), ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs each;
    ``executor="inline"`` runs the rows in this process, one after another
    (tests, debugging).  The results file keeps the plan's order.  ``events``
    (:class:`CompareEvents`) report progress; nothing here prints.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(json_path) if json_path else out / "results.json"
    done = finished_rows(out, json_path) if resume else {}
    events = events or CompareEvents()
    placed = _placed(_with_floor(specs) if floor else _at_one_n(specs), out)
    if resume:
        placed = [(_continued(spec, folder), folder) for spec, folder in placed]
    placement = placement or Placement()
    if placement.executor == "inline":
        return _compare_inline(placed, done, json_path, events, write_errors)
    return _compare_workers(placed, done, json_path, placement, events, write_errors)


def _at_one_n(specs: list[RunSpec]) -> list[RunSpec]:
    """The rows, each scored at one N, at which the selection's held-out images give a floor."""
    if not specs:
        return []
    n, _ = scoring_n(specs[0])
    return [dataclasses.replace(s, n_samples=n) for s in specs]


def _with_floor(specs: list[RunSpec]) -> list[RunSpec]:
    """The real-vs-real floor row (the first row's data, seed and device, at the same N), then the rows."""
    todo = _at_one_n(specs)
    if not todo:
        return todo
    s = todo[0].step
    floor = RunSpec(kind="floor", n_samples=todo[0].n_samples,
                    step=NO_MODEL.replace(seed=s.seed, device=s.device, data=s.data, classes=s.classes,
                                          per_class=s.per_class))
    return [floor, *todo]


def _placed(todo: list[RunSpec], out: Path) -> list[tuple[RunSpec, Path]]:
    """Each row with its folder under ``out`` (and its run directory inside it); a row that starts from an
    earlier row's models (``init_from``) with that row's checkpoint (``init_checkpoint``)."""
    placed = []
    for i, spec in enumerate(todo):
        name = f"{i:02d}-{spec.mode}-{spec.arch}" + (f"-{spec.variant}" if spec.variant else "")
        folder = out / ("floor" if spec.kind == "floor" else name.replace(" ", "_").replace("/", "_"))
        placed.append((dataclasses.replace(spec, run_dir=str(folder / "run")) if spec.kind == "run" else spec,
                       folder))
    checkpoints = {s.variant: str(Path(s.run_dir) / "checkpoint.pt") for s, _ in placed if s.variant and s.run_dir}
    return [(dataclasses.replace(s, init_checkpoint=checkpoints[s.init_from]) if s.init_from in checkpoints else s,
             folder) for s, folder in placed]


def _continued(spec: RunSpec, folder: Path) -> RunSpec:
    """``spec`` set to train on from its row's checkpoint (``continue_run``) when the row's folder holds a
    run that stopped part-way with the same settings, or with fewer steps of the same settings (trained by
    steps, not a time budget); else ``spec`` as it is."""
    if spec.kind != "run" or spec.steps is None or spec.time_budget_s is not None:
        return spec
    try:
        old = RunSpec.from_dict(json.loads((folder / "spec.json").read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return spec
    if old.steps is None or old.steps > spec.steps or not (folder / "run" / "checkpoint.pt").is_file():
        return spec
    if not same_settings(dataclasses.replace(old, steps=spec.steps).to_dict(), spec.to_dict()):
        return spec
    return dataclasses.replace(spec, continue_run=True)


def _compare_inline(placed: list[tuple[RunSpec, Path]], done: dict, json_path: Path, events: CompareEvents,
                    write_errors: list | None) -> list[RunRecord]:
    """Every row in this process, one after another (``executor="inline"``)."""
    rows: list[RunRecord] = []
    for i, (spec, folder) in enumerate(placed):
        kept = _kept_row(done, spec, folder, events.on_reuse)
        if kept is not None:
            rows.append(kept)
            continue
        if events.on_start:
            events.on_start(i, len(placed), spec)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
        rec = run_spec(spec)
        rows.append(rec)
        _save_rows(rows, json_path, write_errors)
        if events.on_row:
            events.on_row(rec)
        if rec.status == "interrupted":
            break
    return rows


def _compare_workers(placed: list[tuple[RunSpec, Path]], done: dict, json_path: Path, executor: Placement,
                     events: CompareEvents, write_errors: list | None) -> list[RunRecord]:
    """Every row not kept from an earlier run as a worker job of ``executor`` (:mod:`gonprof.executors`):
    rows come back as they finish, the results file (in the plan's order) is rewritten after each, and
    Ctrl-C keeps the finished rows beside the interrupted ones."""
    results: dict[int, RunRecord] = {}
    todo: list[tuple[int, RunSpec, Path]] = []
    for i, (spec, folder) in enumerate(placed):
        kept = _kept_row(done, spec, folder, events.on_reuse)
        if kept is not None:
            results[i] = kept
        else:
            todo.append((i, spec, folder))
    running: dict[int, RunSpec] = {}  # each row's spec as it runs (its cores and threads set)

    def save() -> None:
        _save_rows([results[i] for i in sorted(results)], json_path, write_errors)

    def started(k: int, spec: dict) -> None:
        running[k] = RunSpec.from_dict(spec)
        if events.on_start:
            events.on_start(todo[k][0], len(placed), running[k])

    def finished(k: int, outcome: Outcome) -> None:
        results[todo[k][0]] = rec = record_of(running[k], outcome)
        save()
        if events.on_row:
            events.on_row(rec)

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
    if kept is None or not same_settings(RunSpec.from_dict(kept[0]).to_dict(), spec.to_dict()):
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
    """Whether two row specs ask for the same run (the cores and threads a row ran with aside, and its run
    directory, which follows the comparison folder: a folder moved or copied elsewhere still resumes, and whether
    it continues a run, which says how it trains, not what)."""
    ignore = ("cpus", "threads", "run_dir", "continue_run", "init_checkpoint")
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def resume_problem(out: str | os.PathLike, json_path: str | os.PathLike | None = None) -> str:
    """Why ``--resume OUT`` cannot continue a comparison there ("" when it can).  A comparison's folder
    holds its results file (``json_path``, default ``OUT/results.json``) or at least one row folder (its
    ``spec.json`` inside), and no training run of its own (``config.json``, ``checkpoint.pt``); a results
    file there must hold comparison rows."""
    from ..records import RecordError, load_records

    out = Path(out)
    if not out.is_dir():
        return f"{out}: no such comparison folder"
    if (out / "config.json").exists() or (out / "checkpoint.pt").exists():
        return (f"{out} holds a training run (config.json, checkpoint.pt), not a comparison; continue it with "
                f"gonprof train --out {out} --resume")
    results = Path(json_path) if json_path else out / "results.json"
    rows = [p for p in out.iterdir() if p.is_dir() and (p / "spec.json").is_file()]
    if results.is_file():
        try:
            records = load_records(results)
        except RecordError as exc:
            return f"{out}: not a comparison folder ({exc})"
        if not all(isinstance(r, RunRecord) for r in records):
            return f"{out}: not a comparison folder ({results} holds {type(records[0]).__name__}s, not compare rows)"
    elif not rows:
        return (f"{out}: not a comparison folder (no {results.name} and no row folder with a spec.json); "
                f"drop --resume to start a comparison there")
    return ""


def finished_rows(out: Path, json_path: Path) -> dict[str, tuple[dict, RunRecord]]:
    """The rows of an earlier comparison in ``out`` that finished: row folder -> (its spec, its record)."""
    from ..records import RecordError, load_records

    try:
        records = load_records(json_path)
    except RecordError:
        return {}
    done: dict[str, tuple[dict, RunRecord]] = {}
    for rec in records:
        if rec.status != "ok":
            continue
        folder = "floor" if rec.kind == "floor" else (Path(rec.run_dir).parent.name if rec.run_dir else None)
        spec_path = out / folder / "spec.json" if folder else None
        if folder is not None and spec_path is not None and spec_path.is_file():
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
