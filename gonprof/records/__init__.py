"""Typed, schema-versioned records of everything gonprof measures; JSON and CSV.

Every quantity carries its unit in its field name (``..._bytes``, ``..._s``,
``flops_...``), so a record read back from JSON or a CSV row needs no legend.
Nothing here imports torch: records load and render without it.

- :mod:`.base`: constants, JSON conversion, :class:`JsonRecord` (the base of
  every record, with its schema check), atomic writes, failure classes;
- :mod:`.profile`: :class:`ProfileRecord` (one profiled run) and its parts;
- :mod:`.compare`: :class:`QualityRecord`, :class:`RunRecord` (a compare or
  score row) and the Pareto front;
- :mod:`.budget`: :class:`MemoryEstimate`, :class:`FitRecord`, :class:`ScalingRecord`;
- :mod:`.distributed`: :class:`DistributedProfileRecord` (one ProfileRecord per data-parallel rank, with
  what DDP all-reduced: :class:`RankRecord`, :class:`CommFigures`);
- :mod:`.files`: results files (:func:`save_records`, :func:`load_records`), with the command that
  wrote them (:func:`set_command`, :func:`provenance`).
"""

from .base import (
                   DEFAULT_NOISY_THRESHOLD,
                   OUTSIDE_PHASES,
                   SCHEMA_VERSION,
                   STATUSES,
                   JsonRecord,
                   RecordError,
                   RequestError,
                   TooBigError,
                   atomic_write,
                   classify_failure,
                   looks_oom,
                   to_jsonable,
)
from .budget import BatchTrial, FitRecord, LinearFit, MemoryEstimate, ScalingRecord
from .compare import QualityRecord, RunRecord, pareto_front, peak_memory_bytes
from .distributed import CommFigures, DistributedProfileRecord, RankRecord
from .files import RECORD_KINDS, load_extra, load_records, provenance, save_records, set_command
from .levers import LeverRecord, LeverRow
from .profile import (
                   COMPILED,
                   EAGER,
                   LIVE_CATEGORIES,
                   AllocatorMemory,
                   CudaMemory,
                   Environment,
                   FlopFigures,
                   LiveMemory,
                   MemoryTimeline,
                   ModelParams,
                   ModuleFlops,
                   ModuleMemory,
                   PersistentBytes,
                   PhaseSpan,
                   ProfileRecord,
                   RssFigures,
                   StepRecord,
                   TimingStats,
                   host_load,
                   peak_tolerance_bytes,
                   records_to_csv,
)

__all__ = [
    "DEFAULT_NOISY_THRESHOLD", "OUTSIDE_PHASES", "SCHEMA_VERSION", "STATUSES", "JsonRecord", "RecordError",
    "RequestError", "TooBigError", "atomic_write", "classify_failure", "looks_oom", "to_jsonable",
    "LeverRecord", "LeverRow", "BatchTrial", "FitRecord", "LinearFit", "MemoryEstimate", "ScalingRecord",
    "QualityRecord", "RunRecord", "pareto_front", "peak_memory_bytes",
    "CommFigures", "DistributedProfileRecord", "RankRecord",
    "RECORD_KINDS", "load_extra", "load_records", "provenance", "save_records", "set_command",
    "COMPILED", "EAGER", "AllocatorMemory", "CudaMemory", "Environment", "FlopFigures", "LIVE_CATEGORIES", "LiveMemory",
    "MemoryTimeline", "ModelParams", "ModuleFlops", "ModuleMemory", "PhaseSpan",
    "PersistentBytes", "ProfileRecord", "RssFigures", "StepRecord", "TimingStats", "host_load",
    "peak_tolerance_bytes", "records_to_csv",
]
