"""FLOPs of a whole training step, per phase, per module and per operator.

Convention everywhere: **FLOPs = 2 x MACs** (one multiply-accumulate is two
floating-point operations).  ``torch.utils.flop_counter``'s formulas already
count this way (``mm``: ``2 * m * n * k``); :func:`forward_table` (``gonprof
info``) counts with the same counter, so its figures are the profiler's.

Why not ``torch.utils.flop_counter.FlopCounterMode`` itself: in torch 2.14 it
raises ``RuntimeError: A leaf node was passed to _will_engine_execute_node``
(pytorch issue 131753) when a step calls ``torch.autograd.grad`` with respect
to a leaf input, which is exactly what GON's inner loop, DCD's Langevin
refinement and the WGAN-GP penalty do.  The failure comes from its
``ModuleTracker``, which hangs ``register_multi_grad_hook`` on module inputs.
:class:`FlopCounter` instead

- counts with a ``TorchDispatchMode`` of its own over the same formula
  registry (``torch.utils.flop_counter.flop_registry``), decomposing ops that
  have no formula the same way ``FlopCounterMode`` does;
- attributes forward ops to the innermost running module through global
  module forward pre/post hooks, and backward ops to the module whose forward
  created the autograd node being executed (a node-creation hook tags every
  node with the running module; nodes created during a double backward inherit
  the tag of the node whose backward created them);
- never touches the autograd engine, so ``autograd.grad`` w.r.t. leaves,
  ``create_graph=True`` and double backward all count.

Ops that ran without a formula are never silently dropped: arithmetic ones
(``aten.leaky_relu``, ``aten.add``, the optimizer's ``_foreach_*`` ops, norm
helpers, ...) are listed in ``uncounted_ops`` with their call counts; ops that
do no arithmetic (views, copies, allocation, fills, and ``profiler.*`` markers such as
``profiler._record_function_enter_new``) in ``no_arithmetic_ops``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gonprof.measure.instrument import Instrument
from gonprof.records import OUTSIDE_PHASES, FlopFigures, ModuleFlops

if TYPE_CHECKING:
    from torch._ops import OpOverload

_NODE_KEY = "gonprof_module"

#: Ops (by packet name without the ``aten.`` prefix) that do no arithmetic.
NO_ARITHMETIC = frozenset(
    """
    detach detach_ alias lift_fresh lift_fresh_copy clone copy_ copy _to_copy to _copy_from
    _copy_from_and_resize empty empty_like empty_strided new_empty new_empty_strided zeros
    zeros_like new_zeros ones ones_like new_ones full full_like new_full fill fill_ zero_
    scalar_tensor _local_scalar_dense item set_ resize_ resize_as_ contiguous t transpose
    view _unsafe_view reshape expand permute squeeze unsqueeze select slice as_strided
    _reshape_alias unbind split split_with_sizes chunk narrow flatten unflatten
    cat stack index_select gather constant_pad_nd _has_compatible_shallow_copy_type
    arange linspace eye randn rand randint randperm normal normal_ uniform_ bernoulli_
    bernoulli random_ empty_permuted _unsafe_index slice_scatter select_scatter
    as_strided_scatter repeat masked_fill masked_fill_ where index_put_ index_put
    _foreach_zero_ _foreach_copy_ _foreach_fill_ is_same_size is_nonzero
    """.split()
)

_META_OPS = frozenset(
    """
    sym_is_contiguous is_contiguous is_strides_like_format is_non_overlapping_and_dense
    size sym_size stride sym_stride storage_offset sym_storage_offset numel sym_numel dim
    """.split()
)


def flop_registry() -> dict[Any, Callable[..., Any]]:
    """The formula registry this counter uses (torch's, including later registrations)."""
    from torch.utils.flop_counter import flop_registry as registry

    return dict(registry)


def op_name(func: Any) -> str:
    packet = getattr(func, "_overloadpacket", func)
    return str(packet)


def _short(name: str) -> str:
    return name.split(".", 1)[1] if name.startswith("aten.") else name


_COMPILE_HOOKS_WARNING = r"Using `torch\.compile\(module\)` when there are global hooks on modules"


class ModuleScope:
    """Names the innermost running module (of the given models) during forward.

    ``names`` maps a module to its dotted name (``"D.conv1"``); modules of
    several models are prefixed by the model's name.  Global forward hooks
    keep a stack; :attr:`current` is the innermost known module or None.
    """

    def __init__(self, models: Mapping[str, torch.nn.Module]) -> None:
        self.names: dict[int, str] = {}
        self.types: dict[str, str] = {}
        self.parent: dict[str, str | None] = {}
        self.roots: list[str] = []
        self._keep: list[torch.nn.Module] = []  # keep ids valid while we exist
        for mname, model in models.items():
            if id(model) in self.names:
                continue
            self.roots.append(mname)
            stack: list[tuple[torch.nn.Module, str, str | None]] = [(model, mname, None)]
            while stack:
                mod, fqn, par = stack.pop()
                if id(mod) in self.names:
                    continue
                self.names[id(mod)] = fqn
                self.types[fqn] = type(mod).__name__
                self.parent[fqn] = par
                self._keep.append(mod)
                for cname, child in reversed(list(mod.named_children())):
                    stack.append((child, f"{fqn}.{cname}", fqn))
        self.order = list(self.types)  # definition order (depth-first)
        self._stack: list[str | None] = []
        self._handles: list[Any] = []

    @property
    def current(self) -> str | None:
        return self._stack[-1] if self._stack else None

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        name = self.names.get(id(module))
        self._stack.append(name if name is not None else self.current)

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self._stack:
            self._stack.pop()

    def __enter__(self) -> ModuleScope:
        import warnings

        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        # torch warns that these global hooks fire for a torch.compile'd module's wrapper too; the scope
        # expects that (the wrapper is a module of the models, its original module a child of it)
        warnings.filterwarnings("ignore", message=_COMPILE_HOOKS_WARNING, category=UserWarning)
        self._warning_filter = warnings.filters[0]
        self._handles = [
            register_module_forward_pre_hook(self._pre),
            register_module_forward_hook(self._post, always_call=True),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        import warnings

        for h in self._handles:
            h.remove()
        self._handles = []
        self._stack.clear()
        try:
            cast("list[Any]", warnings.filters).remove(self._warning_filter)  # a list; typeshed says Sequence
        except (AttributeError, ValueError):
            pass

    def ancestors(self, fqn: str) -> Iterator[str]:
        cur: str | None = fqn
        while cur is not None:
            yield cur
            cur = self.parent.get(cur)


_DECOMPOSE_KEY = torch._C.DispatchKey.CompositeImplicitAutograd
#: Ops passed on whole although they could be decomposed (no arithmetic either way): ``lift_fresh`` (how
#: ``torch.tensor(data)`` enters a dispatch mode) stays visible to the live-bytes tracker below as what it is.
_KEEP_WHOLE = frozenset({torch.ops.prim.device.default, torch.ops.aten.lift_fresh.default})


def _can_decompose(func: Any) -> bool:
    """Whether ``func.decompose`` would do anything (checked once per op overload)."""
    try:
        if _DECOMPOSE_KEY in getattr(func, "py_kernels", {}):
            return True
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), _DECOMPOSE_KEY))
    except Exception:  # pragma: no cover - exotic ops: let decompose decide
        return True


