"""The summary table of a comparison as plain strings, shared by the terminal (rich) and the HTML report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COLUMNS", "format_rows", "rich_tables", "rich_verdict", "verdict_cells"]

# (key in a summary row, header, right-aligned)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("optimizer", "optimizer", False),
    ("lr", "lr", True),
    ("final_loss", "loss", True),
    ("gap", "loss − f*", True),
    ("distance", "dist", True),
    ("steps_to_tol", "steps→tol", True),
    ("success_rate", "success", True),
    ("test_accuracy", "test acc", True),
    ("wall_time", "time s", True),
)


def _number(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.1e}"
    return str(v)


def format_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells for the rows of one problem, leaving out columns that are empty for all of them."""
    present = [c for c in COLUMNS if c[0] == "final_loss" or any(row.get(c[0]) is not None for row in rows)]
    if all(row.get("gap") == row.get("final_loss") for row in rows):  # f* = 0: the gap is the loss
        present = [c for c in present if c[0] != "gap"]
    elif any(row.get("gap") is not None for row in rows):  # the gap says it all; the loss is in results.csv
        present = [c for c in present if c[0] != "final_loss"]
    headers = [c[1] for c in present]
    cells = []
    for row in rows:
        line = []
        for key, _, _ in present:
            v = row.get(key)
            if key == "lr" and v is not None:
                line.append(f"{v:.3g}" + ("" if row.get("tuned", "no") != "no" else " (fixed)"))
            elif key == "success_rate" and v is not None:
                line.append(f"{round(v * row['runs'])}/{row['runs']}")
            elif key == "test_accuracy" and v is not None:
                line.append(f"{100 * v:.1f}%")
            elif key == "steps_to_tol" and v is not None:
                line.append(f"{v:.0f}")
            elif key == "wall_time" and v is not None:
                line.append(f"{v:.2f}")
            elif key in ("final_loss", "gap") and (row.get("diverged") or row.get("undefined")):
                line.append(f"{'' if v is None else _number(v) + ' '}({stopped_text(row)})")
            else:
                line.append(_number(v))
        cells.append(line)
    return headers, cells


def stopped_text(row: Mapping[str, Any]) -> str:
    """How many runs of a summary row stopped early and why: ``2/3 diverged``, ``3/3 left the domain``."""
    parts = []
    if row.get("diverged"):
        parts.append(f"{row['diverged']}/{row['runs']} diverged")
    if row.get("undefined"):
        parts.append(f"{row['undefined']}/{row['runs']} left the domain")
    return ", ".join(parts)


def right_aligned(header: str) -> bool:
    """Whether a column holds numbers."""
    return any(c[1] == header and c[2] for c in COLUMNS)


def rich_tables(outcome: Any) -> list[Any]:
    """Per problem of a :class:`~descend.lab.compare.CompareResult`: its title, its rich Table and its description.

    Titles and descriptions are separate lines rather than the table's title and caption, which Rich would wrap to
    the table's width.
    """
    from rich.table import Table
    from rich.text import Text

    rows = outcome.rows()
    out: list[Any] = []
    for problem in outcome.problems:
        mine = [r for r in rows if r["problem"] == problem.name]
        headers, cells = format_rows(mine)
        table = Table()
        for h in headers:
            table.add_column(h, justify="right" if right_aligned(h) else "left")
        for line in cells:
            table.add_row(*line)
        out += [Text(problem.title, style="bold"), table, Text(problem.description, style="dim")]
    return out


def verdict_cells(outcome: Any, result: Any) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the verdict matrix: one row per optimizer, best overall first; per problem the rank and
    what it rests on (success over runs and gap, test accuracy, or final loss). The mean rank of an optimizer that
    ran on some problems only says on how many."""
    headers = ["optimizer", "mean rank", "wins", *[p.name for p in outcome.problems]]
    cells = []
    total = len(outcome.problems)
    for o in result.optimizers:
        ran_on = sum((p.name, o) in result.rank for p in outcome.problems)
        mean = f"{result.mean_rank[o]:.2f}" + (f" ({ran_on} of {total})" if ran_on < total else "")
        line = [o, mean, str(result.wins[o])]
        for p in outcome.problems:
            ran = (p.name, o) in result.rank
            line.append(f"{result.rank[(p.name, o)]:g}: {result.cell[(p.name, o)]}" if ran else "— (not run)")
        cells.append(line)
    return headers, cells


def rich_verdict(outcome: Any, result: Any) -> list[Any]:
    """The verdict for the terminal: the matrix and the rule it follows."""
    from rich.table import Table
    from rich.text import Text

    from descend.lab.verdict import RANK_RULE

    headers, cells = verdict_cells(outcome, result)
    table = Table()
    for h in headers:
        table.add_column(h, justify="right" if h in ("mean rank", "wins") else "left")
    for line in cells:
        table.add_row(*line)
    return [
        Text(f"Verdict: {result.headline(len(outcome.problems))}", style="bold"),
        table,
        Text(RANK_RULE, style="dim"),
    ]
