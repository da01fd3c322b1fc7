"""The backend rule shared by both fronts.

``backend="auto"`` (the default) runs the fused CPU kernel for every tensor it supports and the reference for the
rest; ``"reference"`` always runs the spec's ``reference_update``; ``"fused"`` requires the kernel and says clearly
when it cannot run.
"""

from __future__ import annotations

BACKENDS: tuple[str, ...] = ("auto", "reference", "fused")


def fused_available() -> tuple[bool, str]:
    """Whether the fused kernels can run here, and if not, why."""
    try:
        from descend import kernels
    except ImportError as exc:  # pragma: no cover - depends on the build
        return False, f"descend.kernels could not be imported: {exc}"
    return kernels.available()


def check_backend(backend: object) -> str:
    """Validate a ``backend=`` argument; forcing ``"fused"`` where the kernels cannot run is an error."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"Invalid backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "fused":
        ok, why = fused_available()
        if not ok:
            raise ValueError(f"backend='fused' was requested but the fused kernels cannot run: {why}")
    return backend
