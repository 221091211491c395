"""The entry point of gonprof's isolated worker processes: ``python -m gonprof.worker KIND ARGS``.

Work whose memory, crash or out-of-memory kill must not touch anything else
runs in a fresh interpreter started through this module:

``compare-row SPEC.json RESULT.json``
    one row of ``gonprof compare`` (:func:`gonprof.comparison.run_spec`):
    the memory cap (``RLIMIT_DATA``) from the spec, training
    progress on this process's output (the row's ``worker.log``), the row's
    record written atomically to ``RESULT.json``.
``fit-trial SPEC.json RESULT.json``
    one batch-size trial of ``gonprof fit`` / ``--scaling``
    (:func:`gonprof.budget_worker.main`), its figures written to ``RESULT.json``.

Both first apply the placement their executor wrote into the spec
(:func:`place`: the cores, ``cpus``, and torch ``threads``).  Both are started
by :class:`gonprof.isolation.Worker`, which the executors
(:mod:`gonprof.executors`: local, ``--jobs N``, Ray) drive.

``ddp-rank SPEC.json OUTDIR``
    one rank of ``gonprof profile --nproc N`` (:func:`gonprof.distributed.run_rank`), started by
    torch.distributed's elastic launcher with RANK, WORLD_SIZE and LOCAL_RANK in its environment; its
    record written atomically to ``OUTDIR/rank-R.json``.

It sits at the top of the layers (beside the command line), since it wires a
workflow to progress on the console.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

USAGE = ("usage: python -m gonprof.worker compare-row|fit-trial SPEC.json RESULT.json, "
         "or ddp-rank SPEC.json OUTDIR (under torch.distributed.run)")


def place(spec: dict[str, Any]) -> None:
    """Apply the placement an executor gave the work (:mod:`gonprof.executors`): the cores it is pinned to
    (``cpus``, --jobs: shared with no other run) and its torch threads (``threads``)."""
    if spec.get("cpus"):
        import os

        os.sched_setaffinity(0, spec["cpus"])
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))


def compare_row(spec_path: str, result_path: str) -> int:
    import resource

    from .comparison import RunSpec, run_spec
    from .progress import RichProgress
    from .records import atomic_write

    spec = RunSpec.from_dict(json.loads(Path(spec_path).read_text()))
    if spec.memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (spec.memory_limit_bytes, spec.memory_limit_bytes))
    rec = run_spec(spec, progress=RichProgress())
    atomic_write(result_path, json.dumps(rec.to_dict(), allow_nan=True))
    return 0


def main(argv: list[str]) -> int:
    from .isolation import die_with_parent

    die_with_parent()  # a worker of a Ray task: never outlive it
    if len(argv) == 3 and argv[0] in ("compare-row", "fit-trial"):
        place(json.loads(Path(argv[1]).read_text()))
    if len(argv) == 3 and argv[0] == "compare-row":
        return compare_row(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "fit-trial":
        from .budget_worker import main as fit_trial

        return fit_trial(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "ddp-rank":
        from .distributed import run_rank

        return run_rank(argv[1], argv[2])
    sys.stderr.write(USAGE + "\n")
    return 2


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(main(sys.argv[1:]))
