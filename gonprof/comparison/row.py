"""One comparison row, inside its worker process: train, profile and score (or, for the floor, score real
images).  Never raises for a failed run: that is the record's status."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..isolation import Outcome
from ..records import RunRecord, classify_failure, looks_oom
from .plan import RunSpec


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
    from ..data import load_split
    from ..metrics.scores import real_floor

    s = spec.step
    held = load_split(s.data, s.selection())[1]
    classes = list(s.classes) if s.classes is not None else None
    return base.replace(quality=real_floor(held, n=spec.n_samples, seed=s.seed, classes=classes))


def _run(spec: RunSpec, base: RunRecord, progress: Any) -> RunRecord:
    import torch

    from ..data import load_split
    from ..runner import profile_step
    from ..summary import param_totals
    from ..train import TrainConfig, default_make_step

    request = spec.step
    data, held = load_split(request.data, request.selection())
    holder: dict[str, Any] = {}
    make = default_make_step(data.shape)

    if spec.init_from and not spec.init_checkpoint:
        return base.replace(status="error", message=f"starts from row {spec.init_from}, which this comparison "
                                                    "does not run")

    def make_step(config):
        holder["step"] = make(config)
        if spec.init_checkpoint:
            _start_from(holder["step"], spec.init_checkpoint, spec.init_from)
        return holder["step"]

    config = TrainConfig(step=request, steps=spec.steps, out=spec.run_dir, sample_every=0,
                         time_budget_s=spec.time_budget_s, threads=spec.threads)
    if spec.gate:
        result, note = _gated(spec, config, make_step, progress, held, holder)
    else:
        result, note = _train(config, make_step, progress, spec.continue_run), ""
    step = holder.get("step")
    rec = base.replace(train_steps=result.steps_done, train_time_s=result.wall_time_s, run_dir=result.path,
                       generator=(step.generator if step is not None else None) or request.generator,
                       inner_iters_per_step=mean_inner_iters(result.path), message=note)
    if step is not None:
        d = step.models.get("D")
        g = step.models.get("G")
        rec = rec.replace(d_params=param_totals(d)[0] if d is not None else None,
                          g_params=param_totals(g)[0] if g is not None else None,
                          batch_size=_batch_size(result, spec))
        if rec.inner_iters_per_step is not None and rec.batch_size is not None:
            rec = rec.replace(chains_per_step=step.chains_per_step(rec.batch_size))
    final = Path(result.path) / "samples" / "final.png"
    if final.is_file():
        rec = rec.replace(samples_png=str(final))
    if result.status != "ok":
        status = "oom" if looks_oom(result.message) else result.status
        return rec.replace(status=status, message=f"training: {result.message}")
    assert step is not None  # a run that ended ok built its step
    assert rec.batch_size is not None  # and wrote its resolved batch size (read by _batch_size)
    prof = profile_step(step, data, batch_size=rec.batch_size, warmup=1, steps=spec.profile_steps,
                        seed=request.seed + 1, arch=spec.arch, mode=spec.mode, generator=rec.generator,
                        extra={"levers": request.levers})
    rec = rec.replace(profile=prof)
    if prof.status != "ok":
        return rec.replace(status=prof.status, message=f"profiling: {prof.message}")
    if tuple(data.shape) != (1, 28, 28):
        return rec.replace(message=f"not scored: the quality classifier takes 1x28x28 images, data is {data.shape}")
    from ..metrics.scores import score_samples

    if step.has_test_error:  # a classifier discriminator (improved-gan)
        rec = rec.replace(test_error_fraction=step.test_error(held.images, held.labels), n_test_images=len(held))
    torch.manual_seed(request.seed)
    unrefined = None
    if step.refines_samples:  # a refining sampler (dcd)
        unrefined, samples = step.sample_with_unrefined(spec.n_samples)
        unrefined = unrefined.detach().cpu()
    else:
        samples = step.sample(spec.n_samples)
    samples = samples.detach().cpu()
    if not bool(torch.isfinite(samples).all()):
        return rec.replace(status="nan", message="samples contain NaN or infinite values")

    def score(x):
        classes = list(request.classes) if request.classes is not None else None
        return score_samples(x, held, n=spec.n_samples, seed=request.seed, classes=classes)

    if unrefined is not None and bool(torch.isfinite(unrefined).all()):
        rec = rec.replace(quality_unrefined=score(unrefined))
    return rec.replace(quality=score(samples))


def mean_inner_iters(run_dir: str) -> float | None:
    """The mean of the ``inner_iters`` loss over a run's logged steps (None when its mode logs none)."""
    from ..train import read_log

    iters = [float(r["losses"]["inner_iters"]) for r in read_log(run_dir) if "inner_iters" in r["losses"]]
    return sum(iters) / len(iters) if iters else None


