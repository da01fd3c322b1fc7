"""``descend.torch.SparseAdam``: Adam on the entries a sparse gradient holds, as ``torch.optim.SparseAdam``.

The rule is :mod:`descend.algorithms.sparse_adam`, elementwise, and the engine runs it as any other (the fused kernel
where the tensors allow, the reference elsewhere, the same bits). What is this class's own is the sparse gradient:
each is coalesced (duplicate entries summed), the entries it holds are gathered from the parameter and both moments
into dense rows (``param[indices]``), the engine steps those rows with the gradient's values, and the rows are written
back with ``index_put_``. Entries the gradient does not hold are never read or written.

A step is atomic as every other: everything is refused before anything is written (a dense gradient with torch's
message, a gradient of another shape or dtype), the engine's step on the gathered rows writes only copies, and the
rows are written back last; a tensor listed twice in a group (which torch updates twice) has its second update in a
second round, and should that round fail, the first round's rows are put back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from descend.algorithms.sparse_adam import SPARSE_ADAM
from descend.engine import GroupWork, Item
from descend.engine.torch_arrays import COMPLEX_DTYPES, FLOAT_DTYPES, TorchKind
from descend.torch._optimizer import Optimizer
from descend.torch._options import group_backend

__all__ = ["SparseAdam", "every_entry"]

_TORCH = TorchKind()


class _Rows:
    """One parameter's share of a step: the entries its sparse gradient holds, the tensors they are read from and
    written to (the parameter and its state slots), and the gathered rows the engine updates in place (``rows``: the
    parameter's, each slot's, then the gradient's values).

    An embedding's gradient holds whole rows (one sparse dimension): these are gathered with ``index_select`` and
    written back with ``index_copy_`` on 2-D views of contiguous tensors, the fast copies; any other layout of indices,
    or a tensor that is not contiguous, goes through advanced indexing (``t[indices]``, ``index_put_``)."""

    __slots__ = ("index", "new_state", "rows", "state", "step", "targets")

    def __init__(self, param: torch.Tensor, state: dict[str, Any], new_state: bool, grad: torch.Tensor) -> None:
        self.state, self.new_state = state, new_state
        indices, values = grad._indices(), grad._values()
        tensors = [param, *(state[k] for k in SPARSE_ADAM.state_slots(None))]
        nnz = values.shape[0]
        if indices.shape[0] <= 1 and param.numel() and all(t.is_contiguous() for t in tensors):
            lead = param.shape[0] if indices.shape[0] else 1  # no sparse dimension: the whole tensor is one row
            self.targets = [t.view(lead, -1) for t in tensors]
            self.index = indices[0] if indices.shape[0] else torch.zeros(nnz, dtype=torch.long, device=values.device)
            values = values.reshape(nnz, self.targets[0].shape[1])
        else:
            if indices.shape[0] == 0:
                tensors = [t.unsqueeze(0) for t in tensors]
                indices = torch.zeros((1, nnz), dtype=torch.long, device=values.device)
            self.targets = tensors
            self.index = tuple(indices)
        self.step = _count(state.get("step", 0)) + 1
        self.rows = [self.gather(t) for t in self.targets]
        self.rows.append(values.contiguous())

    def gather(self, target: torch.Tensor) -> torch.Tensor:
        """A copy of ``target``'s entries the gradient holds."""
        if isinstance(self.index, tuple):
            return target[self.index]
        return target.index_select(0, self.index)

    def scatter(self, target: torch.Tensor, rows: torch.Tensor) -> None:
        """Write ``rows`` to ``target``'s entries the gradient holds (each once: the gradient is coalesced)."""
        if isinstance(self.index, tuple):
            target.index_put_(self.index, rows)
        else:
            target.index_copy_(0, self.index, rows)


def every_entry(grad: torch.Tensor) -> torch.Tensor:
    """``grad`` (dense) as a sparse tensor that holds every entry: SparseAdam's step then updates every entry, as the
    NumPy front does with the dense gradient (the lab trains SparseAdam on its dense problems this way)."""
    index = torch.ones(grad.shape, dtype=torch.bool, device=grad.device).nonzero().T
    return torch.sparse_coo_tensor(index, grad.reshape(-1), grad.shape, is_coalesced=True, check_invariants=True)


def _count(step: Any) -> int:
    return int(step.item()) if isinstance(step, torch.Tensor) else int(step)


class SparseAdam(Optimizer):
    """SparseAdam for torch tensors: Adam on the entries a sparse gradient holds (an embedding's looked-up rows), the
    others left as they are, with the signature, defaults, state keys (``step``, an int as torch keeps it,
    ``exp_avg``, ``exp_avg_sq``) and refusals of ``torch.optim.SparseAdam``: gradients must be sparse
    (``torch.nn.Embedding(..., sparse=True)``), parameters dense and real.

    The rule and its references are in :mod:`descend.algorithms.sparse_adam`; ``describe()`` prints it. See
    :class:`descend.torch.Optimizer` for the arguments shared by every optimizer; a low-bit ``state_dtype`` is
    refused (its blocks do not follow the rows a sparse gradient holds). Under ``torch.compile`` the step runs eagerly
    behind a graph break.
    """

    spec = SPARSE_ADAM
    torch_order = ("lr", "betas", "eps", "maximize")
    _eager_under_compile = True
    dense_gradients = False

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        if self._format is not None:
            raise ValueError(
                f"SparseAdam cannot keep state_dtype={self._format!r}: a low-bit format stores blocks of a "
                "parameter, and a sparse gradient updates scattered entries; use state_dtype=None or torch.float32"
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, as torch.optim does; sparse and complex parameters are refused with torch's messages
        (the group is not added)."""
        super().add_param_group(param_group)
        index = len(self.param_groups) - 1
        params = self.param_groups[index]["params"]
        for what, bad in (
            ("SparseAdam requires dense parameter tensors", [k for k, p in enumerate(params) if p.is_sparse]),
            ("SparseAdam does not support complex parameters", [k for k, p in enumerate(params) if p.is_complex()]),
        ):
            if bad:
                self.param_groups.pop()
                kind = "Sparse" if "dense" in what else "Complex"
                raise ValueError(f"{kind} params at indices {[[index, k] for k in bad]}: {what}")

    def _engine_step(self, hps: list[Any] | None = None) -> None:
        engine = self._engine
        with engine.lock, torch.no_grad():
            rounds: list[list[tuple[int, Any, str, list[_Rows]]]] = []
            seen: dict[int, int] = {}
            offset = 0
            for g_index, group in enumerate(self.param_groups):
                hp = self._hps.get(group) if hps is None else hps[g_index]
                backend = group_backend(self.backend, group)
                for k, p in enumerate(group["params"]):
                    if p.grad is None:
                        continue
                    r = seen.get(id(p), 0)
                    seen[id(p)] = r + 1
                    rounds += [[] for _ in range(r + 1 - len(rounds))]
                    rounds[r].append((offset + k, p, hp, backend))
                offset += len(group["params"])
            undo: list[Callable[[], Any]] = []
            try:
                for r, work in enumerate(rounds):
                    if not self._round(work, undo if r < len(rounds) - 1 else None):
                        break  # skipped: a later round holds second occurrences of this one's parameters only
            except BaseException:
                for action in reversed(undo):
                    action()
                raise

    def _round(self, work: list[tuple[int, torch.Tensor, Any, str]], undo: list | None) -> bool:
        """One round, every parameter at most once: check and gather, step the rows, then write them back. False,
        with nothing changed, where ``nan_policy="skip"`` skipped it."""
        slots = self.spec.state_slots(None)
        entries: list[tuple[torch.Tensor, _Rows]] = []
        groups: dict[tuple[int, str], GroupWork] = {}
        for index, p, hp, backend in work:
            grad = self._sparse_grad(p, index)
            state = self.state.get(p)
            new = not state
            if new:
                state = {"step": 0, **_TORCH.new_state(self.spec, p, hp, list(slots), self.state_dtype)}
            rows = _Rows(p, state, new, grad)
            entries.append((p, rows))
            if rows.rows[-1].numel() == 0:
                continue  # torch counts the step and changes nothing
            work_state = {"step": rows.step - 1, **dict(zip(slots, rows.rows[1:-1]))}
            group = groups.setdefault((id(hp), backend), GroupWork(hp, backend, []))
            group.items.append(Item(index, rows.rows[0], rows.rows[-1], work_state, index))
        if groups and not self._engine.step(list(groups.values())):
            return False  # nan_policy="skip": nothing changes, no step is counted
        self._write(entries, undo)
        return True

    def _sparse_grad(self, p: torch.Tensor, index: int) -> torch.Tensor:
        """``p``'s gradient, checked and coalesced (duplicate entries summed, as torch does before the non-linear
        update)."""
        g = p.grad
        if not g.is_sparse:
            raise RuntimeError("SparseAdam does not support dense gradients, please consider Adam instead")
        if p.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"SparseAdam updates float32, float64, bfloat16 and float16 parameters; parameter {index} has dtype "
                f"{p.dtype}"
                + (" (complex parameters are not supported, as in torch)" if p.dtype in COMPLEX_DTYPES else "")
            )
        if g.dtype != p.dtype or tuple(g.shape) != tuple(p.shape) or g.device != p.device:
            raise ValueError(
                f"a sparse gradient of dtype {g.dtype}, shape {tuple(g.shape)} on {g.device} was found for parameter "
                f"{index} of dtype {p.dtype}, shape {tuple(p.shape)} on {p.device}; they must match"
            )
        return g.coalesce()

    def _write(self, entries: list[tuple[torch.Tensor, _Rows]], undo: list[Callable[[], Any]] | None) -> None:
        """Write the stepped rows back and commit the counters. Unless this is the last round (``undo`` None), each
        write's undoing is first put in ``undo``, for a later round that fails."""
        for p, rows in entries:
            if rows.new_state:
                if undo is not None:
                    undo.append(lambda p=p: self.state.pop(p, None))
                self.state[p] = rows.state
            if rows.rows[-1].numel():
                for tensor, stepped in zip(rows.targets, rows.rows):
                    if undo is not None:
                        before = rows.gather(tensor)
                        undo.append(lambda t=tensor, r=rows, b=before: r.scatter(t, b))
                    rows.scatter(tensor, stepped)
            if undo is not None:
                old = rows.state.get("step", 0)
                undo.append(lambda st=rows.state, old=old: st.__setitem__("step", old))
            rows.state["step"] = rows.step
