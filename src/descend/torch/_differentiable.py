"""The step in torch operations: ``differentiable=True`` and sparse gradients.

The engine's step (:mod:`descend.engine`) runs under ``torch.no_grad()`` on working copies and the fused kernels, which
autograd cannot see and which read dense memory only. Two things torch.optim supports need the step written in torch
operations instead, as torch's own single-tensor implementations are:

- ``differentiable=True``: the step is recorded by autograd, so a loss computed after it can be differentiated with
  respect to what the step read: the parameters before it (a non-leaf tensor, as torch.optim requires for this), the
  gradients (and so, through ``create_graph=True``, whatever produced them) and the state. Each parameter runs its
  algorithm's ``reference_update`` with :data:`AUTOGRAD_XP` as the array namespace: torch's own functions, out of place
  where autograd needs a tensor it saved to stay unchanged (the AMSGrad and Adamax maxima), as torch's
  ``_single_tensor_adam`` clones before its ``torch.maximum``. Like torch.optim, the step runs with gradients enabled
  only when the optimizer's defaults say ``differentiable=True``; a group without the flag steps under
  ``torch.no_grad()`` in the same operations.
- sparse gradients for SGD and Adagrad (:data:`~descend.torch._options.SPARSE_GRADIENTS`): the branches of torch's
  ``_single_tensor_sgd`` and ``_single_tensor_adagrad`` for ``grad.is_sparse``, with descend's per-step scalars
  (:func:`sparse_sgd`, :func:`sparse_adagrad`). The momentum buffer of SGD is then sparse, as torch's is.

Per-step scalars (bias corrections, step sizes) come from the spec, computed on the host in float64, so autograd does
not reach the hyperparameters: a tensor hyperparameter that requires grad is refused with a clear error (torch.optim
differentiates through ``lr`` and ``betas`` given as tensors that require grad).

Everything that can be refused is checked before any tensor changes.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch

from descend.engine import torch_xp as _xp
from descend.engine.torch_arrays import FLOAT_DTYPES, TorchKind
from descend.nonfinite import refusal

if TYPE_CHECKING:
    from descend.torch._optimizer import Optimizer

__all__ = ["AUTOGRAD_XP", "sparse_adagrad", "sparse_sgd", "step"]

_KIND = TorchKind()


def _maximum(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.maximum``, storing into ``out`` after the fact: autograd cannot record ``out=``, and a tensor it saved
    for the maximum's backward must not change afterwards, so an argument that is ``out`` is cloned first."""
    if out is None:
        return torch.maximum(a, b)
    result = torch.maximum(a.clone() if a is out else a, b.clone() if b is out else b)
    out.copy_(result)
    return out


AUTOGRAD_XP = SimpleNamespace(
    abs=torch.abs,
    divide=torch.divide,
    maximum=_maximum,
    sign=_xp.sign,
    sqrt=torch.sqrt,
    zeros_like=torch.zeros_like,
)
"""The array namespace of ``reference_update`` in a differentiable step: torch's functions (its own ``sqrt``, not the
correctly rounded one of :mod:`descend.engine.torch_xp`, which goes through NumPy and so outside autograd)."""


def sparse_sgd(param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], s: Any) -> None:
    """SGD with a sparse gradient, in torch's operations (``_single_tensor_sgd``): the momentum buffer starts as a copy
    of the (sparse) gradient and stays sparse. Weight decay is refused before (torch's ``grad.add(param)`` raises)."""
    if s.maximize:
        grad = -grad
    if s.use_momentum:
        if s.first_step:
            buf = grad.detach().clone()
            state["momentum_buffer"] = buf
        else:
            buf = state["momentum_buffer"]
            buf.mul_(s.momentum).add_(grad, alpha=s.grad_scale)
        grad = grad.add(buf, alpha=s.momentum) if s.nesterov else buf
    param.add_(grad, alpha=s.neg_lr)


def sparse_adagrad(param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], s: Any) -> None:
    """Adagrad with a sparse gradient, in torch's operations (``_single_tensor_adagrad``): the sum and the parameter
    change only at the gradient's (coalesced) indices. ``eps_root`` goes inside the root as in the dense rule."""
    if s.maximize:
        grad = -grad
    grad = grad.coalesce()  # the update is not linear in the gradient, so each index must appear once
    indices, values = grad._indices(), grad._values()
    total = state["sum"]
    total.add_(torch.sparse_coo_tensor(indices, values.pow(2), grad.shape, check_invariants=False))
    std = total.sparse_mask(grad)._values()
    if s.eps_root != 0:
        std = std + s.eps_root
    std_values = std.sqrt_().add_(s.eps)
    param.add_(
        torch.sparse_coo_tensor(indices, values / std_values, grad.shape, check_invariants=False), alpha=s.neg_clr
    )


