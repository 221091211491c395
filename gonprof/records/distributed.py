"""Records of data-parallel profiles: one :class:`ProfileRecord` per rank, beside what DDP all-reduced.

- :class:`CommFigures`: the bytes DistributedDataParallel all-reduced in one step, by model and phase.
- :class:`RankRecord`: one rank: its status, its ProfileRecord and its CommFigures.
- :class:`DistributedProfileRecord`: every rank of one run, with the world size, the backend, the DDP
  options and the spread of each figure over the ranks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .base import SCHEMA_VERSION, STATUSES, JsonRecord, _Serialisable
from .profile import ProfileRecord


@dataclass(frozen=True)
class CommFigures(_Serialisable):
    """What DistributedDataParallel all-reduced on one rank, counted by a DDP communication hook.

    The hook sees every gradient bucket DDP hands to the all-reduce (``bucket.buffer()``), adds its bytes
    (``numel * element_size``) and then does what DDP does without a hook: divide by the world size and
    all-reduce.  Each backward pass through a DDP-wrapped model all-reduces every gradient of that model
    once, so a model of P float32 parameters that all get gradients adds 4 * P bytes per backward pass.

    ``allreduce_bytes_per_step`` / ``allreduce_calls_per_step``: one step, the measuring step (where
    FLOPs and live bytes are taken) when gonprof ran the step; in a user's own loop, the median over the
    steps counted.  ``allreduce_bytes_each_step``: every step counted, in order, so that a step that
    all-reduced differently shows.  Buffers are not broadcast (DDP wrapped with ``broadcast_buffers=False``
    by ``gonprof profile --nproc``), so gradients are all the step sends.
    """

    allreduce_bytes_per_step: int = 0
    allreduce_calls_per_step: int = 0
    allreduce_bytes_by_model: dict[str, int] = field(default_factory=dict)
    allreduce_bytes_by_phase: dict[str, int] = field(default_factory=dict)
    allreduce_bytes_each_step: tuple[int, ...] = ()
    method: str = "DDP communication hook: bytes of each gradient bucket, then DDP's own average by all-reduce"


@dataclass(frozen=True)
class RankRecord(_Serialisable):
    """One rank of a data-parallel run.  ``profile`` is None when the rank left no profile (it failed
    before profiling, or the launcher stopped it when another rank failed)."""

    rank: int = 0
    status: str = "ok"
    message: str = ""
    profile: ProfileRecord | None = None
    comm: CommFigures | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


#: The figures whose spread over the ranks a DistributedProfileRecord reports (name -> unit in the name).
SPREAD_FIGURES = ("flops_per_step", "peak_live_bytes", "peak_rss_delta_bytes", "cuda_max_memory_allocated_bytes",
                  "step_time_s_median", "allreduce_bytes_per_step")


def rank_figure(rank: RankRecord, name: str) -> Any:
    """One of :data:`SPREAD_FIGURES` of one rank, or None where the rank has no such figure."""
    p = rank.profile
    if name == "allreduce_bytes_per_step":
        return rank.comm.allreduce_bytes_per_step if rank.comm is not None else None
    if p is None:
        return None
    if name == "cuda_max_memory_allocated_bytes":
        return p.cuda_memory.max_memory_allocated_bytes if p.cuda_memory is not None else None
    return getattr(p, name)


@dataclass(frozen=True)
class DistributedProfileRecord(JsonRecord):
    """One data-parallel run profiled on every rank.

    ``batch_size`` is per rank (torchrun's convention): every rank runs a step on its own batch of that
    size, so ``global_batch_size`` = ``world_size * batch_size``.  ``threads_per_rank`` is each rank's
    torch threads.  ``ddp`` holds the options the models were wrapped with.  ``status`` is ``ok`` when
    every rank is; otherwise the first failing rank's status and message.
    """

    schema_version: int = SCHEMA_VERSION
    status: str = "ok"
    message: str = ""
    world_size: int = 0
    backend: str = ""
    launcher: str = ""
    device: str = "cpu"
    threads_per_rank: int | None = None
    arch: str | None = None
    mode: str | None = None
    generator: str | None = None
    batch_size: int | None = None
    ddp: dict[str, Any] = field(default_factory=dict)
    ranks: tuple[RankRecord, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def global_batch_size(self) -> int | None:
        """Images per step over all ranks: ``world_size * batch_size``."""
        return None if self.batch_size is None else self.world_size * self.batch_size

    def rank(self, r: int) -> RankRecord:
        for rec in self.ranks:
            if rec.rank == r:
                return rec
        raise KeyError(r)

    def spread(self) -> dict[str, tuple[Any, Any]]:
        """figure -> (min, max) over the ranks that have it (:data:`SPREAD_FIGURES`); the spread is
        max - min (and, for times, max / min)."""
        out = {}
        for name in SPREAD_FIGURES:
            values = [v for v in (rank_figure(r, name) for r in self.ranks) if v is not None]
            if values:
                out[name] = (min(values), max(values))
        return out

    @classmethod
    def assemble(cls, ranks: Iterable[RankRecord], *, world_size: int, **fields: Any) -> DistributedProfileRecord:
        """A record from its ranks (sorted by rank); a rank missing from ``ranks`` is a failed rank, and
        the record's status is the first failing rank's."""
        by_rank = {r.rank: r for r in ranks}
        for r in range(world_size):
            if r not in by_rank:
                by_rank[r] = RankRecord(rank=r, status="error", message="left no record")
        ordered = tuple(by_rank[r] for r in sorted(by_rank))
        status, message = "ok", ""
        failed = [r for r in ordered if r.status != "ok"]
        if failed:
            first = next((r for r in failed if not _consequence(r.message)), failed[0])
            status, message = first.status, f"rank {first.rank}: {first.message}"
        fields.setdefault("status", status)
        fields.setdefault("message", message)
        return cls(world_size=world_size, ranks=ordered, **fields)

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat row per rank (for CSV): the rank's ProfileRecord row, then the run and its all-reduce."""
        rows = []
        for r in self.ranks:
            row: dict[str, Any] = r.profile.to_row() if r.profile is not None else {
                "schema_version": self.schema_version, "arch": self.arch, "mode": self.mode,
                "batch_size": self.batch_size, "generator": self.generator}
            row.update(status=r.status, message=r.message, rank=r.rank, world_size=self.world_size,
                       backend=self.backend, global_batch_size=self.global_batch_size,
                       threads_per_rank=self.threads_per_rank)
            if r.comm is not None:
                row.update(allreduce_bytes_per_step=r.comm.allreduce_bytes_per_step,
                           allreduce_calls_per_step=r.comm.allreduce_calls_per_step)
                for k, v in r.comm.allreduce_bytes_by_model.items():
                    row[f"model_{k}_allreduce_bytes_per_step"] = v
                for k, v in r.comm.allreduce_bytes_by_phase.items():
                    row[f"phase_{k}_allreduce_bytes_per_step"] = v
            rows.append(row)
        return rows

    def to_row(self) -> dict[str, Any]:
        """The first rank's row (records_to_csv writes every rank through :meth:`to_rows`)."""
        rows = self.to_rows()
        return rows[0] if rows else {"world_size": self.world_size, "status": self.status}


#: What a rank says when it failed because another rank did (its peer closed the connection, or the
#: launcher stopped it): the record names the rank that failed first instead.
_CONSEQUENCES = ("left no record", "connection closed by peer", "connection reset by peer",
                 "remote worker crashing")


def _consequence(message: str) -> bool:
    text = message.lower()
    return any(c in text for c in _CONSEQUENCES)


def median_int(values: Iterable[int]) -> int:
    """The median of integers, as an integer (the lower middle of an even count)."""
    values = sorted(values)
    return int(values[(len(values) - 1) // 2]) if values else 0


__all__ = ["CommFigures", "RankRecord", "DistributedProfileRecord", "SPREAD_FIGURES", "rank_figure", "median_int"]
