"""mkdocs hooks: pages and figures made from the code at build time.

- ``algorithms/<name>.md`` for every algorithm in the registry, with its Rosenbrock picture;
- the output of a page's examples, shown under each one, and the figures they save: the Python blocks of a page are
  run in order, in a scratch folder, up to the first that needs torch or scikit-learn (or to the last that saves a
  figure);
- the command-line reference, put where a page says ``<!-- descend:cli-reference -->``;
- the optimizer classes of each front, from the live classes (``<!-- descend:classes numpy -->``);
- the lab's problems, from its registry (``<!-- descend:problems -->``);
- the lab's stored results as tables (``<!-- descend:lab-results -->``, see ``lab_results.py``);
- the list of test modules and the tolerance table, read from ``tests/`` (``<!-- descend:test-inventory -->``,
  ``<!-- descend:tolerances -->``);
- a stand-in ``benchmarks.md`` if the benchmark has not written one;
- the math as MathML (``mathml.py``), so that the site shows formulas without a script or a network;
- the table of what each convention means for each algorithm (``<!-- descend:convention-matrix -->``).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))

import docgen  # noqa: E402
import lab_results  # noqa: E402
import mathml  # noqa: E402
import rosenbrock  # noqa: E402
import snippets  # noqa: E402

CLI_MARKER = "<!-- descend:cli-reference -->"
TESTS_MARKER = "<!-- descend:test-inventory -->"
TOLERANCES_MARKER = "<!-- descend:tolerances -->"
LAB_MARKER = "<!-- descend:lab-results -->"
PROBLEMS_MARKER = "<!-- descend:problems -->"
CONVENTIONS_MARKER = "<!-- descend:convention-matrix -->"
CLASSES_MARKER = re.compile(r"<!-- descend:classes (numpy|torch) -->")


def _add(files: Files, config, src_uri: str, content: str | bytes) -> None:
    if files.get_file_from_path(src_uri) is None:
        files.append(File.generated(config, src_uri, content=content))


HEAVY = re.compile(r"^\s*(?:import|from)\s+(?:torch|sklearn)\b", re.M)
MAX_OUTPUT_LINES = 30
_OUTPUTS: dict[str, list[str]] = {}


def _run_pages(files: Files, config) -> None:
    """Run the examples of each page (see the module docstring); keep their output and add the PNGs they write."""
    for file in list(files.documentation_pages()):
        if file.generated_by or file.src_uri == "benchmarks.md":
            continue
        codes = snippets.blocks(Path(file.abs_src_path).read_text(encoding="utf-8"))
        light = next((i for i, code in enumerate(codes) if HEAVY.search(code)), len(codes))
        last_figure = max((i + 1 for i, code in enumerate(codes) if "savefig(" in code), default=0)
        count = max(light, last_figure)
        if not count:
            continue
        outputs: list[str] = []
        with tempfile.TemporaryDirectory() as tmp:
            snippets.run(codes[:count], Path(tmp), name=file.src_uri, outputs=outputs)
            folder = Path(file.src_uri).parent
            for png in sorted(Path(tmp).glob("*.png")):
                _add(files, config, (folder / png.name).as_posix(), png.read_bytes())
        _OUTPUTS[file.src_uri] = outputs


def _with_outputs(markdown: str, outputs: list[str]) -> str:
    """Put each example's printed output, if any, in a text block under it (top-level examples only)."""
    pieces, start, index = [], 0, 0
    for match in snippets.FENCE.finditer(markdown):
        if match.group("lang") != "python":
            continue
        out = outputs[index] if index < len(outputs) else ""
        index += 1
        if not out.strip() or match.group("indent"):
            continue
        lines = out.rstrip("\n").splitlines()
        if len(lines) > MAX_OUTPUT_LINES:
            lines = [*lines[:MAX_OUTPUT_LINES], "..."]
        pieces += [markdown[start : match.end()], '\n\n```text title="Output"\n', "\n".join(lines), "\n```"]
        start = match.end()
    pieces.append(markdown[start:])
    return "".join(pieces)


def algorithm_nav() -> list:
    """The Algorithms section of the nav: the index, then one page per algorithm of the registry."""
    from descend.algorithms import REGISTRY

    return ["algorithms/index.md"] + [{spec.title: f"algorithms/{name}.md"} for name, spec in REGISTRY.items()]


def on_config(config):
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "Algorithms" in entry:
            entry["Algorithms"] = algorithm_nav()
    return config


def on_files(files: Files, config) -> Files:
    from descend.algorithms import REGISTRY

    _add(files, config, "algorithms/index.md", docgen.algorithms_index())
    for name, spec in REGISTRY.items():
        figure = f"{name}-rosenbrock.png"
        path = rosenbrock.run(name)
        if path is not None:
            _add(files, config, f"algorithms/{figure}", rosenbrock.figure(path, spec.title))
        page = docgen.algorithm_page(spec, figure if path is not None else None, path)
        _add(files, config, f"algorithms/{name}.md", page)
    if files.get_file_from_path("benchmarks.md") is None:
        _add(files, config, "benchmarks.md", docgen.BENCHMARKS_PLACEHOLDER)
    _run_pages(files, config)
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if _OUTPUTS.get(page.file.src_uri):
        markdown = _with_outputs(markdown, _OUTPUTS[page.file.src_uri])
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, docgen.cli_reference())
    markdown = CLASSES_MARKER.sub(lambda m: docgen.class_list(m.group(1)), markdown)
    if CONVENTIONS_MARKER in markdown:
        markdown = markdown.replace(CONVENTIONS_MARKER, docgen.convention_matrix())
    if PROBLEMS_MARKER in markdown:
        markdown = markdown.replace(PROBLEMS_MARKER, docgen.problem_table())
    if LAB_MARKER in markdown:
        markdown = markdown.replace(LAB_MARKER, lab_results.render())
    tests = Path(config.config_file_path).parent / "tests"
    missing = "*The tests are not part of this copy of the source.*\n"
    if TESTS_MARKER in markdown:
        markdown = markdown.replace(TESTS_MARKER, docgen.test_inventory(tests) if tests.is_dir() else missing)
    if TOLERANCES_MARKER in markdown:
        table = tests / "tolerances.py"
        markdown = markdown.replace(TOLERANCES_MARKER, docgen.tolerance_table(table) if table.is_file() else missing)
    return markdown


_ROLE_HTML = re.compile(r":(?:class|mod|func|meth|data|attr|obj):(<code>)")
_MATH_HTML = re.compile(r":math:<code>(.*?)</code>")


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings use reStructuredText roles (``:class:`X```) and ``::`` before code; show them as Markdown would.
    Then every formula becomes MathML."""
    html = html.replace("::</p>", ":</p>")
    html = _MATH_HTML.sub(lambda m: f'<span class="arithmatex">\\({m.group(1)}\\)</span>', html)
    return mathml.render(_ROLE_HTML.sub(r"\1", html), page.file.src_uri)
