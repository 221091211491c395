"""Measuring layer: one module per quantity.

- :mod:`gonprof.measure.params`: parameter counts, persistent-state bytes.
- :mod:`gonprof.measure.flops`: FLOPs of a step (FLOPs = 2 x MACs), the per-module forward table.
- :mod:`gonprof.measure.memory`: tensor-level live bytes during a step.
- :mod:`gonprof.measure.allocator`: the allocator-level peak of a step (compiled code runs compiled).
- :mod:`gonprof.measure.rss`: the process's peak RSS during a step.
- :mod:`gonprof.measure.timing`: Timer and timing statistics.
- :mod:`gonprof.measure.comm`: the bytes DistributedDataParallel all-reduces (a counting comm hook).

Names are loaded lazily so that importing this package does not import torch.
"""

from __future__ import annotations

from gonprof._lazy import lazy_exports

_LAZY = {
    "count_params": "gonprof.measure.params",
    "persistent_state": "gonprof.measure.params",
    "FlopCounter": "gonprof.measure.flops",
    "count_flops": "gonprof.measure.flops",
    "forward_table": "gonprof.measure.flops",
    "ForwardTable": "gonprof.measure.flops",
    "ForwardRow": "gonprof.measure.flops",
    "LiveBytesTracker": "gonprof.measure.memory",
    "track_live_bytes": "gonprof.measure.memory",
    "AllocatorPeak": "gonprof.measure.allocator",
    "RssPeak": "gonprof.measure.rss",
    "RssSample": "gonprof.measure.rss",
    "Timer": "gonprof.measure.timing",
    "summarize": "gonprof.measure.timing",
    "AllreduceCounter": "gonprof.measure.comm",
    "count_allreduce": "gonprof.measure.comm",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports('gonprof.measure', globals(), _LAZY)
