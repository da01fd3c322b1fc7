"""The shape every algorithm module fills in, and the checks they share.

An algorithm is described once, by a spec. Most are elementwise, an :class:`AlgorithmSpec`: its hyperparameters (a
frozen dataclass with torch's names and defaults), the state slots it keeps, the per-step scalars computed on the host
in float64, and the elementwise ``reference_update`` written against an array namespace ``xp`` (NumPy or torch). A
closure-driven method (L-BFGS) is a :class:`ClosureSpec` instead: the same names, hyperparameters, conventions and
documentation, and a step that evaluates the loss through a closure. ``spec.elementwise`` tells them apart. The
fronts, the kernels' tests, the CLI and the docs all read the same spec.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "AlgorithmSpec",
    "ClosureSpec",
    "Hyperparams",
    "Spec",
    "cast_scalars",
    "check_bool",
    "check_choice",
    "check_real",
]


def _as_real(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a real number (or a one-element array/tensor), else raise TypeError."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes, complex)):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    if isinstance(value, numbers.Real):
        return float(value)
    size = getattr(value, "size", None)
    numel = value.numel() if hasattr(value, "numel") else size
    if numel == 1 and hasattr(value, "item"):
        item = value.item()
        if isinstance(item, numbers.Real) and not isinstance(item, bool):
            return float(item)
    raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    label: str | None = None,
) -> float:
    """Check that ``value`` is a finite real number in the given interval and return it as a float.

    ``label`` is what a message calls the value (``"beta parameter at index 0"``, as torch says it); by default
    ``"<name> value"``, so a message reads ``Invalid lr value: -0.1; allowed range is [0.0, inf]``.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite or outside the interval; the message names the argument, the value
            and the allowed range.
    """
    x = _as_real(name, value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    allowed = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    what = label or f"{name} value"
    if not math.isfinite(x):
        raise ValueError(f"Invalid {what}: {value!r}; it must be a finite number in {allowed}")
    bad_low = low is not None and (x < low or (low_open and x == low))
    bad_high = high is not None and (x > high or (high_open and x == high))
    if bad_low or bad_high:
        raise ValueError(f"Invalid {what}: {value!r}; allowed range is {allowed}")
    return x


def check_bool(name: str, value: Any) -> bool:
    """Check that ``value`` is a bool (NumPy's bool included) and return it."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Invalid {name} value: {value!r}; allowed values are {', '.join(map(repr, choices))}")
    return value


def check_betas(value: Any, *, high_open: bool = True) -> tuple[float, float]:
    """Check a ``betas`` pair: two reals in [0, 1) (or [0, 1] with ``high_open=False``)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"betas must be a pair of numbers (beta1, beta2), got {value!r}")
    return (
        check_real("betas[0]", value[0], low=0.0, high=1.0, high_open=high_open, label="beta parameter at index 0"),
        check_real("betas[1]", value[1], low=0.0, high=1.0, high_open=high_open, label="beta parameter at index 1"),
    )


@dataclass(frozen=True)
class Hyperparams:
    """Base of every algorithm's hyperparameter dataclass.

    Subclasses declare fields in torch's positional order (``dataclasses.KW_ONLY`` marks torch's ``*``) and
    implement :meth:`validate`, which raises a clear error and returns the normalised values.
    """

    def validate(self) -> Hyperparams:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_group(cls, group: Mapping[str, Any]) -> Hyperparams:
        """Build and validate the hyperparameters from a param-group dict (extra keys are ignored)."""
        return cls(**{name: group[name] for name in cls.names() if name in group}).validate()

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_ABSENT = object()
_SCALARS = (int, float, bool, str, type(None))


def _value_key(value: Any) -> Any:
    """A hashable key that changes whenever ``value`` could validate differently, or None if there is none (an array
    or tensor may change in place, so it is never cached)."""
    if value is _ABSENT or type(value) in _SCALARS:
        return (type(value), value)
    if type(value) is tuple and all(type(v) in _SCALARS for v in value):
        return (tuple, tuple((type(v), v) for v in value))
    return None


class HyperparamsCache:
    """Validated hyperparameters per param group, validated again only when one of the group's values changes.

    The fronts read every group's hyperparameters on every step; validating them each time is most of a small
    step's cost. A group holding an array or tensor value (a tensor ``lr`` that a scheduler fills in place) is
    validated every time.
    """

    def __init__(self, cls: type[Hyperparams]) -> None:
        self._cls = cls
        self._names = cls.names()
        self._last: dict[int, tuple[tuple[Any, ...], Hyperparams]] = {}

    def get(self, group: Mapping[str, Any]) -> Hyperparams:
        key = tuple(_value_key(group.get(name, _ABSENT)) for name in self._names)
        cached = self._last.get(id(group))
        if cached is not None and None not in key and cached[0] == key:
            return cached[1]
        hp = self._cls.from_group(group)
        if None not in key:
            self._last[id(group)] = (key, hp)
        return hp


def cast_scalars(s: NamedTuple, ctype: Callable[[float], Any]) -> NamedTuple:
    """Cast every float field of a scalars tuple once to the compute dtype; flags (bool, int) stay as they are."""
    return type(s)(*(ctype(v) if type(v) is float else v for v in s))


def _no_host(hp: Any) -> dict[str, float]:
    return {}


def _same_host(hp: Any, step: int, host: dict[str, float]) -> dict[str, float]:
    return host


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What every algorithm states, whatever drives its step: its names, hyperparameters, documentation and
    conventions. :class:`AlgorithmSpec` (an elementwise rule the engine runs) and :class:`ClosureSpec` (a method that
    evaluates the loss where it chooses) add how the step is taken.

    Consumers that need an elementwise rule (the engine, the kernels and their tests) check :attr:`elementwise`;
    everything that only names, documents or describes an algorithm (the CLI, the docs, the lab) takes any spec.

    Attributes:
        name: registry key, lower case (``"adam"``).
        title: display name, torch's class name where torch has one (``"Adam"``).
        summary: one line for tables.
        hyperparams: the frozen dataclass of hyperparameters.
        describe_rule: ``hp -> str``, the rule in force with the given values, as plain text (see :meth:`describe`).
        module: the algorithm's module; its docstring carries the rule in LaTeX and the references.
        presets: convention name -> hyperparameter overrides for the conventions whose library (or paper) has this
            algorithm and whose rule descend runs (``{}`` where its defaults are torch's).
        notes: convention name -> a sentence :meth:`describe` prints under that convention. Every convention that
            has no preset needs one, saying that the library has no such optimizer (or that descend does not run its
            variant) and which rule runs instead; a convention with a preset may have one for what is not a flag.
        torch_name: the ``torch.optim`` class with the same rule under the torch convention, or None.
        elementwise: True for an :class:`AlgorithmSpec`, False for a :class:`ClosureSpec` (a class attribute).
        param_ndim: the number of dimensions every parameter must have (Muon's 2), or None for any.
    """

    elementwise: ClassVar[bool]

    name: str
    title: str
    summary: str
    hyperparams: type[Hyperparams]
    describe_rule: Callable[[Any], str]
    module: ModuleType
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    torch_name: str | None = None
    param_ndim: int | None = None

    def __post_init__(self) -> None:
        from descend.algorithms.conventions import CONVENTIONS

        unknown = sorted((set(self.presets) | set(self.notes)) - set(CONVENTIONS))
        if unknown:
            raise ValueError(f"{self.title}: unknown convention(s) {', '.join(unknown)}")
        silent = [c for c in CONVENTIONS if c not in self.presets and c not in self.notes]
        if silent:
            raise ValueError(
                f"{self.title} has neither a preset nor a note for the convention(s) {', '.join(silent)}: each "
                "convention must either set this library's variant or say that it has none and which rule runs"
            )

    def check_shape(self, shape: tuple[int, ...], shown: Any = None) -> None:
        """Refuse a parameter whose number of dimensions is not :attr:`param_ndim` (torch's message for Muon).

        Args:
            shape: the parameter's shape.
            shown: how the message shows it (torch's ``torch.Size([...])``); the shape itself by default.
        """
        if self.param_ndim is not None and len(shape) != self.param_ndim:
            raise ValueError(
                f"{self.title} only supports {self.param_ndim}D parameters whereas we found a parameter with size: "
                f"{shape if shown is None else shown}"
            )

    def follows(self, convention: str) -> bool:
        """Whether ``convention`` has a preset for this algorithm: its library (or paper) has it and descend runs
        that library's rule with its defaults. False means the library has no such optimizer (or variant); the
        note (:meth:`note`) says which rule runs instead."""
        from descend.algorithms.conventions import check_convention

        return check_convention(convention) in self.presets

    def note(self, convention: str) -> str | None:
        """What :meth:`describe` says about ``convention`` before the rule: why there is no such variant and what
        runs instead, or what differs and is not a flag; None if there is nothing to say."""
        from descend.algorithms.conventions import check_convention

        return self.notes.get(check_convention(convention))

    def describe(self, hp: Hyperparams | None = None, convention: str | None = None) -> str:
        """The rule in force as plain text: for ``hp``, or for the defaults of ``convention`` when ``hp`` is None.

        When a convention is named (or ``hp`` is None, which means the "torch" convention), the text starts with what
        that convention means for this algorithm where there is something to say: that the library has no such
        optimizer and which rule runs instead, or what differs from the library and is not a flag.
        """
        if hp is None:
            convention = convention or "torch"
            hp = self.make(convention)
        rule = self.describe_rule(hp)
        if convention is None:
            return rule
        note = self.note(convention)
        if note is None:
            return rule
        head = f"Note ({convention})" if self.follows(convention) else f"Not available under {convention}"
        return f"{head}: {note}.\n{rule}"

    def defaults(self, convention: str = "torch") -> dict[str, Any]:
        """The hyperparameter defaults under ``convention``: the dataclass defaults, then the preset's overrides."""
        from descend.algorithms.conventions import check_convention

        check_convention(convention)
        base = {f.name: f.default for f in dataclasses.fields(self.hyperparams)}
        base.update(self.presets.get(convention, {}))
        return base

    def make(self, convention: str = "torch", **explicit: Any) -> Hyperparams:
        """Validated hyperparameters: the convention's defaults, overridden by the arguments given explicitly."""
        unknown = sorted(set(explicit) - set(self.hyperparams.names()))
        if unknown:
            raise TypeError(
                f"{self.title} got unexpected argument(s) {', '.join(unknown)}; "
                f"its hyperparameters are {', '.join(self.hyperparams.names())}"
            )
        values = self.defaults(convention)
        values.update(explicit)
        return self.hyperparams(**values).validate()


