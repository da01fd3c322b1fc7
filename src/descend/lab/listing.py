"""Tables for ``descend list``: the lab's optimizers and problems (rich tables, built here so the CLI only prints)."""

from __future__ import annotations

from typing import Any

from descend.lab.contestants import CONTESTANTS, DEFAULT_OPTIMIZERS
from descend.lab.problems import DEFAULT_SUITE, PROBLEMS

__all__ = ["lab_tables"]


def lab_tables() -> list[Any]:
    """Two rich tables: the optimizers ``descend compare`` knows, and its problems (defaults marked)."""
    from rich.table import Table

    optimizers = Table(title="Lab optimizers (descend compare --optimizers; * = run by default)")
    for column in ("name", "update rule", "what it is"):
        optimizers.add_column(column, no_wrap=column == "name")
    for c in CONTESTANTS.values():
        flags = ", ".join(f"{k}={v}" for k, v in c.fixed.items())
        mark = "*" if c.name in DEFAULT_OPTIMIZERS else ""
        optimizers.add_row(c.name + mark, f"{c.algorithm} ({flags})" if flags else c.algorithm, c.summary)
    problems = Table(title="Lab problems (descend compare --problems; * = in the default suite)")
    for column in ("name", "kind", "steps", "what it is"):
        problems.add_column(column, no_wrap=column == "name")
    for p in PROBLEMS.values():
        mark = "*" if p.name in DEFAULT_SUITE else ""
        problems.add_row(p.name + mark, p.family, str(p.default_steps), p.title)
    return [optimizers, problems]
