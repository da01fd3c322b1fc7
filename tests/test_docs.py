"""The documentation cannot drift from the code: every Python example on the site runs, every `descend` command shown
runs, the generated pages cover every algorithm and command, and `mkdocs build --strict` succeeds."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_hooks"))

import docgen  # noqa: E402
import rosenbrock  # noqa: E402
import snippets  # noqa: E402

# benchmarks.md is written by the benchmark script and is not checked here.
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts and p.name != "benchmarks.md")
WITH_EXAMPLES = [p for p in PAGES if snippets.blocks(p.read_text(encoding="utf-8"))]


def _page_id(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def _needs(code: str) -> list[str]:
    """The optional packages an example imports."""
    return [m for m in ("torch", "matplotlib", "sklearn", "typer") if f"import {m}" in code or f"from {m}" in code]


@pytest.mark.parametrize("page", WITH_EXAMPLES, ids=_page_id)
def test_python_examples_run(page: Path, tmp_path: Path) -> None:
    codes = snippets.blocks(page.read_text(encoding="utf-8"))
    for module in {m for code in codes for m in _needs(code)}:
        pytest.importorskip(module)
    with warnings.catch_warnings():  # torch.distributed.optim's own use of torch.jit warns at import
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        snippets.run(codes, tmp_path, name=_page_id(page))


def _commands(program: str = "descend ") -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in snippets.blocks(page.read_text(encoding="utf-8"), lang="bash"):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith(program):
                    found.append((_page_id(page), line))
    return found


@pytest.mark.parametrize(("page", "command"), _commands(), ids=[f"{p}: {c}" for p, c in _commands()])
def test_cli_examples_run(page: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from descend.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, f"{command!r} (in {page}) failed:\n{result.output}"


TORCHRUN = _commands("torchrun ")


@pytest.mark.slow
@pytest.mark.parametrize(("page", "command"), TORCHRUN, ids=[f"{p}: {c}" for p, c in TORCHRUN])
def test_torchrun_examples_run(page: str, command: str) -> None:
    """The multi-process examples (about half a minute each on two cores, hence slow)."""
    pytest.importorskip("torch")
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on the PATH")
    args = shlex.split(command)
    proc = subprocess.run([torchrun, *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command!r} (in {page}) failed:\n{proc.stdout}\n{proc.stderr}"


def test_every_algorithm_has_a_page_in_the_nav() -> None:
    from descend.algorithms import REGISTRY

    pytest.importorskip("mkdocs")
    import hooks

    config = {"nav": [{"Home": "index.md"}, {"Algorithms": ["algorithms/index.md"]}]}
    nav = hooks.on_config(config)["nav"][1]["Algorithms"]
    assert nav[0] == "algorithms/index.md"
    assert [page for entry in nav[1:] for page in entry.values()] == [f"algorithms/{name}.md" for name in REGISTRY]
    assert "  - Algorithms:" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def test_algorithm_pages_carry_the_math_and_the_spec() -> None:
    from descend.algorithms import REGISTRY

    for name, spec in REGISTRY.items():
        page = docgen.algorithm_page(spec)
        assert "$$" in page and "\\begin{aligned}" in page, name
        assert ":math:" not in page and ".. math::" not in page, name
        assert not re.search(r"(?<!`)``(?!`)", page), name
        assert spec.describe() in "\n".join(line.removeprefix("    ") for line in page.splitlines()), name
        for field in spec.hyperparams.names():
            assert f"| `{field}` |" in page, (name, field)
        for slot in spec.state_slots(spec.make()):
            assert f"`{slot}`" in page, (name, slot)


def test_every_algorithm_has_a_rosenbrock_picture_setting() -> None:
    from descend.algorithms import REGISTRY

    assert set(rosenbrock.LEARNING_RATES) <= set(REGISTRY)  # the rest are tuned when the docs build
    assert rosenbrock.rate("adam") == rosenbrock.LEARNING_RATES["adam"]
    path = rosenbrock.run("adam", steps=50)
    assert len(path.points) == 51 and not path.diverged


def test_rst_math_becomes_arithmatex() -> None:
    text = "A :math:`x^2` and ``code``.\n\n.. math::\n\n    a &= b \\\\\n    c &= d\n\nAfter."
    md = docgen.rst_to_markdown(text)
    assert "A $x^2$ and `code`." in md
    assert "$$\n\\begin{aligned}\na &= b \\\\\nc &= d\n\\end{aligned}\n$$" in md
    assert md.rstrip().endswith("After.")


def test_cli_reference_lists_every_command() -> None:
    typer = pytest.importorskip("typer")
    from descend.cli import app

    group = typer.main.get_command(app)
    reference = docgen.cli_reference()
    for name in group.list_commands(typer.Context(group, info_name="descend")):
        assert f"### `descend {name}`" in reference


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (the docs extra)")
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "WARNING" not in output, output
    from descend.algorithms import REGISTRY

    for name in REGISTRY:
        assert (site / "algorithms" / name / "index.html").is_file(), name
        assert (site / "algorithms" / f"{name}-rosenbrock.png").stat().st_size > 1000, name
    assert (site / "benchmarks" / "index.html").is_file()
    assert "descend fit-line" in (site / "guides" / "lab" / "index.html").read_text(encoding="utf-8")
