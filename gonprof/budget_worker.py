"""One isolated batch-size trial, run as ``python -m gonprof.worker fit-trial '<json spec>'``.

Run by :func:`gonprof.budget.run_trial` in a fresh process so that an
out-of-memory step (or the kernel's OOM killer) ends this process, never the
search.  Prints one line ``GONPROF_TRIAL {json}`` with the figures:

- ``peak_live_bytes``: the LiveBytesTracker peak (tensor storages, incl.
  parameters, gradients and optimizer state), the max over the tracked steps;
- ``input_bytes``: the batch (float32 images + int64 labels);
- ``peak_rss_bytes`` / ``rss_baseline_bytes`` / ``peak_rss_delta_bytes``: the
  process's RSS high-water mark during the steps, the RSS before the first
  step (after imports, the build and the batch) and their difference;
- on cuda, ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``
  (reset before the first step, so the batch on the GPU counts);
- ``step_time_s``: the median time of the ``time_steps`` steps run after the
  tracked ones, without the tracker (with ``time_steps=0``: the last tracked
  step's time).

A memory cap (``cap_bytes``, RSS over the baseline) is watched by a thread
polling ``/proc/self/statm`` every 2 ms: past it the process reports
``killed`` and exits at once, before the machine runs out of memory.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import psutil

PREFIX = "GONPROF_TRIAL "
CAP_EXIT = 86


def _emit(result: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _watch(cap: int, baseline: int) -> None:
    def loop() -> None:
        while True:
            rss = _rss()
            if rss - baseline > cap:
                _emit({"status": "killed", "message": f"RSS {rss - baseline:,} B over the baseline passed the "
                                                      f"trial's cap of {cap:,} B", "peak_rss_bytes": rss,
                       "rss_baseline_bytes": baseline})
                os._exit(CAP_EXIT)
            time.sleep(0.002)

    threading.Thread(target=loop, daemon=True).start()


def run(spec: dict) -> dict:
    import math

    import torch

    from gonprof.arch import get_arch
    from gonprof.measure.memory import LiveBytesTracker
    from gonprof.measure.rss import RssPeak
    from gonprof.modes.build import build_step

    arch, mode, device = spec["arch"], spec["mode"], spec.get("device", "cpu")
    b = int(spec["batch_size"])
    dev = torch.device(device)
    step = build_step(mode, arch, generator=spec.get("generator"), preset=spec.get("preset"), device=device,
                      input_shape=spec.get("input_shape"), seed=int(spec.get("seed", 0)),
                      **(spec.get("hparams") or {}))
    shape = tuple(spec.get("input_shape") or get_arch(arch).input_shape)
    gen = torch.Generator().manual_seed(int(spec.get("seed", 0)))
    real = (torch.rand((b, *shape), generator=gen) * 2 - 1).to(dev)
    labels = torch.randint(0, 10, (b,), generator=gen).to(dev)
    is_cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if is_cuda else (lambda: None)
    out: dict = {"input_bytes": b * (math.prod(shape) * 4 + 8)}
    rss = RssPeak()
    baseline = rss.current()
    out["rss_baseline_bytes"] = baseline
    if spec.get("cap_bytes"):
        _watch(int(spec["cap_bytes"]), baseline)
    if is_cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(dev)
    peak_live = 0
    peak_rss = baseline
    times: list[float] = []
    last_tracked = None
    for _ in range(max(1, int(spec.get("steps", 2)))):
        rss.start()
        t0 = time.perf_counter()
        with LiveBytesTracker(step.models, step.optimizers) as mt:
            step.step(real, labels)
            sync()
        last_tracked = time.perf_counter() - t0
        peak_rss = max(peak_rss, rss.stop().peak_rss_bytes)
        peak_live = max(peak_live, mt.figures().peak_live_bytes)
    for _ in range(int(spec.get("time_steps", 1))):
        rss.start()
        sync()
        t0 = time.perf_counter()
        step.step(real, labels)
        sync()
        times.append(time.perf_counter() - t0)
        peak_rss = max(peak_rss, rss.stop().peak_rss_bytes)
    rss.close()
    times.sort()
    out.update(
        status="measured",
        peak_live_bytes=peak_live,
        peak_rss_bytes=peak_rss,
        peak_rss_delta_bytes=peak_rss - baseline,
        step_time_s=times[len(times) // 2] if times else last_tracked,
    )
    if is_cuda:
        out["cuda_max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(dev))
        out["cuda_max_memory_reserved_bytes"] = int(torch.cuda.max_memory_reserved(dev))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    try:
        result = run(spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        from gonprof.records import classify_failure

        status, msg = classify_failure(exc)
        result = {"status": "oom" if status == "oom" else "error", "message": msg[:500]}
    _emit(result)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (threads, CUDA context)
