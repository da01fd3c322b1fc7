"""One optimizer step, for both fronts: everything between "these parameters have these gradients" and "updated".

The fronts (:mod:`descend.optim` for NumPy, :mod:`descend.torch` for torch) turn their own contract into a list of
:class:`GroupWork`, one per param group, and call :meth:`Engine.step`. The engine then, for every param group:

1. **prepares** each parameter with a gradient: the state it needs (created, not yet stored), its next step count and
   host scalars (NAdam's ``mu_product``) computed out of place, the per-step scalars, and the choice between the fused
   kernel, the multi-tensor path and the reference rule by one rule (:meth:`Engine._route`,
   :meth:`Engine._multi`); everything that can be refused is refused here (the state slots and their shapes are the
   spec's ``slots_for`` the parameter's shape: its own shape unless the algorithm keeps reduced state, as Adafactor's
   row and column averages);
2. applies ``nan_policy`` to every gradient of every group;
3. **computes** the rule for the parameters the kernel does not take, into new tensors: one tensor at a time on
   working copies (the reference), or a set of tensors at a time with multi-tensor operations
   (:mod:`descend.engine.foreach`);
4. **writes**: runs the kernel jobs (checked whole before the first one runs), stores the computed results, and
   commits new state and counters.

Nothing is written before step 4, and nothing in step 4 can be refused, so a step that raises leaves every param and
state array as it was. A group in its steady state may come as a ready :class:`Prepared` from the kind's plan (the
torch front's, see :mod:`descend.engine.plan`), which gives the same bits with less work per tensor.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from descend import kernels
from descend.algorithms._spec import AlgorithmSpec, Hyperparams, cast_scalars
from descend.engine import lowbit_step
from descend.engine.arrays import ArrayKind, fused_refusal, operand_refusal
from descend.engine.memory import check_overlaps, check_state, check_writable, check_written
from descend.kernels._layout import KERNELS
from descend.nonfinite import first_nonfinite, refusal

__all__ = ["Engine", "GroupWork", "Item", "Prepared"]


class Item:
    """One parameter to update: where the front keeps its state (``key``), the arrays, and its state dict (None if it
    has none yet). ``index`` is its position over all groups, for messages."""

    __slots__ = ("grad", "index", "key", "param", "state")

    def __init__(self, key: Any, param: Any, grad: Any, state: dict | None, index: int) -> None:
        self.key, self.param, self.grad, self.state, self.index = key, param, grad, state, index


@dataclass
class GroupWork:
    """A param group's share of a step: its validated hyperparameters, its backend, and its items (or a ready
    :class:`Prepared` from a plan). ``spec`` is the group's algorithm where it is not the engine's own (an optimizer
    that runs one algorithm on some groups and another on the rest steps them all in one atomic step)."""

    hp: Hyperparams
    backend: str
    items: list[Item] | Callable[[], list[Item]] = field(default_factory=list)  # or a callable making them
    prepared: Prepared | None = None
    on_done: Callable[[], None] | None = None  # called after the group's writes (a front records a plan)
    spec: AlgorithmSpec | None = None  # None: the engine's


@dataclass
class Prepared:
    """A group's step, checked and ready to write.

    Attributes:
        jobs: kernel calls, as :func:`descend.kernels.job` builds them.
        reference: per parameter the reference runs for, ``(pairs, compute)``: ``compute()`` returns the working
            copies to store, and ``pairs`` the arrays they go to; per set of parameters on the multi-tensor path,
            ``(None, compute)``: ``compute()`` returns the write that stores its results.
        commits: callables run last, storing new state and counters; they cannot fail.
        checks: per parameter with a gradient, ``(index, gradient, address)`` for the finite check, the address
            being ``(data address, element count, dtype name)`` where the kernels can read it, else None.
        keep: objects that must stay alive until the writes are done (gradients whose addresses the jobs hold).
        written: the parameters the jobs write in place, whose versions the kind advances once the writes are done
            (:meth:`~descend.engine.arrays.ArrayKind.mark_written`; state tensors, which an autograd graph rarely
            holds, are left as torch's fused step leaves them, for speed).
    """

    jobs: list = field(default_factory=list)
    reference: list = field(default_factory=list)
    commits: list = field(default_factory=list)
    checks: list = field(default_factory=list)  # per gradient: (param index, gradient, where the kernel reads it)
    keep: list = field(default_factory=list)
    written: list = field(default_factory=list)
    optimistic: bool = False  # the kernel's own checks decide: if it refuses, the group is prepared again in full
    items: Callable[[], list[Item]] | None = None  # where a plan prepared it: the items to prepare it again from

    def finish_steady(
        self, kind: ArrayKind, nan_policy: str, indices: Sequence[int], grads: list, states: list, step: Any, host: dict
    ) -> Prepared:
        """A steady-state group's last touches: the finite check of its gradients unless NaN and inf propagate,
        and, once the writes are done, every parameter's counters stored."""
        if nan_policy != "propagate":
            self.checks = [(i, g, kind.nonfinite_address(g)) for i, g in zip(indices, grads)]

        def commit() -> None:
            for st in states:
                kind.store_counters(st, step, host)

        self.commits.append(commit)
        return self


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _hold_steps() -> None:
    """Before a fork: wait for the steps other threads are running, so that the child gets whole steps and free
    locks (a lock held by a thread that does not exist in the child would never be released there)."""
    for engine in list(_ENGINES):
        engine.lock.acquire()


def _release_steps() -> None:
    for engine in list(_ENGINES):
        try:
            engine.lock.release()
        except RuntimeError:  # an engine made between the fork's two handlers
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_hold_steps, after_in_parent=_release_steps, after_in_child=_release_steps)


