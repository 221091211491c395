"""One isolated batch-size trial, run as ``python -m gonprof.worker fit-trial SPEC.json RESULT.json``.

Run by :func:`gonprof.budget.run_trial` through :mod:`gonprof.isolation`, so
that an out-of-memory step (or the kernel's OOM killer) ends this process,
never the search.  The step runs under the same
:class:`~gonprof.profiler.Profiler` as ``gonprof profile``
(:func:`gonprof.runner.profile_step`) on a batch of uniform noise of the
architecture's shape: ``steps`` untimed steps, the last of which is measured,
then ``time_steps`` timed ones.  RESULT.json holds:

- ``peak_live_bytes``: the tensor-level peak of the measuring step (storages,
  incl. parameters, gradients and optimizer state);
- ``peak_live_external_bytes``: the part of it the step read without making it (the batch);
- ``input_bytes``: the batch (float32 images + int64 labels);
- ``peak_rss_bytes`` / ``rss_baseline_bytes`` / ``peak_rss_delta_bytes``: the
  process's RSS high-water mark over the timed steps, the RSS at a step's
  start and their difference (None without timed steps);
- on cuda, ``max_memory_allocated`` / ``max_memory_reserved`` of the timed steps;
- ``step_time_s``: the median timed step (without timed steps: the measuring
  step's time);
- ``cpus``: when the executor pinned the trial to cores (``--jobs N``), the
  cores this process ran on, as the kernel reports them.

A memory cap (``cap_bytes``, RSS over the baseline at the start) is watched
by a thread polling the RSS every 2 ms: past it the process writes ``killed``
and exits at once, before the machine runs out of memory.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import psutil

CAP_EXIT = 86


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _watch(cap: int, baseline: int, result_path: str) -> None:
    def loop() -> None:
        from gonprof.records import atomic_write

        while True:
            rss = _rss()
            if rss - baseline > cap:
                atomic_write(result_path, json.dumps({
                    "status": "killed", "message": f"RSS {rss - baseline:,} B over the baseline passed the "
                                                   f"trial's cap of {cap:,} B",
                    "peak_rss_bytes": rss, "rss_baseline_bytes": baseline}))
                os._exit(CAP_EXIT)
            time.sleep(0.002)

    threading.Thread(target=loop, daemon=True).start()


def run(spec: dict[str, Any], result_path: str) -> dict[str, Any]:
    import math

    import torch

    from gonprof.cores import usable_cores
    from gonprof.data import ImageData
    from gonprof.request import StepSpec
    from gonprof.runner import profile_step

    request = StepSpec.from_dict(spec["step"])
    b, seed = request.effective_batch_size(), request.seed
    step = request.build()
    shape = request.shape()
    gen = torch.Generator().manual_seed(seed)
    noise = ImageData(torch.rand((b, *shape), generator=gen) * 2 - 1, torch.randint(0, 10, (b,), generator=gen),
                      "uniform noise")
    if spec.get("cap_bytes"):
        _watch(int(spec["cap_bytes"]), _rss(), result_path)
    rec = profile_step(step, noise, batch_size=b, warmup=max(1, int(spec.get("steps", 2))),
                       steps=int(spec.get("time_steps", 1)), seed=seed)
    if rec.status != "ok":
        return {"status": "oom" if rec.status == "oom" else "error", "message": rec.message[:500]}
    rss, cuda = rec.rss, rec.cuda_memory
    assert rec.live_memory is not None  # an ok record has every figure it asked for (else it is incomplete)
    return {
        "status": "measured",
        "cpus": usable_cores() if spec.get("cpus") else None,
        "input_bytes": b * (math.prod(shape) * 4 + 8),
        "peak_live_bytes": rec.live_memory.peak_live_bytes,
        "peak_live_external_bytes": rec.live_memory.peak_live_external_bytes,
        "peak_rss_bytes": rss.peak_rss_bytes if rss else None,
        "rss_baseline_bytes": rss.rss_baseline_bytes if rss else None,
        "peak_rss_delta_bytes": rss.peak_rss_delta_bytes if rss else None,
        "step_time_s": rec.step_time.time_s_median if rec.step_time else rec.measuring_step_time_s,
        "cuda_max_memory_allocated_bytes": cuda.max_memory_allocated_bytes if cuda else None,
        "cuda_max_memory_reserved_bytes": cuda.max_memory_reserved_bytes if cuda else None,
    }


def main(spec_path: str, result_path: str) -> int:
    from gonprof.records import atomic_write, classify_failure

    spec = json.loads(open(spec_path).read())
    try:
        result = run(spec, result_path)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        status, msg = classify_failure(exc)
        result = {"status": "oom" if status == "oom" else "error", "message": msg[:500]}
    atomic_write(result_path, json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (threads, CUDA context)
