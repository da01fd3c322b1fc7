"""The lab results shown on "Choosing an optimizer": a snapshot of one full ``descend compare`` run, and its tables.

A full comparison takes about a minute, too long for every build of the site, so its output is kept in
``docs/guides/lab-results/`` (the CSV and JSON results, a few pictures, and ``meta.json`` saying when, where and
with which command it was made). Refresh it with::

    python docs/_hooks/lab_results.py --refresh

The tables and the one-line summaries on the page are made from ``results.csv`` at build time.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent.parent / "guides" / "lab-results"
COMMAND = ["descend", "compare", "--seeds", "3", "--seed", "0", "--jobs", "2"]
PICTURES = ("contour_rosenbrock.png", "loss_rosenbrock.png", "loss_noisy-quadratic.png")


def refresh(snapshot: Path = SNAPSHOT) -> None:
    """Run the comparison into a scratch folder and keep the results, the chosen pictures and the metadata."""
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        subprocess.run([*COMMAND, "--out", str(out)], check=True, cwd=tmp)
        if snapshot.exists():
            shutil.rmtree(snapshot)
        snapshot.mkdir(parents=True)
        for name in ("results.csv", "results.json", *PICTURES):
            if (out / name).is_file():
                shutil.copy2(out / name, snapshot / name)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True)
    import descend

    meta = {
        "command": " ".join(COMMAND),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "descend": descend.__version__,
        "commit": commit.stdout.strip()
        + (
            "; uncommitted changes in " + ", ".join(line[3:] for line in dirty.stdout.splitlines())
            if dirty.stdout.strip()
            else ""
        ),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
    }
    (snapshot / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.{digits - 1}e}"


def _titles(snapshot: Path) -> dict[str, dict]:
    try:
        problems = json.loads((snapshot / "results.json").read_text(encoding="utf-8"))["problems"]
        return {p["name"]: p for p in problems if isinstance(p, dict) and "name" in p}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def render(snapshot: Path = SNAPSHOT, pictures_prefix: str = "lab-results/") -> str:
    """Markdown: where the snapshot comes from, then per problem a table, a computed summary and its pictures."""
    csv_path = snapshot / "results.csv"
    if not csv_path.is_file():
        return "*No lab results are stored yet: run `python docs/_hooks/lab_results.py --refresh`.*\n"
    meta_path = snapshot / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    with csv_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    titles = _titles(snapshot)
    lines = []
    if meta:
        lines += [
            f"Made by `{meta.get('command', '?')}` on {meta.get('date', '?')} (descend {meta.get('descend', '?')}, "
            f"commit {meta.get('commit', '?')}; Python {meta.get('python', '?')}, {meta.get('machine', '?')}).",
            "",
        ]
    problems: dict[str, list[dict]] = {}
    for row in rows:
        problems.setdefault(row["problem"], []).append(row)
    winners = set()
    for name, group in problems.items():
        info = titles.get(name, {})
        lines += [f"### {info.get('title', name)}", ""]
        if info.get("description"):
            lines += [info["description"], ""]
        has_accuracy = any(_number(r.get("test_accuracy")) is not None for r in group)
        has_tol = info.get("tol") is not None or any(r.get("steps_to_tol") for r in group)
        header = ["optimizer", "tuned lr", "final loss − f*", "distance"]
        if has_tol:
            header += ["steps to tol", "success"]
        if has_accuracy:
            header += ["test accuracy"]
        lines += ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
        for r in group:
            cells = [f"`{r['optimizer']}`", _fmt(_number(r["lr"]))]
            cells += [_fmt(_number(r["gap"])), _fmt(_number(r["distance"]))]
            if has_tol:
                runs = _number(r.get("runs")) or 0
                rate = _number(r.get("success_rate")) or 0
                cells += [r.get("steps_to_tol") or "—", f"{round(rate * runs)}/{int(runs)}"]
            if has_accuracy:
                acc = _number(r.get("test_accuracy"))
                cells += ["—" if acc is None else f"{100 * acc:.1f}%"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        summary = []
        finite = [r for r in group if _number(r["gap"]) is not None and math.isfinite(_number(r["gap"]))]
        if has_accuracy:
            top = max(_number(r.get("test_accuracy")) or 0.0 for r in group)
            best = [r["optimizer"] for r in group if (_number(r.get("test_accuracy")) or 0.0) == top]
            summary.append("highest test accuracy: " + ", ".join(f"`{o}`" for o in best))
            winners.update(best)
        elif finite:
            low = min(_number(r["gap"]) for r in finite)
            best = [r["optimizer"] for r in finite if _number(r["gap"]) == low]
            summary.append("lowest final loss: " + ", ".join(f"`{o}`" for o in best))
            winners.update(best)
        if has_tol:
            every = [r["optimizer"] for r in group if _number(r.get("success_rate")) == 1.0]
            summary.append("reached the tolerance in every run: " + (", ".join(f"`{o}`" for o in every) or "none"))
        diverged = [r["optimizer"] for r in group if (_number(r.get("diverged")) or 0) > 0]
        if diverged:
            summary.append("diverged at least once: " + ", ".join(f"`{o}`" for o in diverged))
        if summary:
            lines += ["In this run, " + "; ".join(summary) + ".", ""]
        for picture in (f"contour_{name}.png", f"loss_{name}.png"):
            if (snapshot / picture).is_file():
                lines += [f"![{picture}]({pictures_prefix}{picture})", ""]
    lines.insert(
        2 if meta else 0,
        f"Across the {len(problems)} problems the best result (ties included) went to {len(winners)} different "
        "optimizers: " + ", ".join(f"`{w}`" for w in sorted(winners)) + ".\n",
    )
    return "\n".join(lines)


if __name__ == "__main__":
    if "--refresh" in sys.argv:
        refresh()
    print(render())
