"""The memory guard: a step whose estimated peak exceeds the memory available is refused before it runs."""

from __future__ import annotations

from .records import MemoryEstimate, TooBigError
from .request import StepSpec


def available_bytes(device: str = "cpu") -> int:
    """Memory a step may still take: the system's available memory on the CPU, the device's free memory
    on CUDA."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(spec: StepSpec, force: bool = False) -> MemoryEstimate:
    """Estimate ``spec``'s step peak on meta tensors (nothing allocated) and refuse, with one line, a batch
    whose estimate exceeds the memory available (:func:`available_bytes`), unless ``force``.  Returns the
    MemoryEstimate."""
    from .estimate import estimate_step_memory

    est = estimate_step_memory(spec, max_inner_steps=2)
    free = available_bytes(spec.device)
    if est.peak_bytes > free and not force:
        raise TooBigError(f"{spec.arch} ({est.mode}) at batch {est.batch_size}: one step needs about "
                          f"{est.peak_bytes / 2**30:,.2f} GiB (estimated on meta tensors){peak_where(est)}, more "
                          f"than the {free / 2**30:,.2f} GiB available on {spec.device}; lower the batch size, "
                          "or pass --force to run it anyway")
    return est


def peak_where(est: MemoryEstimate) -> str:
    """Where an estimated step peaks, for a one-line message: `` at its peak in phase 'sample', top module
    D.main.0 (1.50 GiB)``; "" when the estimate names neither."""
    totals: dict[str, int] = {}
    for m in est.peak_modules:
        if m.module:
            totals[m.module] = totals.get(m.module, 0) + m.bytes_at_peak
    parts = []
    if est.peak_phase:
        parts.append(f"in phase {est.peak_phase!r}")
    if totals:
        name, nbytes = min(totals.items(), key=lambda kv: (-kv[1], kv[0]))
        parts.append(f"top module {name} ({nbytes / 2**30:,.2f} GiB)")
    return f", at its peak {', '.join(parts)}" if parts else ""
