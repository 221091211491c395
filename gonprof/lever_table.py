"""The lever table of ``gonprof profile --levers``: a request profiled as it is, under each memory lever
alone (:mod:`gonprof.levers`) and under the best pair, one after another in this process, each beside its
estimate.  Nothing here prints."""

from __future__ import annotations

from typing import Any

from .levers import LEVER_DEFAULTS, QUALITY_NOTES
from .records import LeverRecord, RequestError


def lever_candidates(spec: Any) -> list[tuple[str, dict[str, Any]]]:
    """(label, lever fields) of each lever alone for a checked request: bf16 (and fp16 on CUDA), checkpoint
    of D (and of G where the mode has one), micro-batches (4, else 2, where they divide the batch),
    channels-last.  A lever whose rule refuses the request is still listed: the table says why it was
    skipped."""
    out: list[tuple[str, dict[str, Any]]] = [("bf16", {"precision": "bf16"})]
    if spec.device != "cpu":
        out.append(("fp16", {"precision": "fp16"}))
    out.append(("checkpoint D", {"checkpoint": ("D",)}))
    if spec.mode_spec().needs_generator:
        out.append(("checkpoint G", {"checkpoint": ("G",)}))
    batch = spec.effective_batch_size()
    k = next((k for k in (4, 2) if batch % k == 0 and k <= batch), 4)
    out.append((f"{k} micro-batches", {"micro_batches": k}))
    out.append(("channels-last", {"channels_last": True}))
    return out


def lever_row(label: str, levers: dict[str, Any], rec: Any, est: Any, base: Any | None) -> Any:
    """A :class:`~gonprof.records.LeverRow` from a profile (``rec``), an estimate (``est``) and the
    baseline's row (None: this is the baseline)."""
    from .records import LeverRow

    lm, flops = rec.live_memory, rec.flops
    peak = lm.peak_live_bytes if lm is not None else None
    time_s = rec.step_time.time_s_median if rec.step_time is not None else None
    total = flops.flops_per_step if flops is not None else None
    fp32 = flops.flops_by_dtype.get("float32", 0) if flops is not None else 0
    notes = [QUALITY_NOTES[p] for p in (levers.get("precision"),) if p in QUALITY_NOTES]
    if levers.get("micro_batches", 1) != 1:
        notes.append(QUALITY_NOTES["micro_batches"] + " (where a model has batch norm)")
    saving = ratio = None
    if base is not None and peak is not None and base.tensor_peak_bytes:
        saving = 1.0 - peak / base.tensor_peak_bytes
    if base is not None and time_s is not None and base.step_time_s:
        ratio = time_s / base.step_time_s
    elif base is None and time_s is not None:
        ratio = 1.0
    return LeverRow(
        label=label, levers=dict(levers), status=rec.status, message=rec.message,
        tensor_peak_bytes=peak,
        allocator_peak_bytes=rec.allocator_memory.peak_bytes if rec.allocator_memory is not None else None,
        estimated_peak_bytes=est.peak_live_bytes if est is not None else None,
        saving_fraction=0.0 if base is None and peak is not None else saving, flops_per_step=total,
        step_time_s=time_s, time_ratio=ratio,
        float32_flops_fraction=(fp32 / total) if total else None,
        float32_operators=tuple(sorted(flops.float32_flops_by_operator)) if flops is not None
        and levers.get("precision", "fp32") != "fp32" else (),
        note="; ".join(notes))


def lever_table(spec: Any, *, warmup: int = 2, steps: int = 3) -> LeverRecord:
    """Profile a checked request as it is (the baseline), under each lever alone
    (:func:`lever_candidates`) and under the pair of the two that saved most; one after another in this
    process, each beside its estimate.  Returns a :class:`~gonprof.records.LeverRecord`."""
    from .estimate import estimate_step_memory
    from .modes.base import IncompatibleError
    from .runner import profile_request

    def run(label: str, levers: dict[str, Any], base: Any | None) -> Any:
        request = spec.replace(**levers).checked()
        est = estimate_step_memory(request)
        return lever_row(label, {**spec.replace(**levers).levers}, profile_request(request, warmup=warmup,
                                                                                   steps=steps), est, base)

    base = run("baseline", {}, None)
    rows, skipped = [base], {}
    for label, levers in lever_candidates(spec):
        try:
            rows.append(run(label, levers, base))
        except (RequestError, IncompatibleError) as exc:
            skipped[label] = str(exc)
    alone = sorted((r for r in rows[1:] if r.status == "ok" and (r.saving_fraction or 0) > 0),
                   key=lambda r: -(r.saving_fraction or 0))
    if len(alone) >= 2:
        pair = {**_non_default(alone[0].levers), **_non_default(alone[1].levers)}
        label = f"{alone[0].label} + {alone[1].label}"
        try:
            rows.append(run(label, pair, base))
        except (RequestError, IncompatibleError) as exc:
            skipped[label] = str(exc)
    first = rows[0]
    status = "ok" if all(r.status == "ok" for r in rows) else "error"
    from .records.profile import Environment

    env = Environment.capture(spec.device)
    return LeverRecord(status=status, message="" if status == "ok" else "a row failed: see its status",
                       arch=spec.arch, mode=spec.mode_name, generator=None, batch_size=spec.effective_batch_size(),
                       device=spec.device, environment=env, rows=tuple(rows), skipped=skipped,
                       notes=(f"{len(rows)} rows profiled one after another in one process ({warmup} warm-up "
                              f"and {steps} timed steps each); time ratio = median step time / the baseline's",
                              "saving = 1 - tensor peak / the baseline's tensor peak; estimate: the meta-tensor "
                              "estimator's tensor peak for the same request, "
                              f"baseline {first.estimated_peak_bytes:,} B"))


def _non_default(levers: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in levers.items() if k in LEVER_DEFAULTS and v != LEVER_DEFAULTS[k]
           and not (k == "checkpoint" and not v)}
    if "checkpoint" in out:
        out["checkpoint"] = tuple(out["checkpoint"])
    return out