def _check(optimizer: Optimizer, group: dict[str, Any], index: int, p: torch.Tensor) -> torch.Tensor:
    """The gradient of ``p``, checked for this path (the dense checks are the optimizer's own)."""
    title = type(optimizer).__name__
    g = p.grad
    if not g.is_sparse:
        return optimizer._checked_grad(p, optimizer.spec)
    if group.get("differentiable"):
        raise RuntimeError(
            f"{title} does not support sparse gradients with differentiable=True (parameter {index}); pass dense "
            "gradients or differentiable=False"
        )
    if group.get("fused"):
        name = "`_fused_sgd`" if optimizer.spec.name == "sgd" else "`fused`"
        raise RuntimeError(
            f"{name} does not support sparse gradients (parameter {index}); pass fused=None for sparse gradients"
        )
    if group["weight_decay"] != 0:
        # torch's Adagrad says this; torch's SGD fails in grad.add(param) with "add(sparse, dense) is not supported"
        raise RuntimeError(
            f"weight_decay option is not compatible with sparse gradients (parameter {index} has one, weight_decay="
            f"{group['weight_decay']!r}); pass weight_decay=0 or dense gradients"
        )
    if p.dtype not in FLOAT_DTYPES or g.dtype != p.dtype or g.shape != p.shape or g.device != p.device:
        raise ValueError(
            f"a sparse gradient of dtype {g.dtype}, shape {tuple(g.shape)} on {g.device} was found for parameter "
            f"{index} of dtype {p.dtype}, shape {tuple(p.shape)} on {p.device}; they must match"
        )
    return g


def _check_hyperparams(title: str, group: dict[str, Any], index: int) -> None:
    for name, value in group.items():
        values = value if isinstance(value, (tuple, list)) and name != "params" else (value,)
        for v in values:
            if isinstance(v, torch.Tensor) and v.requires_grad:
                raise ValueError(
                    f"{title}: param group {index} has {name}={value!r}, a tensor that requires grad; descend computes "
                    "its per-step scalars on the host, so a differentiable step reaches the parameters, gradients and "
                    "state but not the hyperparameters; pass a float or a tensor that does not require grad"
                )


def step(optimizer: Optimizer) -> None:
    """One step of every param group in torch operations (see the module docstring).

    Raises:
        ValueError, TypeError, RuntimeError: a gradient, hyperparameter or state is refused; nothing was changed.
    """
    spec, title = optimizer.spec, type(optimizer).__name__
    work = []
    offset = 0
    for k, group in enumerate(optimizer.param_groups):
        hp = optimizer._hps.get(group)
        if group.get("differentiable"):
            _check_hyperparams(title, group, k)
        items = [(offset + i, p, _check(optimizer, group, offset + i, p)) for i, p in enumerate(group["params"])]
        work.append((group, hp, [item for item in items if item[1].grad is not None]))
        offset += len(group["params"])
    if optimizer.nan_policy != "propagate":
        for index, _, g in (item for _, _, items in work for item in items):
            values = g._values() if g.is_sparse else g
            if not bool(torch.isfinite(values.detach()).all()):
                if optimizer.nan_policy == "raise":
                    raise refusal(index, tuple(g.shape))
                optimizer.skipped_steps += 1
                return
    ready = []
    for group, hp, items in work:  # the state each step needs, made before anything is written
        slots = spec.state_slots(hp)
        made = []
        for index, p, g in items:
            st = optimizer.state.get(p, {})
            for key in slots:
                value = st.get(key)
                if isinstance(value, torch.Tensor) and value.shape != p.shape:
                    raise ValueError(
                        f"the state {key!r} of parameter {index} has shape {tuple(value.shape)}, the parameter "
                        f"{tuple(p.shape)}; they must match"
                    )
            missing = [key for key in slots if key not in st]
            fresh = _KIND.new_state(spec, p, hp, missing, optimizer.state_dtype) if missing else {}
            made.append((p, g, fresh))
        ready.append((group, hp, made))
    grad_enabled = bool(optimizer.defaults.get("differentiable"))
    for group, hp, made in ready:
        with torch.set_grad_enabled(grad_enabled and bool(group.get("differentiable"))):
            _step_group(optimizer, hp, made)


def _step_group(optimizer: Optimizer, hp: Any, made: list[tuple[torch.Tensor, torch.Tensor, dict]]) -> None:
    """The writes of one group: counters, then each parameter's rule, in the order of the group."""
    spec = optimizer.spec
    slots = spec.state_slots(hp)
    initial_host = spec.host_slots(hp)
    for p, g, fresh in made:
        st = optimizer.state[p]
        if spec.has_step:
            native_step = _KIND.next_step(st)
            count, first = _KIND.count(native_step), "step" not in st
        else:
            native_step, count, first = None, 0, bool(fresh)
        host_now = {key: _KIND.read_host(st, key, value) for key, value in initial_host.items()}
        host = spec.advance_host(hp, count, host_now) if host_now else {}
        seen = host_now if spec.host_for_scalars == "before" else host
        s = spec.scalars(hp, count, {key: float(value) for key, value in seen.items()}, first)
        _KIND.store_counters(st, native_step, host)
        st.update(fresh)
        arrays = {key: st[key] for key in slots}
        if torch.is_grad_enabled():
            # out of place across steps: the graph of earlier steps keeps the state tensors it read, so this step
            # updates copies and the state dict takes them (torch.optim's differentiable state is rebound the same way
            # wherever its rule would otherwise write into a tensor autograd saved)
            arrays = {key: value.clone() for key, value in arrays.items()}
        if g.is_sparse:
            (sparse_sgd if spec.name == "sgd" else sparse_adagrad)(p, g, arrays, s)
        else:
            spec.reference_update(AUTOGRAD_XP, p, g, arrays, s)
        st.update(arrays)
