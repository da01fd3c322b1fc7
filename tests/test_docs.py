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
        for slot in spec.state_slots(spec.make()) if spec.elementwise else spec.state_keys:
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


def test_math_becomes_mathml_when_the_site_is_built() -> None:
    pytest.importorskip("latex2mathml")
    import mathml

    html = (
        '<p>A <span class="arithmatex">\\(\\sqrt{\\hat v_t} &lt; 1\\)</span>.</p>\n'
        '<div class="arithmatex">\\[\n\\begin{aligned}\na &amp;= b \\\\\n'
        "c &amp;= \\tfrac12 d\n\\end{aligned}\n\\]</div>"
    )
    out = mathml.render(html, "example.md")
    assert "\\(" not in out and "\\[" not in out and "<msqrt>" in out and "&#x0003C;" in out
    assert out.count("<math") == 2 and 'display="block"' in out and 'display="inline"' in out
    assert out.count("<mtr>") == 2 and "<mi>&</mi>" not in out  # aligned is laid out as a table, one row per line
    assert '<annotation encoding="application/x-tex">\\sqrt{\\hat v_t} &lt; 1</annotation>' in out
    with pytest.raises(mathml.MathConversionError, match="example.md"):
        mathml.render('<span class="arithmatex">\\(\\begin{eqnarray} a &amp; b \\end{eqnarray}\\)</span>', "example.md")


def test_the_convention_matrix_covers_every_algorithm_and_convention() -> None:
    from descend.algorithms import CONVENTIONS, REGISTRY

    table = docgen.convention_matrix()
    rows = [line for line in table.splitlines() if line.startswith("| [")]
    assert len(rows) == len(REGISTRY)
    for (name, spec), row in zip(REGISTRY.items(), rows):
        cells = row.split(" | ")[1:]
        assert len(cells) == len(CONVENTIONS), name
        for convention, cell in zip(CONVENTIONS, cells):
            assert cell.startswith("**not available**") != spec.follows(convention), (name, convention)
    assert "<!-- descend:convention-matrix -->" in (DOCS / "conventions.md").read_text(encoding="utf-8")


def _build_site(site: Path) -> str:
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
    return output


NEEDS_MKDOCS = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("latex2mathml") is None,
    reason="mkdocs or latex2mathml is not installed (the docs extra)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The site, built once for the tests below."""
    folder = tmp_path_factory.mktemp("docs") / "site"
    return folder, _build_site(folder)


@NEEDS_MKDOCS
def test_mkdocs_build_strict(site: tuple[Path, str]) -> None:
    site, output = site
    assert "WARNING" not in output, output
    from descend.algorithms import REGISTRY

    for name in REGISTRY:
        assert (site / "algorithms" / name / "index.html").is_file(), name
        assert (site / "algorithms" / f"{name}-rosenbrock.png").stat().st_size > 1000, name
    assert (site / "benchmarks" / "index.html").is_file()
    assert "descend fit-line" in (site / "guides" / "lab" / "index.html").read_text(encoding="utf-8")


MATH_PAGES = [
    "algorithms/adam/index.html",
    "algorithms/rprop/index.html",
    "tutorial/index.html",
    "conventions/index.html",
]


@NEEDS_MKDOCS
def test_the_built_site_shows_math_without_a_network(site: tuple[Path, str]) -> None:
    """Every formula is MathML in the HTML itself: no TeX left for a script to typeset, and no script from elsewhere."""
    site, _ = site
    for page in MATH_PAGES:
        html = (site / page).read_text(encoding="utf-8")
        assert html.count("<math") >= 5, page
        assert not re.search(r'class="arithmatex">\s*\\[(\[]', html), page
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert not re.search(r'<script[^>]+src="(?:https?:)?//', html), page
        assert "mathjax" not in html.lower(), page


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _screenshot(browser: str, url: str, png: Path, size: str = "1200,900") -> None:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--no-first-run", "--hide-scrollbars", f"--window-size={size}"]
    subprocess.run([browser, *flags, f"--screenshot={png}", url], capture_output=True, timeout=120, check=True)


def _ink_rows(png: Path) -> int:
    """How many pixel rows of the picture hold anything darker than light grey."""
    image = pytest.importorskip("matplotlib.image").imread(png)
    return int(((image[..., :3].mean(axis=2) < 0.6).any(axis=1)).sum())


@NEEDS_MKDOCS
@pytest.mark.skipif(_chromium() is None, reason="no chromium on the PATH: the browser check of the math is skipped")
def test_a_browser_renders_the_math(site: tuple[Path, str], tmp_path: Path) -> None:
    """A headless browser, with no network, lays a converted fraction out over two lines (numerator above
    denominator), where the same TeX as text takes one; and it shows the built Adam page (kept in tmp_path)."""
    import mathml

    site, _ = site
    browser = _chromium()
    fraction = mathml.to_mathml(r"\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}", display=True)
    heights = {}
    for kind, body in (("mathml", fraction), ("tex", r"\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}")):
        page = tmp_path / f"{kind}.html"
        page.write_text(f'<html><body style="font-size:40px;background:#fff">{body}</body></html>', encoding="utf-8")
        _screenshot(browser, page.as_uri(), tmp_path / f"{kind}.png", size="800,400")
        heights[kind] = _ink_rows(tmp_path / f"{kind}.png")
    assert heights["tex"] > 0 and heights["mathml"] > 1.6 * heights["tex"], heights
    _screenshot(browser, (site / "algorithms" / "adam" / "index.html").as_uri(), tmp_path / "adam.png")
    assert (tmp_path / "adam.png").stat().st_size > 10_000
