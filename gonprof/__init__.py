"""gonprof: profile what GAN and GON discriminators cost, beside what they buy.

``gonprof.profile()`` and ``gonprof.compare()`` return records; training
runs go through :func:`gonprof.api.train` (``gonprof.train`` is the module
with the training loop).  The top-level names are loaded lazily, so that ``import gonprof`` (and
``gonprof --help``) does not import torch.
"""

from __future__ import annotations

from gonprof._lazy import lazy_exports
from gonprof._version import __version__

_LAZY = {
    "ArchSpec": "gonprof.arch",
    "register_arch": "gonprof.arch",
    "build": "gonprof.arch",
    "list_archs": "gonprof.arch",
    "ARCHITECTURES": "gonprof.arch",
    "Registry": "gonprof.registry",
    "Profiler": "gonprof.profiler",
    "ModeSpec": "gonprof.modes",
    "register_mode": "gonprof.modes",
    "MODES": "gonprof.modes",
    "profile": "gonprof.api",
    "compare": "gonprof.api",
    "ProfileRecord": "gonprof.records",
    "DistributedProfileRecord": "gonprof.records",
    "gather_records": "gonprof.ddp",
    "count_allreduce": "gonprof.measure.comm",
    # a step's request and where work runs: what every api verb takes
    "StepSpec": "gonprof.request",
    "Placement": "gonprof.executors",
    # the errors the api raises: a request that cannot be made (usage, the CLI's exit 2) ...
    "RequestError": "gonprof.records",
    "RegistryError": "gonprof.registry",
    "IncompatibleError": "gonprof.modes.base",
    "SelectionError": "gonprof.data",
    "ShapeError": "gonprof.arch",
    # ... and a run, its data or a results file that failed (exit 1)
    "DataError": "gonprof.data",
    "RecordError": "gonprof.records",
    "TooBigError": "gonprof.records",
    "TrainError": "gonprof.train",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports('gonprof', globals(), _LAZY)
