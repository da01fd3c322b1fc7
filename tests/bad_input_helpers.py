"""Shared by the bad-input tests: optimizers mid-run on either front, and byte-for-byte snapshots of them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import descend
import descend.torch as dt
from tests.shapes import shape_for, torch_grad

# -- the snapshot: params and state_dict of either front, as bytes -----------------------------------------------------


def _frozen(value: Any) -> Any:
    """A comparable, fully copied form of ``value``: arrays and tensors become (dtype, shape, bytes)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, np.ascontiguousarray(value).tobytes())
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.device.type == "meta":
            return ("meta", str(t.dtype), tuple(t.shape))
        raw = t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return ("tensor", str(t.dtype), tuple(t.shape), raw)
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_frozen(v) for v in value))
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, repr(value))


def params_of(opt: Any) -> list[Any]:
    return [p for group in opt.param_groups for p in group["params"]]


def snapshot(opt: Any) -> Any:
    """Every parameter and the whole state_dict of a NumPy or torch optimizer, copied as bytes."""
    return _frozen(params_of(opt)), _frozen(opt.state_dict())


def assert_unchanged(opt: Any, before: Any) -> None:
    params, state = snapshot(opt)
    assert params == before[0], "a parameter changed"
    assert state == before[1], "the optimizer's state or param groups changed"


# -- optimizers mid-run ------------------------------------------------------------------------------------------------


def numpy_opt(name: str = "adam", steps: int = 2, **kwargs: Any) -> Any:
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((2, 3)), rng.standard_normal(shape_for(name, (4,))).astype(np.float32)]
    opt = descend.OPTIMIZERS[name](params, **kwargs)
    for _ in range(steps):
        opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in params])
    return opt


def numpy_grads(opt: Any) -> list[np.ndarray]:
    return [np.full(p.shape, 0.5, p.dtype) for p in opt.params]


def torch_opt(name: str = "adam", steps: int = 2, **kwargs: Any) -> Any:
    gen = torch.Generator().manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(2, 3, generator=gen, dtype=torch.float64)),
        torch.nn.Parameter(torch.randn(shape_for(name, (4,)), generator=gen)),
    ]
    opt = dt.OPTIMIZERS[name](params, **kwargs)
    for _ in range(steps):
        for p in params:
            p.grad = torch_grad(type(opt), torch.randn(p.shape, generator=gen, dtype=p.dtype))
        opt.step()
    return opt


def torch_grads(opt: Any) -> None:
    for p in params_of(opt):
        p.grad = torch_grad(type(opt), torch.full_like(p, 0.5))


FRONTS = {"numpy": (numpy_opt, lambda opt: opt.step(numpy_grads(opt))), "torch": (torch_opt, None)}


def _torch_step(opt: Any) -> None:
    torch_grads(opt)
    opt.step()


FRONTS["torch"] = (torch_opt, _torch_step)