@dataclass(frozen=True, kw_only=True)
class AlgorithmSpec(Spec):
    """An elementwise rule: per-step scalars computed on the host in float64 and an in-place ``reference_update``
    that the engine runs (or the fused kernel that restates it) on each parameter and its state slots.

    Attributes:
        state_slots: ``hp -> tuple of array-valued state keys``, in torch's names (``step`` is not listed): every
            slot the algorithm may keep under ``hp`` (:meth:`slots_for` says which a given parameter keeps).
        init_state: ``(xp, param, hp) -> dict`` of fresh array slots, typed like ``param`` and shaped as
            :meth:`slots_for` says (like ``param`` unless :attr:`state_shapes` says otherwise).
        scalars: ``(hp, step, host, first) -> NamedTuple`` of per-step quantities computed in float64 on the host:
            ``step`` is the parameter's step number (0 for an algorithm that keeps none), ``host`` its host scalars
            after :attr:`advance_host`, ``first`` whether this is its first update (its state is new); a
            :attr:`whole_tensor` rule's also take ``shape=`` and one with :attr:`scalars_by_dtype` ``dtype=`` (see
            :meth:`step_scalars`).
        reference_update: ``(xp, param, grad, state, s) -> None``, the in-place rule for one whole parameter.
        has_step: whether the state keeps a ``step`` count (torch's SGD keeps none).
        host_slots: ``hp -> dict`` of scalar state kept on the host (NAdam's ``mu_product``) with initial values.
        advance_host: ``(hp, step, host) -> host`` updates the host scalars for this step.
        host_for_scalars: which host scalars a step's ``scalars`` read: ``"after"`` this step's
            :attr:`advance_host` (NAdam's product includes this step's factor) or ``"before"`` it (ASGD's step uses the
            rate the previous step stored).
        full_state: hyperparameters under which the algorithm keeps every state slot it can (AMSGrad's maximum,
            a centered average), for tests that must see every slot.
        whole_tensor: whether the rule reads each parameter whole rather than element by element (Muon's
            orthogonalisation multiplies matrices, Adafactor's second moment averages rows and columns): its
            ``scalars`` also take the parameter's shape (``shape=``, see :meth:`step_scalars`), it has no
            multi-tensor form, only a shaped kernel body runs it (:func:`descend.kernels.shaped`; Muon has none),
            and a parameter is never updated in pieces (a DTensor's shard, a complex tensor's real view).
        state_shapes: ``(hp, param shape) -> {slot: shape}``, the slots a parameter of that shape keeps and their
            shapes, in the order :attr:`init_state` makes them; None (the default) means every slot of
            :attr:`state_slots`, shaped like the parameter (Adafactor's row and column averages are not). Only a
            :attr:`whole_tensor` rule may have it.
        scalars_by_dtype: whether :attr:`scalars` takes ``dtype=`` (Adafactor's default epsilon is the dtype's).
    """

    elementwise: ClassVar[bool] = True

    state_slots: Callable[[Any], tuple[str, ...]]
    init_state: Callable[[ModuleType, Any, Any], dict[str, Any]]
    scalars: Callable[..., NamedTuple]
    reference_update: Callable[..., None]
    has_step: bool = True
    host_slots: Callable[[Any], dict[str, float]] = _no_host
    advance_host: Callable[[Any, int, dict[str, float]], dict[str, float]] = _same_host
    full_state: Mapping[str, Any] = field(default_factory=dict)
    host_for_scalars: str = "after"
    whole_tensor: bool = False
    state_shapes: Callable[[Any, tuple[int, ...]], dict[str, tuple[int, ...]]] | None = None
    scalars_by_dtype: bool = False

    def __post_init__(self) -> None:
        if self.state_shapes is not None and not self.whole_tensor:
            raise ValueError(
                f"{self.title}: a spec with state_shapes updates whole tensors; it must set whole_tensor=True"
            )
        super().__post_init__()

    def slots_for(self, hp: Hyperparams, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The state slots a parameter of ``shape`` keeps under ``hp``, each with its shape, in torch's order."""
        if self.state_shapes is None:
            shape = tuple(shape)
            return {k: shape for k in self.state_slots(hp)}
        return self.state_shapes(hp, tuple(shape))

    def step_scalars(
        self, hp: Hyperparams, step: int, host: dict[str, float], first: bool, *, shape: tuple[int, ...], dtype: str
    ) -> NamedTuple:
        """:attr:`scalars` for one parameter of ``shape`` stored in ``dtype`` (``"float32"``, ``"float64"``,
        ``"bfloat16"``, ``"float16"``): only a :attr:`whole_tensor` rule's depend on the shape, and only one with
        :attr:`scalars_by_dtype` on the dtype."""
        extra: dict[str, Any] = {}
        if self.whole_tensor:
            extra["shape"] = tuple(shape)
        if self.scalars_by_dtype:
            extra["dtype"] = dtype
        return self.scalars(hp, step, host, first, **extra)


@dataclass(frozen=True, kw_only=True)
class ClosureSpec(Spec):
    """A closure-driven method: not elementwise, and not run by the engine. Its step treats every parameter as one
    flat vector and evaluates the loss and gradient (through the caller's closure) at points it chooses, as many
    times as it needs; the fronts hand it a closure and the vector operations on their arrays (see
    :class:`descend.algorithms.lbfgs.Flat`).

    Attributes:
        step: ``(flat, hp, state) -> (loss, new_state)``: one ``step(closure)`` call. ``flat`` gives the closure and
            the vector operations, ``state`` is the state before the step (read, never changed); it returns the
            loss of the first evaluation, as the closure gave it, and the whole state after the step, for the front
            to commit once the step has succeeded.
        state_keys: every key the state may hold, in the order torch's class creates them.
        state_doc: state key -> what it holds, for the documentation.
        check_state: ``(entry, flat) -> None``: raise a ValueError naming what does not fit if ``entry`` (a saved
            state) cannot be the state of these parameters.
        one_iteration: hyperparameters under which one ``step`` is one iteration of the method (one gradient
            evaluation without a line search), for the lab and the pictures, which compare optimizers step for step.
    """

    elementwise: ClassVar[bool] = False

    step: Callable[[Any, Any, Mapping[str, Any]], tuple[Any, dict[str, Any]]]
    state_keys: tuple[str, ...]
    state_doc: Mapping[str, str]
    check_state: Callable[[Mapping[str, Any], Any], None]
    one_iteration: Mapping[str, Any] = field(default_factory=dict)