def _compute_dtype(args: Any) -> str:
    """The dtype an op computes in: its first floating tensor argument's (``float32``, ``bfloat16``, ...), else
    the first tensor's; ``none`` without tensors."""
    first = None
    for a in args:
        for t in (a if isinstance(a, (list, tuple)) else (a,)):
            if isinstance(t, torch.Tensor):
                if t.is_floating_point():
                    return str(t.dtype).removeprefix("torch.")
                first = first or str(t.dtype).removeprefix("torch.")
    return first or "none"


class _CountingMode(TorchDispatchMode):
    def __init__(self, counter: FlopCounter) -> None:
        super().__init__()
        self.counter = counter
        self.info: dict[Any, tuple[str, Any, str, bool]] = {}

    def _info(self, func: Any) -> tuple[str, Any, str, bool]:
        packet = func._overloadpacket
        name = str(packet)
        formula = self.counter.registry.get(packet)
        if formula is not None:
            kind = "formula"
        else:
            short = _short(name)
            if short in _META_OPS:
                kind = "meta"
            elif getattr(func, "is_view", False) or short in NO_ARITHMETIC or name.startswith("profiler."):
                kind = "no_arithmetic"
            else:
                kind = "uncounted"
        can = formula is None and func not in _KEEP_WHOLE and _can_decompose(func)
        info = self.info[func] = (name, formula, kind, can)
        return info

    def __torch_dispatch__(self, func: OpOverload, types: Collection[type], args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        info = self.info.get(func) or self._info(func)
        if info[3]:  # no formula, but a decomposition: count its parts, as FlopCounterMode does
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        self.counter._record(info, args, kwargs, out)
        return out


class FlopCounter(Instrument):
    """Counts FLOPs of everything run inside ``with FlopCounter(models) as fc:``.

    ``models``: mapping name -> module (for per-module attribution; may be
    empty).  ``with fc.phase("sample"):`` labels the ops inside it.  After the
    block, :meth:`figures` returns a :class:`~gonprof.records.FlopFigures`.
    """

    record_field = "flops"

    def __init__(self, models: Mapping[str, torch.nn.Module] | None = None,
                 registry: Mapping[Any, Callable[..., Any]] | None = None) -> None:
        super().__init__()
        self.scope = ModuleScope(models or {})
        self.registry = dict(registry) if registry is not None else flop_registry()
        self.forward_flops = 0
        self.backward_flops = 0
        self.by_phase: dict[str | None, int] = {}
        self.by_operator: dict[str, int] = {}
        self.self_by_module: dict[str | None, list[int]] = {}
        self.uncounted: dict[str, int] = {}
        self.no_arith: dict[str, int] = {}
        self.by_dtype: dict[str, int] = {}
        self.fp32_by_operator: dict[str, int] = {}
        self._node_hook: Any = None

    # -- phases ---------------------------------------------------------------
    def _phase_started(self, name: str) -> None:
        self.by_phase.setdefault(name, 0)

    # -- context ----------------------------------------------------------------
    def _on_node(self, node: Any) -> None:
        tag = self.scope.current
        if tag is None:
            cur = torch._C._current_autograd_node()
            if cur is not None:
                # torch's stub declares Node.metadata a method; it is a dict property
                tag = cur.metadata.get(_NODE_KEY)  # type: ignore[attr-defined]
        if tag is not None:
            node.metadata[_NODE_KEY] = tag

    def __enter__(self) -> FlopCounter:
        self.scope.__enter__()
        self._node_hook = torch.autograd.graph.node_creation_hook(self._on_node)
        self._node_hook.__enter__()
        self._watch(_CountingMode(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._unwatch(*exc)
        finally:
            if self._node_hook is not None:
                self._node_hook.__exit__(*exc)
                self._node_hook = None
            self.scope.__exit__(*exc)

    # -- counting ------------------------------------------------------------------
    def _record(self, info: tuple[str, Any, str, bool], args: Any, kwargs: Any, out: Any) -> None:
        name, formula, kind, _ = info
        if formula is None:
            if kind == "uncounted":
                self.uncounted[name] = self.uncounted.get(name, 0) + 1
            elif kind == "no_arithmetic":
                self.no_arith[name] = self.no_arith.get(name, 0) + 1
            return
        flops = int(formula(*args, **kwargs, out_val=out))
        node = torch._C._current_autograd_node()
        backward = node is not None
        module = self.scope.current
        if module is None and node is not None:
            module = node.metadata.get(_NODE_KEY)  # type: ignore[attr-defined]  # a dict property (see _on_node)
        if backward:
            self.backward_flops += flops
        else:
            self.forward_flops += flops
        self.by_phase[self._phase] = self.by_phase.get(self._phase, 0) + flops
        self.by_operator[name] = self.by_operator.get(name, 0) + flops
        dtype = _compute_dtype(args)
        self.by_dtype[dtype] = self.by_dtype.get(dtype, 0) + flops
        if dtype == "float32":
            self.fp32_by_operator[name] = self.fp32_by_operator.get(name, 0) + flops
        slot = self.self_by_module.get(module)
        if slot is None:
            slot = self.self_by_module[module] = [0, 0]
        slot[1 if backward else 0] += flops

    @property
    def total_flops(self) -> int:
        return self.forward_flops + self.backward_flops

    def figures(self) -> FlopFigures:
        incl: dict[str, list[int]] = {}
        for mod, (fw, bw) in self.self_by_module.items():
            if mod is None:
                continue
            for anc in self.scope.ancestors(mod):
                slot = incl.setdefault(anc, [0, 0])
                slot[0] += fw
                slot[1] += bw
        rows = []
        for fqn in self.scope.order:
            fw, bw = incl.get(fqn, (0, 0))
            if fw or bw or fqn in self.scope.roots:
                rows.append(ModuleFlops(fqn, self.scope.types[fqn], fw, bw))
        inside = sum(sum(incl.get(r, (0, 0))) for r in self.scope.roots)
        by_phase: dict[str, int] = {}
        if self.phases_used:
            for k, v in self.by_phase.items():
                key = OUTSIDE_PHASES if k is None else k
                by_phase[key] = by_phase.get(key, 0) + v
        return FlopFigures(
            flops_per_step=self.total_flops,
            forward_flops=self.forward_flops,
            backward_flops=self.backward_flops,
            flops_by_phase=by_phase,
            flops_by_operator=dict(sorted(self.by_operator.items())),
            flops_by_module=tuple(rows),
            flops_outside_modules=self.total_flops - inside,
            uncounted_ops=dict(sorted(self.uncounted.items())),
            no_arithmetic_ops=dict(sorted(self.no_arith.items())),
            flops_by_dtype=dict(sorted(self.by_dtype.items())),
            float32_flops_by_operator=dict(sorted(self.fp32_by_operator.items())),
        )


def count_flops(fn: Any, *args: Any, models: Mapping[str, torch.nn.Module] | None = None, **kwargs: Any) -> FlopFigures:
    """Run ``fn(*args, **kwargs)`` once under a :class:`FlopCounter`; return its figures."""
    with FlopCounter(models) as fc:
        fn(*args, **kwargs)
    return fc.figures()


# ---------------------------------------------------------------------------
# per-module forward table (for `gonprof info`)
# ---------------------------------------------------------------------------

FORWARD_NOTE = (
    "forward FLOPs counted by gonprof's dispatch counter over torch.utils.flop_counter's formulas "
    "(FLOPs = 2 x MACs), the counter `gonprof profile` uses; batch of the given input shape, eval mode; "
    "per-module parameters from fvcore.nn.parameter_count; ops with no formula are listed, not counted"
)


@dataclass(frozen=True)
class ForwardRow:
    module: str  # dotted name; "" is the whole model
    module_type: str
    depth: int
    output_shape: tuple[int, ...] | None
    params: int  # inclusive of submodules
    forward_flops: int  # inclusive of submodules


@dataclass(frozen=True)
class ForwardTable:
    rows: tuple[ForwardRow, ...]
    input_shape: tuple[int, ...]
    total_params: int
    total_forward_flops: int
    unsupported_ops: dict[str, int] = field(default_factory=dict)  # op -> calls with no FLOP formula
    note: str = FORWARD_NOTE


def _first_shape(out: Any) -> tuple[int, ...] | None:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (list, tuple)):
        for o in out:
            s = _first_shape(o)
            if s is not None:
                return s
    if isinstance(out, Mapping):
        for o in out.values():
            s = _first_shape(o)
            if s is not None:
                return s
    return None


_ROOT = "model"


def forward_table(model: torch.nn.Module, input_shape: Sequence[int] | torch.Tensor) -> ForwardTable:
    """Per-module forward table: name, type, output shape, params, forward FLOPs.

    The forward runs once under :class:`FlopCounter` (the profiler's counter, so
    ``gonprof info`` and ``gonprof profile`` agree to the FLOP); parameters per
    module come from ``fvcore.nn.parameter_count``.  ``input_shape`` is the full
    input shape including the batch dimension (or an input tensor).  The model
    runs in eval mode under ``no_grad``; its training flag is restored afterwards.
    """
    with _quiet_warnings():  # fvcore's import calls the deprecated torch.jit.script
        from fvcore.nn import parameter_count

    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = input_shape if isinstance(input_shape, torch.Tensor) else torch.randn(*input_shape, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    shapes: dict[int, tuple[int, ...] | None] = {}

    def post(mod: torch.nn.Module, args: Any, out: Any) -> None:
        shapes[id(mod)] = _first_shape(out)

    handles = [m.register_forward_hook(post) for m in model.modules()]
    try:
        with torch.no_grad(), FlopCounter({_ROOT: model}) as fc:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    figures = fc.figures()
    flops = {("" if m.module == _ROOT else m.module[len(_ROOT) + 1:]): m.forward_flops for m in figures.flops_by_module}
    params = parameter_count(model)
    rows = tuple(
        ForwardRow(module=name, module_type=type(mod).__name__, depth=0 if name == "" else name.count(".") + 1,
                   output_shape=shapes.get(id(mod)), params=int(params.get(name, 0)),
                   forward_flops=int(flops.get(name, 0)))
        for name, mod in model.named_modules()
    )
    return ForwardTable(rows=rows, input_shape=tuple(x.shape), total_params=int(params.get("", 0)),
                        total_forward_flops=figures.forward_flops, unsupported_ops=dict(figures.uncounted_ops))


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
