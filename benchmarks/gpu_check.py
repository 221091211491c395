"""Where the memory goes, on a GPU: the tracker's split, per-module attribution and timeline on CUDA steps,
beside the allocator's peak and the meta-tensor estimate.  Prints every figure it checks; exit status 1 when a
check fails, 2 without CUDA.  Under 4 minutes on one GPU.

    python benchmarks/gpu_check.py [--pairs inception-k32:lsgan,gon-mnist-mlp:gon] [--json PATH]

For each (architecture, mode), at its default batch:

* ``gonprof.api.profile(..., device="cuda", warmup=2, steps=2)``: the measuring step's tensor-level peak,
  its split by category (must sum to the peak), the timeline (present, its peak point equal to the peak), the
  top five modules at the peak (every module name under D or G);
* the allocator peak of the same step (``max_memory_allocated`` over the measuring step, on the tensor peak's
  basis) against the tensor-level peak less its external storages (the batch, which the step did not
  allocate): the two differ by the CUDA allocator's 512 B rounding and cuBLAS / cuDNN workspaces only;
* ``max_memory_allocated`` of the timed steps against the meta-tensor estimate for CUDA
  (``estimate_step_memory``: every storage rounded to 512 B, plus the batch).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

DEFAULT_PAIRS = "inception-k32:lsgan,gon-mnist-mlp:gon"
MiB = 2**20


def check_pair(arch: str, mode: str) -> tuple[dict, list[str]]:
    from gonprof import api
    from gonprof.estimate import estimate_step_memory
    from gonprof.request import StepSpec

    hparams = {"inner_steps": 20} if mode == "gon" else {}
    t0 = time.perf_counter()
    rec = api.profile(arch, mode, device="cuda", warmup=2, steps=2, hparams=hparams)
    est = estimate_step_memory(StepSpec(arch, mode, device="cuda", hparams=hparams))
    lm, am, cm = rec.live_memory, rec.allocator_memory, rec.cuda_memory
    fails: list[str] = []
    if rec.status != "ok" or lm is None:
        return {"arch": arch, "mode": mode, "status": rec.status, "message": rec.message}, [f"status {rec.status}"]
    split = {c: getattr(lm, f"peak_live_{c}_bytes") for c in ("param", "buffer", "grad", "replay", "activation",
                                                               "external")}
    split["optimizer_state"] = lm.peak_live_optimizer_state_bytes
    if sum(split.values()) != lm.peak_live_bytes:
        fails.append(f"split sums to {sum(split.values()):,} B, not the peak {lm.peak_live_bytes:,} B")
    tl = lm.timeline
    at_peak = sum(v[tl.peak_point] for v in tl.bytes_by_category.values()) if tl else None
    if tl is None or at_peak != lm.peak_live_bytes:
        fails.append(f"timeline missing or its peak point ({at_peak}) is not the peak ({lm.peak_live_bytes})")
    roots = ("D", "G")
    bad = [m.module for m in lm.peak_modules if m.module and m.module.split(".")[0] not in roots]
    if bad:
        fails.append(f"modules outside the models: {bad[:3]}")
    basis = lm.peak_live_bytes - lm.peak_live_external_bytes
    out = {
        "arch": arch, "mode": mode, "batch_size": rec.batch_size, "device": rec.environment.device_name,
        "tensor_peak_bytes": lm.peak_live_bytes, "split_bytes": split, "peak_phase": lm.peak_phase,
        "timeline_points": len(tl.op_index) if tl else 0, "timeline_ops": tl.ops_total if tl else 0,
        "top_modules": _top(lm.peak_modules),
        "allocator_peak_bytes": am.peak_bytes if am else None, "tensor_peak_less_external_bytes": basis,
        "allocator_minus_tensors_bytes": am.peak_bytes - basis if am else None,
        "peak_difference_note": rec.peak_difference_note,
        "cuda_max_allocated_bytes": cm.max_memory_allocated_bytes if cm else None,
        "estimate_cuda_max_allocated_bytes": est.cuda_max_memory_allocated_bytes,
        "estimate_peak_phase": est.peak_phase, "wall_s": time.perf_counter() - t0,
    }
    if am is None:
        fails.append("no allocator peak")
    return out, fails


def _top(modules: list) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for m in modules:
        if m.module:
            totals[m.module] = totals.get(m.module, 0) + m.bytes_at_peak
    return sorted(totals.items(), key=lambda kv: -kv[1])[:5]


def show(r: dict, fails: list[str]) -> None:
    print(f"\n{r['arch']} under {r['mode']}, batch {r.get('batch_size')} on {r.get('device')}: "
          f"{'ok' if not fails else 'FAILED: ' + '; '.join(fails)}")
    if "tensor_peak_bytes" not in r:
        return
    print(f"  tensor-level peak {r['tensor_peak_bytes'] / MiB:,.2f} MiB in phase {r['peak_phase']!r}; split (MiB): "
          + ", ".join(f"{k} {v / MiB:,.2f}" for k, v in r["split_bytes"].items()))
    print(f"  timeline: {r['timeline_points']} points over {r['timeline_ops']} ops")
    print("  top modules at the peak (MiB): " + ", ".join(f"{m} {b / MiB:,.2f}" for m, b in r["top_modules"]))
    if r["allocator_peak_bytes"] is not None:
        print(f"  allocator peak {r['allocator_peak_bytes'] / MiB:,.2f} MiB against the tensor peak less external "
              f"{r['tensor_peak_less_external_bytes'] / MiB:,.2f} MiB: "
              f"{r['allocator_minus_tensors_bytes'] / MiB:+,.2f} MiB "
              f"{r['peak_difference_note'] or '(within tolerance)'}")
    est, got = r["estimate_cuda_max_allocated_bytes"], r["cuda_max_allocated_bytes"]
    if est and got:
        print(f"  max_memory_allocated (timed steps) {got / MiB:,.2f} MiB, estimated {est / MiB:,.2f} MiB "
              f"({(got - est) / est:+.1%}); {r['wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=DEFAULT_PAIRS)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device")
        return 2
    results, failed = [], False
    for item in args.pairs.split(","):
        arch, _, mode = item.strip().partition(":")
        r, fails = check_pair(arch, mode)
        show(r, fails)
        results.append({**r, "failures": fails})
        failed = failed or bool(fails)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"torch": torch.__version__, "results": results}, fh, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
