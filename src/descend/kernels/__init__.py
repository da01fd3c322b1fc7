"""The fused CPU kernels. Until the compiled extension is part of the build, only the reference path runs."""

from __future__ import annotations


def available() -> tuple[bool, str]:
    """Whether the compiled kernels can run, and if not, why."""
    return False, "this build of descend has no compiled kernels"
