"""Constructor signatures and torch's compatibility options (``foreach``, ``fused``, ``capturable``, ...).

Each ``descend.torch`` class takes torch.optim's constructor signature for its algorithm: the class states torch's
argument order (``torch_order``), the defaults are the hyperparameters' own (torch's), and descend's extra flags,
``convention=``, ``backend=``, ``nan_policy=`` and ``state_dtype=`` follow, keyword-only. A test compares every
signature with the installed torch's.

``foreach`` and ``fused`` are accepted and kept in the param groups, as torch keeps them, and choose a backend:

============================  =================================================================================
argument                      backend
============================  =================================================================================
``fused=True``                ``"fused"``: the compiled kernel, or a clear error where it cannot run
``foreach=False``             ``"reference"``: one tensor at a time, like torch's for-loop implementation
``foreach=True`` or ``None``  ``backend=`` as given (``"auto"`` by default): the grouped kernel on the CPU,
                              torch's multi-tensor operations on other devices (``"foreach"``: on every device)
============================  =================================================================================

An explicit ``backend=`` that contradicts them (``fused=True`` with ``backend="reference"``, ``foreach=False`` with
``backend="fused"``) is an error. ``fused=True`` with ``foreach=True`` or with ``differentiable=True`` is a
RuntimeError with torch's message. ``differentiable=True`` runs the group's step in torch operations that autograd
records (see :mod:`descend.torch._differentiable`). ``capturable=True`` is refused: descend keeps its step counts and
per-step scalars on the host, which a CUDA graph cannot capture.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch

from descend.algorithms._spec import AlgorithmSpec
from descend.backends import check_backend
from descend.kernels import available as fused_ready
from descend.lowbit import StateFormat

__all__ = [
    "COMPAT_OPTIONS",
    "OPTION_DEFAULTS",
    "SPARSE_GRADIENTS",
    "TENSOR_BETAS",
    "check_options",
    "group_backend",
    "signature_for",
]

# torch.optim arguments that choose an implementation rather than a rule.
COMPAT_OPTIONS: tuple[str, ...] = ("foreach", "fused", "capturable", "differentiable")

_P = inspect.Parameter


# The torch.optim classes that take betas as tensors, with torch's rules for them (both or neither a tensor; no
# tensor lr or betas with foreach=True unless capturable=True).
TENSOR_BETAS: frozenset[str] = frozenset({"Adam", "AdamW"})

# The algorithms whose torch.optim class takes sparse gradients (``_single_tensor_sgd`` and ``_single_tensor_adagrad``
# have a sparse branch); descend runs them in torch operations, see :mod:`descend.torch._differentiable`.
SPARSE_GRADIENTS: frozenset[str] = frozenset({"sgd", "adagrad"})

# torch's defaults for its implementation options.
OPTION_DEFAULTS: dict[str, Any] = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}


def signature_for(spec: AlgorithmSpec, torch_order: tuple[str, ...] | None) -> tuple[inspect.Signature, dict[str, Any]]:
    """The constructor signature of ``spec``'s class, and its compatibility options with their defaults.

    Args:
        spec: the algorithm.
        torch_order: the arguments of the torch.optim class with the same rule, in its order, ``"*"`` marking where
            its keyword-only arguments start; None for an algorithm torch does not have, whose signature follows
            its hyperparameters (and takes none of torch's implementation options). A test holds these orders to
            the installed torch's signatures; nothing is read from torch here, so a torch that adds an argument
            changes nothing at import.

    Raises:
        ValueError: ``torch_order`` names something that is neither a hyperparameter nor an option.
    """
    names = spec.hyperparams.names()
    fields = {f.name: f for f in dataclasses.fields(spec.hyperparams)}
    parameters = [_P("params", _P.POSITIONAL_OR_KEYWORD)]
    options: dict[str, Any] = {}
    if torch_order is None:  # torch has no such class, and none of its implementation options
        for f in fields.values():
            kind = _P.KEYWORD_ONLY if f.kw_only else _P.POSITIONAL_OR_KEYWORD
            parameters.append(_P(f.name, kind, default=f.default))
        torch_order = ()
    kind = _P.POSITIONAL_OR_KEYWORD
    for name in torch_order:
        if name == "*":
            kind = _P.KEYWORD_ONLY
        elif name in OPTION_DEFAULTS:
            options[name] = OPTION_DEFAULTS[name]
            parameters.append(_P(name, kind, default=OPTION_DEFAULTS[name]))
        elif name in fields:
            if any(p.name == name for p in parameters):
                continue
            parameters.append(_P(name, kind, default=fields[name].default))
        else:
            raise ValueError(f"{spec.title}: {name!r} is neither a hyperparameter nor one of {list(OPTION_DEFAULTS)}")
    taken = {p.name for p in parameters}
    parameters += [_P(name, _P.KEYWORD_ONLY, default=fields[name].default) for name in names if name not in taken]
    parameters += [
        _P("convention", _P.KEYWORD_ONLY, default="torch"),
        _P("backend", _P.KEYWORD_ONLY, default="auto"),
        _P("nan_policy", _P.KEYWORD_ONLY, default="propagate"),
        _P("state_dtype", _P.KEYWORD_ONLY, default=None),
    ]
    return inspect.Signature(parameters), options


HALF_DTYPES = (torch.bfloat16, torch.float16)


def check_state_dtype(title: str, value: Any) -> Any:
    """``state_dtype=``: None (each parameter's state takes its dtype, as in torch); ``torch.float32`` (bfloat16 and
    float16 parameters keep their state in float32; float32 and float64 parameters keep their own dtype); or a
    low-bit format for float32, bfloat16 and float16 parameters: ``torch.bfloat16`` or ``"bfloat16"`` (bfloat16
    state with stochastic rounding), ``"blockwise8"`` (8-bit blockwise state with stochastic rounding), or a
    :class:`descend.StateFormat` that says more. Returns None, torch.float32 or a StateFormat."""
    if value is None or value is torch.float32:
        return value
    if value is torch.bfloat16 or (isinstance(value, str) and value in ("bfloat16", "blockwise8")):
        return StateFormat("bfloat16" if value is torch.bfloat16 else value)
    if isinstance(value, StateFormat):
        return value
    raise ValueError(
        f"{title}: state_dtype must be None (the state takes each parameter's dtype) or torch.float32 (float32 state "
        f"for bfloat16 and float16 parameters), or a low-bit format: torch.bfloat16, 'bfloat16', 'blockwise8' or a "
        f"descend.StateFormat, got {value!r}"
    )


def check_options(title: str, options: dict[str, Any]) -> None:
    """Refuse the compatibility options descend cannot honour, with the reason, and torch's contradictions.

    Raises:
        ValueError: ``capturable=True``.
        TypeError: ``foreach`` or ``fused`` is not True, False or None.
        RuntimeError: ``fused=True`` with ``differentiable=True`` or ``foreach=True`` (torch's type and message).
    """
    if options.get("capturable"):
        raise ValueError(
            f"{title} does not support capturable=True: descend keeps step counts on the host and does not support "
            "CUDA graph capture; pass capturable=False"
        )
    for name in ("foreach", "fused"):
        value = options.get(name)
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be True, False or None, got {value!r} of type {type(value).__name__}")
    if options.get("fused") and options.get("differentiable"):
        raise RuntimeError(
            "`fused` does not support `differentiable`: the fused kernel runs outside autograd; pass fused=None with "
            "differentiable=True"
        )
    if options.get("fused") and options.get("foreach"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together; choose one (got fused=True, foreach=True)")


def group_backend(backend: str, options: dict[str, Any]) -> str:
    """The backend a group runs: ``backend=`` refined by the group's ``fused`` and ``foreach`` (see the table above).

    Raises:
        ValueError: ``backend`` is unknown, or contradicts ``fused``/``foreach``, or the fused kernels cannot run.
    """
    check_backend(backend)
    wanted = "fused" if options.get("fused") else "reference" if options.get("foreach") is False else None
    if wanted is not None and backend not in ("auto", wanted):
        source = "fused=True" if wanted == "fused" else "foreach=False"
        raise ValueError(f"{source} asks for backend {wanted!r} but backend={backend!r} was given; drop one of them")
    resolved = check_backend(wanted or backend)
    if resolved == "fused":
        ok, why = fused_ready()
        if not ok:
            raise ValueError(f"backend='fused' was requested but it cannot run: {why}")
    return resolved