class Engine:
    """The step of one optimizer: its algorithm, its array kind and its options.

    Args:
        spec: the algorithm.
        kind: the array kind of its parameters.
        nan_policy: ``"propagate"``, ``"skip"`` or ``"raise"`` (see :mod:`descend.nonfinite`).
        states: a callable giving the front's state mapping (param key -> state dict), where new state goes.
        state_dtype: passed to ``kind.new_state`` (the torch front's float32 state for 16-bit params).
        fmt: a :class:`descend.lowbit.StateFormat` for low-bit storage, or None; the parameters it applies to take
            the step of :mod:`descend.engine.lowbit_step`.
        threads: a callable giving the kernel's thread count for a step (0: the kernels' default).
    """

    def __init__(
        self,
        spec: AlgorithmSpec,
        kind: ArrayKind,
        states: Callable[[], Any],
        *,
        nan_policy: str = "propagate",
        state_dtype: Any = None,
        fmt: Any = None,
        threads: Callable[[], int] = lambda: 0,
    ) -> None:
        if fmt is not None and (spec.name not in KERNELS or spec.whole_tensor):
            why = (
                "has no fused kernel, which low-bit state runs in"
                if spec.name not in KERNELS
                else "reduces over whole tensors and keeps no low-bit state"
            )
            elementwise = sorted(name for name, kernel in KERNELS.items() if not kernel.shaped)
            raise ValueError(
                f"{spec.title} {why}: state_dtype={fmt.dtype!r} applies to {', '.join(elementwise)}; "
                "use state_dtype=None"
            )
        self.spec = spec
        self.fmt = fmt
        self.kind = kind
        self.states = states
        self.nan_policy = nan_policy
        self.state_dtype = state_dtype
        self.threads = threads
        self.skipped_steps = 0
        # One step at a time per optimizer: two threads stepping the same optimizer run one after the other, so no
        # counter update is lost and no array is read while another step writes it.
        self.lock = threading.RLock()
        _ENGINES.add(self)

    # -- the step ---------------------------------------------------------------------------------------------------

    def step(self, groups: Sequence[GroupWork]) -> bool:
        """Update every group; False (and nothing changed) if ``nan_policy="skip"`` skipped the step.

        Raises:
            ValueError, TypeError: something was refused; nothing was changed.
        """
        prepared = [g.prepared if g.prepared is not None else self.prepare(g) for g in groups]
        if self.nan_policy != "propagate" and not self._finite(prepared):
            return False
        results = [[entry[1]() for entry in p.reference] for p in prepared]
        ran: list[bool] = []  # the kernels append to it once they have run
        try:
            try:
                kernels.run([job for p in prepared for job in p.jobs], self.threads(), ran)
            except (ValueError, TypeError):  # refused before anything ran
                if ran or not any(p.optimistic for p in prepared):
                    raise
                redo = [p.optimistic for p in prepared]
                prepared = [
                    (self.prepare(g if p.items is None else replace(g, items=p.items)) if again else p)
                    for g, p, again in zip(groups, prepared, redo)
                ]
                results = [
                    [entry[1]() for entry in p.reference] if again else r
                    for p, r, again in zip(prepared, results, redo)
                ]
                kernels.run([job for p in prepared for job in p.jobs], self.threads(), ran)
            ran.append(True)
        except BaseException:
            if ran:  # an interrupt after the kernel ran: the step is finished, then the interrupt goes on
                self._write(prepared, results, groups)
            raise
        self._write(prepared, results, groups)
        return True

    def _write(self, prepared: list[Prepared], results: list[list], groups: Sequence[GroupWork]) -> None:
        """Store the reference's results, commit state and counters, and tell the fronts. Every write stores values
        computed before (it can be done twice), so an exception arriving between two writes (a KeyboardInterrupt, a
        signal handler's) does not leave the step half done: the writes are finished, then it is raised."""
        kind = self.kind
        actions: list[Callable[[], Any]] = []
        for p, outputs in zip(prepared, results):
            for entry, out in zip(p.reference, outputs):
                if entry[0] is None:  # a multi-tensor set: its results store themselves, in one batch
                    actions.append(out)
                    continue
                write = entry[2] if len(entry) > 2 else kind.write_back  # low-bit state has a write of its own
                actions += [lambda dst=dst, src=src, w=write: w(dst, src) for dst, src in zip(entry[0], out)]
            actions += p.commits
            if p.written:
                actions.append(lambda w=p.written: kind.mark_written(w))
        actions += [g.on_done for g in groups if g.on_done is not None]
        error: BaseException | None = None
        done, failed = 0, -1
        while done < len(actions):
            try:
                while done < len(actions):
                    actions[done]()
                    done += 1
            except BaseException as exc:  # noqa: BLE001 - raised once the writes are done
                error = error or exc
                if failed == done:  # it failed twice: not an interrupt but a fault of its own; go on without it
                    done += 1
                failed = done
        if error is not None:
            raise error

    def _finite(self, prepared: list[Prepared]) -> bool:
        checks = [c for p in prepared for c in p.checks]
        bad = first_nonfinite(
            list(range(len(checks))), lambda k: checks[k][2], lambda k: self.kind.has_nonfinite(checks[k][1])
        )
        if bad is None:
            return True
        if self.nan_policy == "raise":
            index, grad, _ = checks[bad]
            raise refusal(index, self.kind.shape(grad))
        self.skipped_steps += 1
        return False

    # -- one group ----------------------------------------------------------------------------------------------------

    def prepare_uniform(
        self,
        hp: Hyperparams,
        backend: str,
        params: Sequence[Any],
        grads: Sequence[Any],
        states: Sequence[dict | None],
        indices: Sequence[int],
        spec: AlgorithmSpec | None = None,
    ) -> Prepared | None:
        """A group's steady state with little Python per parameter, or None where it does not apply: every
        parameter already has all its state, at one step with the same host scalars, in one dtype, and the kind's
        arrays are checked by the kernel itself (NumPy's buffers: C-contiguous, writable, dtype, size, apart from
        the memory being written). Should the kernel refuse one, the group is prepared again in full (nothing has
        run by then). Nothing here is cached, so nothing done between steps can go unseen.

        Args:
            hp, backend: the group's hyperparameters and backend.
            params, grads, states, indices: per parameter with a gradient, its array, gradient, state dict (or
                None) and index over all groups.
            spec: the group's algorithm, if not the engine's.
        """
        spec, kind = spec or self.spec, self.kind
        if backend in ("reference", "foreach") or not params or spec.whole_tensor:
            return None  # (kernels.supports, below, says whether they are built; a whole-tensor rule's state and
            # scalars are per shape)
        if self.fmt is not None:  # (a rule of its own per group keeps no low-bit state)
            if spec is not self.spec:
                return None
            return lowbit_step.prepare_uniform(self, hp, backend, list(params), list(grads), list(states), indices)
        if not kind.kernel_checks:
            return None
        slots = spec.state_slots(hp)
        host_keys = tuple(spec.host_slots(hp))
        try:
            lists = {k: [st[k] for st in states] for k in slots}
            steps = [st["step"] for st in states] if spec.has_step else [0]
            hosts = [tuple(st[k] for k in host_keys) for st in states] if host_keys else [()]
        except (KeyError, TypeError):  # a parameter without state (None) or without some slot yet
            return None
        if steps.count(steps[0]) != len(steps) or hosts.count(hosts[0]) != len(hosts):
            return None
        dtype = kind.dtype_name(params[0])
        if not kernels.supports(spec.name, dtype or "") or not kind.all_of_dtype(params, params[0]):
            return None
        if spec.has_step:
            step = kind.next_step(states[0])
            count = kind.count(step)
        else:
            step, count = None, 0
        before = dict(zip(host_keys, hosts[0]))
        host = spec.advance_host(hp, count, before) if host_keys else {}
        seen = before if spec.host_for_scalars == "before" else host
        scalars = spec.step_scalars(
            hp, count, {k: float(v) for k, v in seen.items()}, False, shape=kind.shape(params[0]), dtype=dtype or ""
        )
        out = Prepared(optimistic=True, keep=list(grads), written=list(params))
        out.jobs.append(kernels.job(spec.name, scalars, params, grads, lists, dtype=dtype))
        return out.finish_steady(kind, self.nan_policy, indices, grads, states, step, host)

    def prepare(self, work: GroupWork) -> Prepared:
        """Check and prepare a group's step (see the module docstring); nothing is written."""
        if self.fmt is None:
            return self._prepare(work)
        items = work.items() if callable(work.items) else work.items
        check_overlaps(self.kind, [item.param for item in items], [item.index for item in items])
        native = [item for item in items if not lowbit_step.applies(self.kind, item.param)]
        out = self._prepare(replace(work, items=native)) if native else Prepared()
        lowbit = [item for item in items if lowbit_step.applies(self.kind, item.param)]
        if lowbit:
            lowbit_step.prepare(self, work, lowbit, out)
        return out

    def _prepare(self, work: GroupWork) -> Prepared:
        spec, kind, hp = work.spec or self.spec, self.kind, work.hp
        initial_host = spec.host_slots(hp)
        shaped = kernels.shaped(spec.name)
        out = Prepared()
        buckets: dict[tuple, list] = {}
        sets: dict[tuple, list] = {}  # the multi-tensor path's sets of parameters
        items = work.items() if callable(work.items) else work.items
        if kind.multi_tensor and work.backend in ("auto", "foreach") and not spec.whole_tensor:
            steady = kind.multi_tensor_steady(self, hp, work.backend, items, spec)  # all on the multi-tensor path
            if steady is not None:
                return steady
        check_overlaps(self.kind, [item.param for item in items], [item.index for item in items])
        states = self.states()
        pending = []
        for item in items:
            if item.state is None:  # a state stored since the item was made (an earlier round of this step)
                item.state = states.get(item.key)
            p, st = item.param, item.state
            kind.check_param(p, f"parameter {item.index}")
            check_writable(kind, item)
            spec.check_shape(kind.shape(p))
            if spec.whole_tensor:
                why = kind.not_whole(p)
                if why:
                    raise ValueError(
                        f"{spec.title} updates each parameter as a whole, and parameter {item.index} {why}; give it "
                        "whole (a plain tensor, or a DTensor replicated on every process)"
                    )
            current = st if st is not None else {}
            shapes = spec.slots_for(hp, kind.shape(p))
            missing = [k for k in shapes if k not in current]
            fresh = kind.new_state(spec, p, hp, missing, self.state_dtype) if missing else {}
            arrays = {k: current[k] if k in current else fresh[k] for k in shapes}
            check_state(kind, item, arrays, shapes)
            pending.append((item, current, missing, fresh, arrays))
        copies = check_written(
            kind, [(item, {k: a for k, a in arr.items() if k not in new}) for item, _, _, new, arr in pending]
        )
        for position, (item, current, missing, fresh, arrays) in enumerate(pending):
            g = item.grad
            if spec.has_step:
                native_step = kind.next_step(current)
                count = kind.count(native_step)
                first = "step" not in current
            else:
                native_step, count, first = None, 0, bool(missing)
            host_now = {k: kind.read_host(current, k, v) for k, v in initial_host.items()}
            host = spec.advance_host(hp, count, host_now) if host_now else {}
            seen = host_now if spec.host_for_scalars == "before" else host
            scalars = spec.step_scalars(
                hp,
                count,
                {k: float(v) for k, v in seen.items()},
                first,
                shape=kind.shape(item.param),
                dtype=kind.dtype_name(item.param) or "float64",
            )
            if self.nan_policy != "propagate":
                out.checks.append((item.index, g, kind.nonfinite_address(g)))
            route = self._route(work.backend, item, arrays, spec)
            if route is not None:
                copy = route[2] or position in copies
                grad = kind.contiguous_copy(g) if copy else g
                buckets.setdefault((route[:2], tuple(arrays), scalars), []).append((item, arrays, grad))
            elif self._multi(work.backend, item, arrays, spec):
                key = (kind.multi_tensor_key(item.param, arrays), scalars)
                sets.setdefault(key, []).append((item.param, g, arrays))
            else:
                out.reference.append(self._reference(item.param, g, arrays, scalars, spec))
            out.commits.append(self._committer(item, fresh, native_step, host, spec.has_step))
        for ((dtype, state_dtype), slots, scalars), members in buckets.items():
            out.jobs.append(
                kernels.job(
                    spec.name,
                    scalars,
                    [kind.operand(item.param, True) for item, _, _ in members],
                    [kind.operand(grad, False) for _, _, grad in members],
                    {k: [kind.operand(arrays[k], True) for _, arrays, _ in members] for k in slots},
                    dtype=dtype,
                    state_dtype=state_dtype,
                    sizes=[kind.size(item.param) for item, _, _ in members],
                    shapes=[kind.shape(item.param) for item, _, _ in members] if shaped else None,
                )
            )
            out.keep += [grad for _, _, grad in members]
            out.written += [item.param for item, _, _ in members]
        for (_, scalars), members in sets.items():
            out.reference.append((None, kind.multi_tensor_step(spec, members, scalars)))
        return out

    def _route(
        self, backend: str, item: Item, arrays: Mapping[str, Any], spec: AlgorithmSpec
    ) -> tuple[str, str, bool] | None:
        """The one rule: the kernel runs a parameter when the backend allows it, the kernels are built for its
        algorithm and dtypes, and the param and every state array are dense, contiguous, aligned and writable (their
        shapes were checked against the spec's ``slots_for``). A gradient the kernel cannot read as it is (strided, a
        lazy view, all zeros without memory, or sharing memory with what is written) is read from a contiguous copy,
        which gives the same bits. Else the multi-tensor path or the reference runs the parameter (:meth:`_multi`
        says which); under ``backend="fused"`` that is an error instead. ``backend="reference"`` and ``"foreach"``
        never run the kernel.

        Returns:
            ``(dtype, state dtype, whether the gradient is copied)``, or None for the multi-tensor path or the
            reference.
        """
        if backend in ("reference", "foreach"):
            return None
        kind, p, g = self.kind, item.param, item.grad
        dtype = kind.dtype_name(p)
        state_dtypes = {kind.dtype_name(a) for a in arrays.values()}
        state_dtype = next(iter(state_dtypes)) if len(state_dtypes) == 1 else dtype if not state_dtypes else None
        why, copy = "", False
        if len(state_dtypes) > 1:
            why = f"its state arrays have different dtypes ({', '.join(sorted(map(str, state_dtypes)))})"
        elif not kernels.supports(spec.name, dtype or "", state_dtype):
            why = f"no kernel runs {spec.name} with {dtype} params and {state_dtype} state here"
        else:
            why, copy = operand_refusal(kind, p, g, arrays, dtype)
        if not why:
            return dtype, state_dtype, copy  # type: ignore[return-value]
        if backend == "fused":
            raise fused_refusal(kind, spec.title, item.index, p, why)
        return None

    def _multi(self, backend: str, item: Item, arrays: Mapping[str, Any], spec: AlgorithmSpec) -> bool:
        """For a parameter the kernel does not run, whether the multi-tensor path runs it rather than the reference:
        always under ``backend="foreach"``, and under ``"auto"`` where the kind prefers it (torch tensors that are not
        on the CPU). A rule that reads whole parameters (Muon) has no multi-tensor form: the reference runs it, and
        ``backend="foreach"`` is an error for it, as ``"fused"`` is without a kernel."""
        kind = self.kind
        if spec.whole_tensor:
            if backend == "foreach":
                raise ValueError(
                    f"backend='foreach' cannot update parameter {item.index} of {spec.title}: its rule reads each "
                    "parameter whole, so it has no multi-tensor form; use backend='auto' to run the reference for it"
                )
            return False
        return kind.multi_tensor and (
            backend == "foreach" or (backend == "auto" and kind.prefers_multi_tensor(item.param, item.grad, arrays))
        )

    def _reference(self, p: Any, g: Any, arrays: Mapping[str, Any], scalars: Any, spec: AlgorithmSpec) -> tuple:
        """The reference rule on working copies in the compute dtype; the copies are stored only at write time."""
        kind = self.kind
        name = kind.dtype_name(p) or "float64"

        def compute() -> list:
            work_p = kind.work_copy(p, name)
            work_g = kind.work_copy(g, name)
            work_state = {k: kind.work_copy(a, name) for k, a in arrays.items()}
            spec.reference_update(kind.xp, work_p, work_g, work_state, cast_scalars(scalars, kind.scalar_caster(name)))
            return [work_p, *work_state.values()]

        return [p, *arrays.values()], compute

    def _committer(
        self, item: Item, fresh: dict, native_step: Any, host: Mapping[str, Any], has_step: bool
    ) -> Callable[[], None]:
        """Store the new state and counters of ``item``: in its state dict, or in a new one (step first, then the
        host scalars, then the arrays, in torch's order) that the front's state mapping receives."""
        kind, store = self.kind, self.states

        def commit() -> None:
            st = item.state if item.state is not None else {}
            kind.store_counters(st, native_step if has_step else None, host)
            st.update(fresh)
            if item.state is None and st:
                store()[item.key] = st

        return commit