def _start_from(step: Any, path: str, row: str | None) -> None:
    """Load the models (not the optimisers) of another row's checkpoint into ``step``."""
    from ..train import TrainError, _load_checkpoint

    if not Path(path).is_file():
        raise TrainError(f"starts from row {row}: no checkpoint at {path} (that row has not trained)")
    models = _load_checkpoint(Path(path))["state"]["models"]
    for name, model in step.models.items():
        if name not in models:
            raise TrainError(f"starts from row {row}: its checkpoint holds no model {name!r}")
        model.load_state_dict(models[name])


#: The quality gate's class coverage when the gate does not name one: nearly every digit drawn.
GATE_COVERAGE = 0.9


def _gated(spec: RunSpec, config, make_step, progress: Any, held, holder: dict) -> tuple[Any, str]:
    """Train in chunks of ``gate["every"]`` steps (each resuming the last exactly) until the generator draws
    digits (the gate's confidence and coverage on ``gate["n"]`` samples) or ``spec.steps`` are trained; the
    last result and a note saying which, and where."""
    import torch

    from ..metrics.scores import score_samples

    gate, cap = dict(spec.gate or {}), int(spec.steps or 0)
    every, n = int(gate.get("every", cap)), int(gate.get("n", 200))
    want_conf, want_cov = float(gate.get("confidence", 0.8)), float(gate.get("coverage", GATE_COVERAGE))
    done = _checkpoint_step(config.out) if spec.continue_run else 0  # a row continued: from its checkpoint on
    target = min(cap, (done // every + 1) * every)
    while True:
        result = _train(config.replace(steps=target), make_step, progress, done > 0)
        if result.status != "ok":
            return result, ""
        done = target
        torch.manual_seed(spec.step.seed)
        q = score_samples(holder["step"].sample(n).detach().cpu(), held, n=min(n, len(held)),
                          seed=spec.step.seed)
        seen = f"confidence {q.mean_confidence:.2f}, coverage {q.class_coverage:.0%} on {n} samples"
        if callable(getattr(progress, "note", None)):  # the worker's log says how each check went
            progress.note(f"quality gate at step {target:,}: {seen}")
        if q.mean_confidence >= want_conf and q.class_coverage >= want_cov:
            return result, f"quality gate reached at step {target:,}: {seen}"
        if target >= cap:
            return result, (f"quality gate (confidence {want_conf:.2f}, coverage {want_cov:.0%}) not reached "
                            f"by the cap of {cap:,} steps: {seen}")
        target = min(target + every, cap)


def _checkpoint_step(run_dir: str | None) -> int:
    """The step of the checkpoint in ``run_dir`` (0 when there is none to read)."""
    from ..train import TrainError, _load_checkpoint

    try:
        return int(_load_checkpoint(Path(str(run_dir)) / "checkpoint.pt")["step"])
    except (TrainError, OSError, KeyError, ValueError, TypeError):
        return 0


def _train(config, make_step, progress: Any, continue_run: bool):
    """The row's training: on from its checkpoint when ``continue_run`` (a run that cannot continue there, e.g.
    one that already trained its steps, trains again from the start), else from the start."""
    from ..train import TrainError, run_training

    if continue_run:
        try:
            return run_training(config, make_step=make_step, progress=progress, resume=True)
        except TrainError:
            pass
    return run_training(config, make_step=make_step, progress=progress, overwrite=True)


def _batch_size(result, spec: RunSpec) -> int | None:
    try:
        cfg = json.loads((Path(result.path) / "config.json").read_text())
        return int(cfg["resolved"]["batch_size"])
    except (OSError, KeyError, ValueError, TypeError):
        return spec.step.batch_size



def record_of(spec: RunSpec, out: Outcome) -> RunRecord:
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


