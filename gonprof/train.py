"""The training loop behind ``gonprof train``: run directories, checkpoints, exact resume.

:func:`run_training` builds a :class:`~gonprof.modes.base.TrainStep` for a
:class:`TrainConfig`, feeds it shuffled batches and records everything in a run
directory.  The library never prints; pass a ``progress`` object (the CLI passes
:class:`gonprof.progress.RichProgress`) to see the run go.

Run directory
-------------
::

    OUT/
      config.json           the config as given ("config") and as resolved ("resolved": batch
                            size, total steps, steps per epoch, sample/checkpoint/log periods,
                            the step's resolved hyper-parameters, device, data and held-out
                            split, models and parameter counts), plus gonprof / torch /
                            torchvision / python versions and the creation time
      log.jsonl             one JSON object per logged step:
                              {"step": 12, "losses": {"d_loss": 0.69, ...}, "time_s": 3.1}
                            (time_s = training wall time since the run began, across resumes;
                            a non-finite loss is written as null), then, when the run stops,
                            one status line:
                              {"status": "ok"|"nan"|"interrupted"|"error", "step": N,
                               "message": "...", "time_s": ...}
      checkpoint.pt         torch.save of {"format", "step", "state" (TrainStep.state_dict():
                            models, optimizers, the mode's extra state), "rng" (torch CPU,
                            CUDA when used, python, numpy), "elapsed_s", "last_losses",
                            "config", versions}; the data position is "step" (the batches
                            are a pure function of seed and step).  Written atomically
                            (a temporary file beside it, then one rename) at step 0, every
                            ``checkpoint_every`` steps, at the end and on a clean interrupt.
      samples/step_000100.png   8x8 grid of ``TrainStep.sample(64)``, [-1, 1] mapped to [0, 1],
                            every ``sample_every`` steps
      samples/final.png     the same at the end of a run that finished ("ok")
      result.json           a :class:`TrainResult`: status, message, steps done, total steps,
                            checkpoint step, final losses, wall time, test error, path

Reproducibility
---------------
The global torch / python / numpy RNGs are seeded with ``seed`` before the
step is built; the batch order is ``ImageData.batches(batch_size, seed, step)``.
Sample grids are drawn under ``torch.random.fork_rng`` seeded by ``seed`` and
the step number, and the models' buffers, gradients and train/eval flags are
restored afterwards, so writing a grid never changes the training trajectory.
Same seed, same device: the same losses.  ``resume=True`` loads the
checkpoint (models, optimizers, mode state, RNG states), drops log lines past
the checkpoint's step and continues, so a run of 6 steps equals a run of 3
steps resumed to 6, step for step.  On CUDA, cuDNN is put in deterministic,
non-benchmark mode for the run.

Stopping
--------
* A non-finite loss stops the run with status ``"nan"``: the step's log line
  and a status line are written, ``result.json`` too; the last good
  checkpoint and grids stay.  Such a run cannot be resumed (it would repeat).
* Ctrl-C or SIGTERM: the first one (when the run is in the main thread and
  the signal has Python's default handler) asks the run to stop, through a
  :class:`gonprof.stops.StopToken`: between steps, or inside a step where the
  mode polls it (GON's inner loop, DCD's Langevin steps, the samplers of
  grids), within one iteration of that loop.  A mode polls only where its
  step has not yet changed its models, optimizers or state, and the trainer
  puts back the random-number state the step began with, so a step stopped
  inside is as if it never began: the run writes a checkpoint at the last
  whole step, status ``"interrupted"`` (``stopped_by`` names the signal) and
  resumes exactly.  A ``KeyboardInterrupt`` that arrives inside a step where
  nothing polls (a second Ctrl-C, or one raised by code) leaves that step
  half done, so the previous checkpoint is kept rather than overwritten; a
  KeyboardInterrupt between steps (logging, sampling) writes a checkpoint at
  the last completed step.  Either way the run resumes exactly.
* ``time_budget_s``: the same token carries the deadline, so the budget stops
  the run between steps or inside one as a signal does, with status ``"ok"``
  and a message that says where ("reached inside step 7 ...: stopped there,
  the last whole step (6) kept").  The final grid then gets
  :data:`GRID_GRACE` (10%) of the budget more, said on the progress line; a
  grid the grace cannot hold is not drawn (a warning says so).  Steps of a
  mode that polls nothing (their update loops) stop only between steps: the
  message says when such a step ran past the budget.
* Any other exception during training gives status ``"error"`` with a
  one-line message (the traceback goes to ``result.json``).  Errors before the
  first step (bad config, unknown architecture, incompatible mode, unreadable
  data, a run directory in use) are raised: :class:`TrainError`,
  :class:`~gonprof.data.DataError`, :class:`~gonprof.modes.base.IncompatibleError`
  or a registry error, each with a one-line message.

Resuming
--------
``resume=True`` needs ``config.out`` to hold a checkpoint.  The config must
match the stored one in everything that shapes the trajectory (arch, mode,
generator, preset, seed, data, device, batch size, hyper-parameters), else
:class:`TrainError` names the first difference.  ``batch_size`` left as None
means the stored one; ``steps`` / ``epochs`` left as None mean the stored
total; a larger total extends the run.  Resuming a
run that already reached its total, or one that stopped on a NaN, is a
:class:`TrainError`.  :func:`load_run_config` reads a run directory's config
back, for ``gonprof train --out DIR --resume`` without the other options.

Held-out data and labels
------------------------
If the step has a callable ``test_error(images, labels)`` (improved-gan's
semi-supervised variant), the data are split before training and the step is
scored at the end of a finished run: with the embedded MNIST test split (10,000
images) or any single-split source, the first half trains (images 0-4,999)
and the second half is held out (images 5,000-9,999); an IDX folder holding both a
``train`` and a ``t10k`` split trains on ``train`` and holds out ``t10k``.
If the step has ``set_labelled(images, labels)`` and ``hparams["labels"] > 0``,
it receives a class-balanced subset of the *training* images chosen by
:func:`balanced_subset` from ``seed``; those images stay in the unlabelled
stream too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from . import stops
from .data import ImageData, Selection, SelectionError, load_split
from .modes.base import batch_size_of
from .records import atomic_write, classify_failure, host_load, to_jsonable
from .request import STEP_FIELDS, CarriesStep, StepSpec, as_spec, check_threads
from .stops import Stopped, StopToken

CHECKPOINT_FORMAT = 1
RESULT_SCHEMA = 1
DEFAULT_STEPS = 1000
BUDGET_ONLY_STEPS = 10**9  # the step bound of a run limited by time_budget_s alone
GRID_NROW = 8
GRID_N = GRID_NROW * GRID_NROW
STATUSES = ("ok", "nan", "interrupted", "error")
#: The final grid of a run stopped by its time budget may take this share of the budget more.
GRID_GRACE = 0.1

# Fields of TrainConfig that shape the trajectory: a resume must match them.
_TRAJECTORY_FIELDS = ("arch", "mode", "generator", "preset", "seed", "data", "classes", "per_class", "device",
                      "hparams")


class TrainError(Exception):
    """A training run cannot start or resume; the message is one line."""


# ---------------------------------------------------------------------------
# config and result


@dataclass(frozen=True)
class TrainConfig(CarriesStep):
    """What to train: the step's request (``step``, a :class:`~gonprof.request.StepSpec`) and how long and
    where the run goes.  None means "the default", resolved by :func:`run_training`.

    ``steps`` / ``epochs``: at most one; ``epochs=N`` is ``N * (len(train data) // batch_size)``
    steps; neither gives :data:`DEFAULT_STEPS` (or, on resume, the stored total).
    The request's ``batch_size`` None is the mode's seed default ``hparams["batch_size"]``, else 64.
    ``out``: the run directory; None makes ``runs/<arch>-<mode>-<date>-<time>``.
    ``sample_every``: a grid every K steps; None is about 10 grids a run; 0 only the final one.
    ``checkpoint_every``: None is about 10 checkpoints a run (at most every 500 steps).
    ``log_every``: a log line every K steps (the last step and a NaN step are always logged).
    ``time_budget_s``: stop after this many seconds of training (status ``ok``; the message
    says so), inside a step where the mode's long loops poll the stop token, else after the
    step that crosses it; the final grid may take 10% of the budget more.  Without ``steps``
    or ``epochs`` the run is then bounded by the budget alone.
    ``threads``: torch threads for the run (None: torch's default).
    """

    step: StepSpec
    steps: int | None = None
    epochs: int | None = None
    out: str | None = None
    sample_every: int | None = None
    log_every: int = 1
    checkpoint_every: int | None = None
    time_budget_s: float | None = None
    threads: int | None = None

    @classmethod
    def of(cls, **fields: Any) -> TrainConfig:
        """A config from flat keywords: the request's (:data:`~gonprof.request.STEP_FIELDS`) and the run's."""
        step = as_spec(None, {k: fields.pop(k) for k in list(fields) if k in STEP_FIELDS}, "train")
        return cls(step=step, **fields)



@dataclass
class TrainResult:
    """How a run ended; written to ``OUT/result.json`` and returned by :func:`run_training`."""

    status: str  # "ok" | "nan" | "interrupted" | "error"
    message: str
    steps_done: int
    steps_total: int
    checkpoint_step: int | None
    final_losses: dict[str, float | None]
    wall_time_s: float  # training wall time across resumes
    path: str  # the run directory
    arch: str = ""
    mode: str = ""
    seed: int = 0
    device: str = ""
    test_error: float | None = None
    resumed_from: int | None = None
    warnings: list[str] = field(default_factory=list)
    traceback: str | None = None
    stopped_by: str | None = None  # the signal (SIGINT, SIGTERM) that stopped an interrupted run
    schema_version: int = RESULT_SCHEMA

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def time_bounded(self) -> bool:
        """Whether only the time budget bounded the run (it has no step total)."""
        return self.steps_total >= BUDGET_ONLY_STEPS

    def to_dict(self) -> dict:
        return _json(dataclasses.asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> TrainResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> TrainResult:
        """From JSON text, a result.json path, or a run directory."""
        s = str(text_or_path)
        if not s.lstrip().startswith("{"):
            p = Path(s)
            if p.is_dir():
                p = p / "result.json"
            s = p.read_text()
        return cls.from_dict(json.loads(s))


# ---------------------------------------------------------------------------
# helpers


def balanced_subset(data: ImageData, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` images of ``data``, balanced over its classes, chosen by ``seed``.

    Each class gets ``n // K`` images (``K = data.num_classes``); the remainder
    goes one each to the lowest-numbered classes.  Returned sorted.  A class
    with too few images raises :class:`TrainError`.
    """
    k = max(int(data.num_classes), 1)
    if n <= 0:
        return torch.zeros(0, dtype=torch.long)
    if n > len(data):
        raise TrainError(f"cannot choose {n} labelled images from {len(data)} in {data.name}")
    gen = torch.Generator().manual_seed(int(seed) * 7_919 + 17)
    labels = data.labels
    chosen = []
    for c in range(k):
        want = n // k + (1 if c < n % k else 0)
        if want == 0:
            continue
        idx = (labels == c).nonzero(as_tuple=True)[0]
        if len(idx) < want:
            raise TrainError(f"class {c} of {data.name} has {len(idx)} images; {want} labelled ones needed")
        chosen.append(idx[torch.randperm(len(idx), generator=gen)[:want]])
    return torch.cat(chosen).sort().values


def load_run_config(out: str | os.PathLike) -> TrainConfig:
    """The config a run directory was made with (``out`` set to that directory)."""
    path = Path(out) / "config.json"
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainError(f"{out}: not a run directory (no config.json)") from None
    except (OSError, ValueError) as exc:
        raise TrainError(f"{path}: unreadable ({exc})") from None
    return TrainConfig.from_dict({**stored["config"], "out": str(out)})


def read_log(out: str | os.PathLike) -> list[dict]:
    """The step lines of ``OUT/log.jsonl`` (status lines left out)."""
    path = Path(out) / "log.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            rec = json.loads(line)
            if "step" in rec and "losses" in rec:
                rows.append(rec)
    return rows


def _json(obj: Any) -> Any:
    """Strict JSON (non-finite numbers as null) for config, log and result files."""
    return to_jsonable(obj, finite=True)


def _data_key(data: str | None) -> str:
    if data is None or str(data) == "mnist-test":
        return "mnist-test"
    if str(data) == "synthetic":
        return "synthetic"
    return str(Path(data).expanduser().resolve())


def _norm_device(device: str) -> str:
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        return "cuda"
    return str(d)


def _flat(cfg: dict) -> dict:
    """A stored config as one flat dict (the request's fields beside the run's), whichever form it has."""
    return {**{k: v for k, v in cfg.items() if k != "step"}, **(cfg.get("step") or {})}


def _trajectory(cfg: dict) -> dict:
    cfg = _flat(cfg)
    out = {k: cfg.get(k) for k in _TRAJECTORY_FIELDS}
    out["data"] = _data_key(out["data"])
    out["device"] = _norm_device(out["device"] or "cpu")
    out["hparams"] = json.loads(json.dumps(_json(out["hparams"] or {}), sort_keys=True))
    return out


def _default_out(config: TrainConfig) -> Path:
    base = Path("runs") / f"{config.step.arch}-{config.step.mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def _rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state(legacy=True)  # the default, said so: numpy's stub reads no argument as False
    assert isinstance(np_state, tuple)  # the global generator is an MT19937, whose legacy state is a tuple
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
    }
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # seeds CUDA too
    random.seed(seed)
    np.random.seed(seed % (2**32))


@contextlib.contextmanager
def _preserved(step, device: torch.device, seed: int):
    """Run code (sampling) without touching the training trajectory."""
    models = dict(getattr(step, "models", {}) or {})
    flags = {k: [(m, m.training) for m in mod.modules()] for k, mod in models.items()}
    buffers = {k: [(b, b.detach().clone()) for b in mod.buffers()] for k, mod in models.items()}
    grads = {k: [(p, p.grad) for p in mod.parameters()] for k, mod in models.items()}
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        with torch.no_grad():
            for k in models:
                for b, saved in buffers[k]:
                    if b.shape == saved.shape:
                        b.copy_(saved)
                for p, g in grads[k]:
                    p.grad = g
                for m, was in flags[k]:
                    m.training = was


class _SigintCatcher:
    """The first SIGINT or SIGTERM sets ``requested`` (and ``signal_name``) and asks ``token`` to stop; a
    second one raises KeyboardInterrupt.  Installed only in the main thread, over Python's default handlers."""

    def __init__(self, on_first: Callable[[], None] | None = None, token: StopToken | None = None):
        self.requested = False
        self.signal_name: str | None = None
        self.on_first = on_first
        self.token = token
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if self.token is not None:  # long loops inside the step see it at their next iteration
            self.token.request(self.signal_name)
        if self.on_first:
            with contextlib.suppress(Exception):
                self.on_first()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
                if signal.getsignal(sig) is default:
                    self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class RunLock:
    """An OS lock on ``OUT/run.lock`` held for a run's life, so one process at a time owns a run directory.

    The holder's pid is written into the file; a second process is refused with one line naming it.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / "run.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise TrainError(f"{self.path.parent}: in use by another gonprof train (pid {holder}); "
                             "wait for it or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the file releases the lock
            self._fh = None


def _call(progress, name: str, *args) -> None:
    fn = getattr(progress, name, None) if progress is not None else None
    if fn is not None:
        fn(*args)


# ---------------------------------------------------------------------------
# the loop


def run_training(config: TrainConfig, *, resume: bool = False,
                 make_step: Callable[[TrainConfig], Any] | None = None,
                 progress: Any = None, overwrite: bool = False,
                 catch_sigint: bool = True) -> TrainResult:
    """Train ``config.step.arch`` with ``config.step.mode``; record the run in ``config.out``.

    ``make_step(config) -> TrainStep`` defaults to
    :func:`gonprof.modes.build.build_step` with the data's image shape.
    ``overwrite`` allows a fresh run in a directory that already holds one
    (its files are replaced).  ``catch_sigint`` turns the first Ctrl-C or SIGTERM
    into a clean stop (between steps, or inside one where the mode polls).  See the module docstring for the run
    directory, stopping and resuming.
    """
    _validate(config)
    if make_step is None:  # names, device, seed, settings: once, here
        config = config.replace(step=config.step.checked())
    else:  # a step built by the caller: its names are the caller's; the device, seed and batch size are checked
        config = config.replace(step=config.step.checked_place())
    out, stored_cfg = _run_dir(config, resume, overwrite)  # before anything expensive
    plan, step = _prepare(config, out, stored_cfg, make_step, progress)
    # -- start or resume: from here on this process owns the run directory -----
    lock = RunLock(out).acquire()
    try:
        return _start(config, step, plan, resume, progress, catch_sigint)
    finally:
        lock.release()


@dataclass
class _Plan:
    """A run as resolved before it starts: where it goes, its data, its schedule and the step's facts."""

    out: Path
    device: torch.device
    stored_cfg: dict | None
    train_data: ImageData
    held_data: ImageData
    selection: Selection
    load: dict
    hparams: dict
    batch_size: int
    total: int
    per_epoch: int
    sample_every: int
    ckpt_every: int
    log_every: int
    labelled_idx: torch.Tensor | None = None
    test_error_fn: Callable[..., Any] | None = None


def _run_dir(config: TrainConfig, resume: bool, overwrite: bool) -> tuple[Path, dict | None]:
    """(the run directory, its stored config.json when resuming); a one-line TrainError for a directory that
    cannot be used as asked."""
    if config.out is None:
        if resume:
            raise TrainError("--resume needs the run directory (--out DIR)")
        out = _default_out(config)
    else:
        out = Path(config.out).expanduser()
    ckpt_path, cfg_path, res_path = out / "checkpoint.pt", out / "config.json", out / "result.json"
    if not resume:
        if cfg_path.exists() and not overwrite:
            raise TrainError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
        return out, None
    if not cfg_path.exists() or not ckpt_path.exists():
        missing = "config.json" if not cfg_path.exists() else "checkpoint.pt"
        raise TrainError(f"{out}: nothing to resume (no {missing})")
    stored_cfg = json.loads(cfg_path.read_text())
    _check_same(config, stored_cfg["config"], out)
    prev = _read_result(res_path)
    if prev is not None and prev.get("status") == "nan":
        raise TrainError(f"{out}: the run stopped on a non-finite loss at step {prev.get('steps_done')}; "
                         "resuming would repeat it (start a new run with other settings)")
    return out, stored_cfg


def _prepare(config: TrainConfig, out: Path, stored_cfg: dict | None,
             make_step: Callable[[TrainConfig], Any] | None, progress: Any) -> tuple[_Plan, Any]:
    """Load the data, build the step (seeded) and resolve the schedule: (the plan, the step)."""
    selection = Selection.parse(config.step.classes, config.step.per_class)
    train_data, held_data = load_split(config.step.data, selection)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    load = host_load()
    _seed_everything(config.step.seed)
    step = (make_step or default_make_step(train_data.shape))(_as_started(config, stored_cfg))
    if load.get("overloaded"):
        _call(progress, "note", load["warning"])
    hparams = dict(getattr(step, "hparams", {}) or {})
    batch_size = _batch_size(config, stored_cfg, hparams, train_data, out)
    per_epoch = len(train_data) // batch_size
    total = _total_steps(config, stored_cfg, per_epoch)
    plan = _Plan(
        out=out, device=torch.device(config.step.device), stored_cfg=stored_cfg, train_data=train_data,
        held_data=held_data, selection=selection, load=load, hparams=hparams, batch_size=batch_size, total=total,
        per_epoch=per_epoch,
        sample_every=config.sample_every if config.sample_every is not None else max(1, total // 10),
        ckpt_every=config.checkpoint_every if config.checkpoint_every is not None else max(1, min(500, total // 10)),
        log_every=max(1, int(config.log_every)), test_error_fn=step.test_error if step.has_test_error else None)
    n_labels = int(hparams.get("labels") or 0)
    if n_labels > 0 and step.takes_labelled:
        plan.labelled_idx = idx = balanced_subset(train_data, n_labels, config.step.seed)
        step.set_labelled(train_data.images[idx].to(plan.device), train_data.labels[idx].to(plan.device))
    return plan, step


def _as_started(config: TrainConfig, stored_cfg: dict | None) -> TrainConfig:
    """The request a resumed run's step is built from: its own overrides, and for every other
    hyper-parameter the value the run resolved when it started (config.json), so that a mode default changed
    since then does not change the run's course.  A hyper-parameter the mode did not have then takes
    today's default."""
    resolved = ((stored_cfg or {}).get("resolved") or {}).get("hparams") or {}
    if not resolved or config.step.mode is None:
        return config
    from .modes import get_mode
    from .registry import RegistryError

    try:
        known = get_mode(config.step.mode).defaults
    except RegistryError:  # a step made by the caller's make_step, of a mode not registered
        return config
    given = config.step.hparams
    kept = {k: v for k, v in resolved.items()
            if k in known and k not in given and k != "batch_size" and json.dumps(_json(known[k])) != json.dumps(v)}
    if not kept:
        return config
    return dataclasses.replace(config, step=config.step.replace(hparams={**kept, **given}))


def _batch_size(config: TrainConfig, stored_cfg: dict | None, hparams: dict, train_data: ImageData,
                out: Path) -> int:
    """The run's batch size: the request's, else (on resume) the run's, else the mode's."""
    if config.step.batch_size is None and stored_cfg is not None:
        batch_size = int(stored_cfg["resolved"]["batch_size"])  # a resume keeps the run's batch size
    else:
        batch_size = int(config.step.batch_size or batch_size_of(hparams))
    if batch_size > len(train_data):
        raise SelectionError(f"{train_data.name}: batch size {batch_size} exceeds its {len(train_data)} training "
                             f"images; pass --batch-size {len(train_data)} or fewer, or keep more images")
    if stored_cfg is not None and int(stored_cfg["resolved"]["batch_size"]) != batch_size:
        raise TrainError(f"{out}: was trained with batch size {stored_cfg['resolved']['batch_size']}, "
                         f"not {batch_size}; use another --out or drop --resume")
    return batch_size


def _total_steps(config: TrainConfig, stored_cfg: dict | None, per_epoch: int) -> int:
    if config.steps is not None:
        return int(config.steps)
    if config.epochs is not None:
        return int(config.epochs) * per_epoch
    if stored_cfg is not None:
        return int(stored_cfg["resolved"]["steps"])
    if config.time_budget_s is not None:
        return BUDGET_ONLY_STEPS  # the budget ends the run
    return DEFAULT_STEPS


def _restore(step: Any, plan: _Plan, resume: bool) -> tuple[int, float, dict]:
    """(start step, seconds trained before, last losses): the checkpoint's when resuming (the log cut back to
    it), else a clean directory's."""
    out = plan.out
    ckpt_path, log_path, res_path = out / "checkpoint.pt", out / "log.jsonl", out / "result.json"
    start_step, elapsed0, last_losses = 0, 0.0, {}
    if resume:
        ckpt = _load_checkpoint(ckpt_path)
        start_step = int(ckpt["step"])
        if start_step >= plan.total:
            raise TrainError(f"{out}: the run already finished {start_step} of {plan.total} steps; "
                             "pass a larger --steps to extend it, or use another --out")
        step.load_state_dict(ckpt["state"])
        _set_rng_state(ckpt["rng"], plan.device)
        elapsed0 = float(ckpt.get("elapsed_s", 0.0))
        last_losses = dict(ckpt.get("last_losses", {}))
        _truncate_log(log_path, start_step)
        with contextlib.suppress(FileNotFoundError):
            res_path.unlink()
    else:
        out.mkdir(parents=True, exist_ok=True)
        for p in (log_path, res_path, ckpt_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    (out / "samples").mkdir(parents=True, exist_ok=True)
    return start_step, elapsed0, last_losses


def _write_config(config: TrainConfig, step: Any, plan: _Plan) -> None:
    """config.json: the request and what it resolved to (schedule, data, host, models, versions)."""
    data, idx = plan.train_data, plan.labelled_idx
    resolved = {
        "batch_size": plan.batch_size, "steps": plan.total, "steps_per_epoch": plan.per_epoch,
        "epochs": plan.total / plan.per_epoch, "sample_every": plan.sample_every,
        "checkpoint_every": plan.ckpt_every, "log_every": plan.log_every,
        "device": str(getattr(step, "device", plan.device)),
        "mode": getattr(step, "mode", config.step.mode), "phases": list(getattr(step, "phases", ())),
        "hparams": _json(plan.hparams),
        "data": {"source": _data_key(config.step.data), "name": data.name, "shape": list(data.shape),
                 "selection": plan.selection.to_dict(), "train_images": len(data),
                 "held_out_images": len(plan.held_data), "held_out": plan.held_data.name,
                 "labelled_indices": idx.tolist() if idx is not None else None},
        "host": {"torch_threads": torch.get_num_threads(), **{k: v for k, v in plan.load.items() if k != "warning"}},
        "models": {k: {"class": type(m).__name__, "params": sum(p.numel() for p in m.parameters())}
                   for k, m in (getattr(step, "models", {}) or {}).items()},
    }
    meta = {
        "config": config.replace(out=str(plan.out)).to_dict(), "resolved": resolved,
        "gonprof_version": _version(), "torch_version": torch.__version__,
        "torchvision_version": _tv_version(), "python": platform.python_version(),
        "created": (plan.stored_cfg or {}).get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write(plan.out / "config.json", json.dumps(meta, indent=2))


def _start(config: TrainConfig, step: Any, plan: _Plan, resume: bool, progress: Any,
           catch_sigint: bool) -> TrainResult:
    start_step, elapsed0, last_losses = _restore(step, plan, resume)
    _write_config(config, step, plan)
    run = _Run(step=step, config=config, plan=plan, elapsed0=elapsed0, progress=progress, last_losses=last_losses)
    run.checkpoint_step = start_step if resume else None
    if not resume:
        run.save_checkpoint(0)
    device = plan.device
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        result = run.loop(plan.train_data, plan.batch_size, start_step, catch_sigint)
        if result.status == "ok" and plan.test_error_fn is not None:
            try:
                held = plan.held_data
                te = plan.test_error_fn(held.images.to(device), held.labels.to(device))
                result.test_error = None if te is None else float(te)
            except Exception as exc:  # the run itself succeeded
                result.warnings.append(f"test_error failed: {type(exc).__name__}: {exc}")
    finally:
        if device.type == "cuda":
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    result.resumed_from = start_step if resume else None
    atomic_write(plan.out / "result.json", result.to_json())
    _call(progress, "finish", result)
    return result


class _Run:
    def __init__(self, *, step: Any, config: TrainConfig, plan: _Plan, elapsed0: float, progress: Any,
                 last_losses: dict) -> None:
        self.step, self.config, self.out, self.device, self.total = step, config, plan.out, plan.device, plan.total
        self.elapsed0, self.ckpt_every, self.sample_every = elapsed0, plan.ckpt_every, plan.sample_every
        self.log_every, self.progress, self.last_losses = plan.log_every, progress, last_losses
        self.t0 = time.perf_counter()
        self.checkpoint_step: int | None = None
        self.warnings: list[str] = []
        self._log: Any = None
        self._grid_at: int | None = None  # the step of the last step grid written
        self.k = 0  # whole steps done
        self.in_step = False  # inside TrainStep.step (a stop or an error there is inside step k + 1)
        self.watched = False  # whether a stop may come inside a step (then each step's RNG state is kept)
        self.rng_before: dict | None = None  # the RNG state before the step running now

    def elapsed(self) -> float:
        return self.elapsed0 + (time.perf_counter() - self.t0)

    # -- files -----------------------------------------------------------------
    def log(self, rec: dict) -> None:
        if self._log is None:
            self._log = open(self.out / "log.jsonl", "a", encoding="utf-8")
        self._log.write(json.dumps(_json(rec)) + "\n")
        self._log.flush()

    def save_checkpoint(self, k: int) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT, "step": k, "state": self.step.state_dict(),
            "rng": _rng_state(self.device), "elapsed_s": self.elapsed(),
            "last_losses": self.last_losses, "config": self.config.to_dict(),
            "gonprof_version": _version(), "torch_version": torch.__version__,
        }
        atomic_write(self.out / "checkpoint.pt", lambda tmp: torch.save(payload, tmp))
        self.checkpoint_step = k

    def save_grid(self, k: int | None, at: int | None = None) -> None:
        """Grid ``step_K.png`` (or ``final.png`` when ``k`` is None, at step ``at``: a copy of that
        step's grid when one was just written, so the final grid is never sampled twice)."""
        name = "final.png" if k is None else f"step_{k:06d}.png"
        if k is None and at is not None and self._grid_at == at:
            with contextlib.suppress(OSError):
                shutil.copyfile(self.out / "samples" / f"step_{at:06d}.png", self.out / "samples" / name)
                return
        seed = self.config.step.seed * 1_000_003 + (k if k is not None else self.total) + 1
        try:
            import torchvision.utils as vutils

            with _preserved(self.step, self.device, seed):
                x = self.step.sample(GRID_N)
            x = x.detach().float().cpu()
            x = ((x + 1) / 2).clamp_(0, 1)
            if x.dim() == 3:
                x = x.unsqueeze(1)
            vutils.save_image(x, str(self.out / "samples" / name), nrow=GRID_NROW)
            if k is not None:
                self._grid_at = k
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:
            msg = f"sample grid {name} not written: {type(exc).__name__}: {exc}".splitlines()[0]
            if msg not in self.warnings:
                self.warnings.append(msg)
                _call(self.progress, "note", msg)

    # -- the loop --------------------------------------------------------------
    def loop(self, data: ImageData, batch_size: int, start: int, catch_sigint: bool) -> TrainResult:
        """Steps from ``start`` until the total, a NaN, an error, a signal or the time budget; the result."""
        cfg, out = self.config, _Outcome()
        self.k, self.in_step = start, False
        budget = cfg.time_budget_s
        token = StopToken(None if budget is None else self.t0 + budget)
        self.watched = catch_sigint or budget is not None  # a stop can come inside a step: keep its RNG state
        catcher = _SigintCatcher(lambda: _call(self.progress, "note", "stopping (Ctrl-C again to stop now)"),
                                 token=token)
        with (catcher if catch_sigint else contextlib.nullcontext()), stops.watching(token):
            shown_total = None if self.total == BUDGET_ONLY_STEPS else self.total  # a time-bounded run: no total
            _call(self.progress, "start", shown_total, start, f"{cfg.step.arch} {cfg.step.mode}")
            try:
                self._steps(data, batch_size, token, out)
            except Stopped as stop:
                self._stopped(stop, token, out)
            except KeyboardInterrupt:
                out.status, out.stopped_by = "interrupted", catcher.signal_name or "SIGINT"
                if not self.in_step:
                    self.save_checkpoint(self.k)
                out.message = (f"interrupted after step {self.k} of {self.total}; --resume continues "
                               f"from step {self.checkpoint_step}")
            except Exception as exc:
                kind, what = classify_failure(exc)
                at = self.k + 1 if self.in_step else self.k
                out.status, out.traceback = "error", traceback.format_exc()
                out.message = f"{'out of memory' if kind == 'oom' else 'error'} at step {at}: {what}"
        return self._result(out)

    def _steps(self, data: ImageData, batch_size: int, token: StopToken, out: _Outcome) -> None:
        """The steps themselves; a stop asked for (a signal, the time budget) raises :class:`Stopped`,
        between steps as inside one."""
        batches = data.batches(batch_size, self.config.step.seed, self.k)
        while self.k < self.total:
            real, labels = next(batches)
            real = real.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            self.rng_before = _rng_state(self.device) if self.watched else None
            self.in_step = True
            losses_t = self.step.step(real, labels)
            self.in_step = False
            self.k = k = self.k + 1
            losses = {name: float(v) for name, v in (losses_t or {}).items()}
            bad = [name for name, v in losses.items() if not math.isfinite(v)]
            if bad or k % self.log_every == 0 or k == self.total:
                self.log({"step": k, "losses": losses, "time_s": round(self.elapsed(), 6)})
            self.last_losses = losses
            _call(self.progress, "update", k, losses)
            if bad:
                out.status = "nan"
                out.message = f"non-finite loss at step {k}: " + ", ".join(f"{n}={losses[n]}" for n in bad)
                return
            if self.sample_every and k % self.sample_every == 0:
                self.save_grid(k)
            if k % self.ckpt_every == 0 or k == self.total:
                self.save_checkpoint(k)
            if k < self.total:
                token.check()  # a signal or the budget, between steps
        self._final_grid(token, out)  # still watched: a stop now ends the run ok, without its grid
        out.message = f"trained {self.total} steps"

    def _stopped(self, stop: Stopped, token: StopToken, out: _Outcome) -> None:
        """A stop between steps or inside one: the state of the last whole step checkpointed (a stopped step
        changed no model, optimizer or mode state; its random draws are undone here), then status ok
        and the final grid (time budget) or status interrupted (a signal)."""
        k, inside, at = self.k, self.in_step, self.elapsed() - self.elapsed0
        if inside:
            self.in_step = False
            if self.rng_before is not None:
                _set_rng_state(self.rng_before, self.device)
        if self.checkpoint_step != k:
            self.save_checkpoint(k)
        if not stop.by_budget:
            out.status, out.stopped_by = "interrupted", stop.reason
            where = f"inside step {k + 1} of {self.total}, the last whole step ({k}) kept" if inside \
                else f"after step {k} of {self.total}"
            out.message = f"interrupted {where}; --resume continues from step {k}"
            return
        budget = float(self.config.time_budget_s or 0.0)
        if inside:
            out.message = (f"time budget of {budget:g} s reached inside step {k + 1} at {at:.1f} s: stopped "
                           f"there, the last whole step ({k}) kept")
        else:
            out.message = f"time budget of {budget:g} s reached after {k} steps"
            if at > budget * (1 + GRID_GRACE) and at > budget + 1.0:  # a step this mode cannot stop inside ran past it
                out.message += f" (its last step ended at {at:.1f} s: {self.config.step.mode_name}'s steps stop only " \
                               "between them)"
        self._final_grid(token, out)

    def _final_grid(self, token: StopToken, out: _Outcome) -> None:
        """``final.png`` at the last whole step; with a time budget, within :data:`GRID_GRACE` of it (said on the
        progress line).  A stop that cuts it leaves a warning instead (and, a signal's, ``stopped_by``)."""
        budget = self.config.time_budget_s
        if budget is not None:
            token.arm(self.t0 + budget * (1 + GRID_GRACE))
            left = max(0.0, token.deadline - time.perf_counter())  # type: ignore[operator]
            if self.elapsed() - self.elapsed0 >= budget:  # the budget ran out: the grid comes after it
                _call(self.progress, "note", f"drawing the final grid after the time budget (at most {left:.1f} s "
                                             f"more: {GRID_GRACE:.0%} of the budget)")
        try:
            self.save_grid(None, at=self.k)
        except (Stopped, KeyboardInterrupt) as stop:
            why = getattr(stop, "reason", None) or "SIGINT"
            if isinstance(stop, Stopped) and stop.by_budget:
                msg = f"final grid not drawn: the time budget and its {GRID_GRACE:.0%} for the grid ran out"
            else:
                msg = f"final grid not drawn: stopped by {why}"
                out.stopped_by = out.stopped_by or why
            self.warnings.append(msg)
            _call(self.progress, "note", msg)

    def _result(self, out: _Outcome) -> TrainResult:
        """The status line logged, the log closed, and the run's TrainResult."""
        cfg = self.config
        self.log({"status": out.status, "step": self.k, "message": out.message, "time_s": round(self.elapsed(), 6)})
        if self._log is not None:
            self._log.close()
        return TrainResult(
            status=out.status, message=out.message, steps_done=self.k, steps_total=self.total,
            checkpoint_step=self.checkpoint_step, final_losses=dict(self.last_losses),
            wall_time_s=round(self.elapsed(), 6), path=str(self.out), arch=cfg.step.arch, mode=cfg.step.mode_name,
            seed=cfg.step.seed, device=str(self.device), warnings=list(self.warnings), traceback=out.traceback,
            stopped_by=out.stopped_by)


@dataclass
class _Outcome:
    """How a run is ending, as the loop finds out."""

    status: str = "ok"
    message: str = ""
    traceback: str | None = None
    stopped_by: str | None = None


# ---------------------------------------------------------------------------
# internals


def _validate(config: TrainConfig) -> None:
    check_threads(config.threads)  # the CLI's rule and message, for the api's callers too
    if config.steps is not None and config.epochs is not None:
        raise TrainError("give --steps or --epochs, not both")
    for name in ("steps", "epochs"):
        v = getattr(config, name)
        if v is not None and (not isinstance(v, int) or v < 1):
            raise TrainError(f"--{name.replace('_', '-')} must be a positive integer, not {v!r}")
    for name in ("sample_every", "checkpoint_every"):
        v = getattr(config, name)
        if v is not None and (not isinstance(v, int) or v < 0):
            raise TrainError(f"--{name.replace('_', '-')} must be a non-negative integer, not {v!r}")
    if config.checkpoint_every == 0:
        raise TrainError("--checkpoint-every must be at least 1")


def _check_same(config: TrainConfig, stored: dict, out: Path) -> None:
    new, old = _trajectory(config.to_dict()), _trajectory(stored)
    for k in _TRAJECTORY_FIELDS:
        if new[k] != old[k]:
            raise TrainError(f"{out}: was made with {k}={json.dumps(old[k])}, not {json.dumps(new[k])}; "
                             "use another --out or drop --resume")
    stored_batch = _flat(stored).get("batch_size")
    if config.step.batch_size is not None and stored_batch not in (None, config.step.batch_size):
        raise TrainError(f"{out}: was made with batch_size={stored_batch}, not {config.step.batch_size}; "
                         "use another --out or drop --resume")


def _read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_checkpoint(path: Path) -> dict:
    try:
        # our own file, holding python / numpy RNG states and the mode's extra state
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise TrainError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        fmt = ckpt.get("format") if isinstance(ckpt, dict) else "?"
        raise TrainError(f"{path}: not a gonprof checkpoint (format {fmt})")
    return ckpt


def _truncate_log(path: Path, step: int) -> None:
    """Keep the step lines up to ``step``; drop later ones and earlier status lines."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line torn by a hard kill
        if "losses" in rec and int(rec.get("step", 0)) <= step:
            keep.append(line)
    atomic_write(path, "".join(s + "\n" for s in keep))


def default_make_step(input_shape: tuple[int, ...]) -> Callable[[TrainConfig], Any]:
    def make(config: TrainConfig) -> Any:
        return config.step.build(input_shape=tuple(input_shape))

    return make


def _version() -> str:
    from ._version import __version__

    return __version__


def _tv_version() -> str | None:
    try:
        import torchvision

        return torchvision.__version__
    except Exception:  # pragma: no cover
        return None
