"""The backend rule shared by both fronts.

``backend="auto"`` (the default) runs the fused CPU kernel for every tensor it supports, torch's multi-tensor
operations for the torch tensors it cannot take because they are not on the CPU (CUDA, MPS, XPU, ...), and the
reference for the rest; ``"reference"`` always runs the spec's ``reference_update``, one array at a time;
``"fused"`` requires the kernel and says clearly when it cannot run; ``"foreach"`` (torch tensors only) runs every
tensor on the multi-tensor path, on any device, the CPU included. All of them give the reference's bits.
"""

from __future__ import annotations

BACKENDS: tuple[str, ...] = ("auto", "reference", "fused", "foreach")

#: the backends of the NumPy front (the multi-tensor path runs torch operations)
NUMPY_BACKENDS: tuple[str, ...] = ("auto", "reference", "fused")


def fused_available() -> tuple[bool, str]:
    """Whether the fused kernels can run here, and if not, why."""
    try:
        from descend import kernels
    except ImportError as exc:  # pragma: no cover - depends on the build
        return False, f"descend.kernels could not be imported: {exc}"
    return kernels.available()


def check_backend(backend: object, choices: tuple[str, ...] = BACKENDS) -> str:
    """Validate a ``backend=`` argument among ``choices``; forcing ``"fused"`` where the kernels cannot run is an
    error."""
    if not isinstance(backend, str) or backend not in choices:
        extra = (
            " (backend='foreach' runs torch's multi-tensor operations: it is for descend.torch optimizers)"
            if backend == "foreach"
            else ""
        )
        raise ValueError(f"Invalid backend {backend!r}; choose one of {', '.join(choices)}{extra}")
    if backend == "fused":
        ok, why = fused_available()
        if not ok:
            raise ValueError(f"backend='fused' was requested but the fused kernels cannot run: {why}")
    return backend
