"""The Python examples of a Markdown page: extracted in order, and run in order in one namespace.

The documentation build runs the examples of a page that saves figures (to make those figures), and
``tests/test_docs.py`` runs every example of every page, so an example that stops working fails the tests.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import os
import re
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def blocks(markdown: str, lang: str = "python") -> list[str]:
    """The bodies of the fenced blocks of ``lang`` in ``markdown``, in order, with their indentation removed."""
    found = []
    for match in FENCE.finditer(markdown):
        if match.group("lang") != lang:
            continue
        indent = len(match.group("indent"))
        found.append("".join(line[indent:] for line in match.group("body").splitlines(keepends=True)))
    return found


def run(codes: list[str], workdir: Path, name: str = "<docs>", outputs: list[str] | None = None) -> dict:
    """Run ``codes`` one after another in one namespace, with ``workdir`` as the current directory.

    matplotlib is switched to its file-only backend first. What each block prints is appended to ``outputs`` (if
    given), one string per block. Returns the namespace.
    """
    with contextlib.suppress(ImportError):
        import matplotlib

        matplotlib.use("Agg")
    namespace: dict = {"__name__": "__docs__"}
    old = Path.cwd()
    os.chdir(workdir)
    try:
        for i, code in enumerate(codes):
            filename = f"{name} (example {i + 1})"
            linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code, filename, "exec"), namespace)
            if outputs is not None:
                outputs.append(printed.getvalue())
    finally:
        os.chdir(old)
        with contextlib.suppress(ImportError):
            import matplotlib.pyplot as plt

            plt.close("all")
    return namespace
