"""Training modes: how a discriminator is trained, one optimization step at a time.

A mode is a :class:`ModeSpec` registered in :data:`MODES` (entry point group
``gonprof.modes`` for plugins, the same path the built-ins take).  Its factory
binds built models to a :class:`TrainStep`, the object the trainer and the
profiler drive.  See :mod:`gonprof.modes.base`.

This package's ``__init__`` does not import torch.
"""

from .base import MODES, IncompatibleError, ModeSpec, get_mode, list_modes, register_mode

__all__ = ["MODES", "ModeSpec", "IncompatibleError", "register_mode", "get_mode", "list_modes"]
