"""mkdocs hooks: pages and figures made from the code at build time.

- ``algorithms/<name>.md`` for every algorithm in the registry, with its Rosenbrock picture;
- the figures saved by the examples of a page (its Python blocks are run in order, in a scratch folder);
- the command-line reference, put where a page says ``<!-- descend:cli-reference -->``;
- the optimizer classes of each front, from the live classes (``<!-- descend:classes numpy -->``);
- the lab's problems, from its registry (``<!-- descend:problems -->``);
- the lab's stored results as tables (``<!-- descend:lab-results -->``, see ``lab_results.py``);
- the list of test modules and the tolerance table, read from ``tests/`` (``<!-- descend:test-inventory -->``,
  ``<!-- descend:tolerances -->``);
- a stand-in ``benchmarks.md`` if the benchmark has not written one.
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
import rosenbrock  # noqa: E402
import snippets  # noqa: E402

CLI_MARKER = "<!-- descend:cli-reference -->"
TESTS_MARKER = "<!-- descend:test-inventory -->"
TOLERANCES_MARKER = "<!-- descend:tolerances -->"
LAB_MARKER = "<!-- descend:lab-results -->"
PROBLEMS_MARKER = "<!-- descend:problems -->"
CLASSES_MARKER = re.compile(r"<!-- descend:classes (numpy|torch) -->")


def _add(files: Files, config, src_uri: str, content: str | bytes) -> None:
    if files.get_file_from_path(src_uri) is None:
        files.append(File.generated(config, src_uri, content=content))


def _page_figures(files: Files, config) -> None:
    """Run the examples of each page that saves figures and add the PNGs they write beside the page."""
    for file in list(files.documentation_pages()):
        if file.generated_by or file.src_uri == "benchmarks.md":
            continue
        codes = snippets.blocks(Path(file.abs_src_path).read_text(encoding="utf-8"))
        last = max((i for i, code in enumerate(codes) if "savefig(" in code), default=None)
        if last is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            snippets.run(codes[: last + 1], Path(tmp), name=file.src_uri)
            folder = Path(file.src_uri).parent
            for png in sorted(Path(tmp).glob("*.png")):
                _add(files, config, (folder / png.name).as_posix(), png.read_bytes())


def on_files(files: Files, config) -> Files:
    from descend.algorithms import REGISTRY

    _add(files, config, "algorithms/index.md", docgen.algorithms_index())
    for name, spec in REGISTRY.items():
        figure = f"{name}-rosenbrock.png"
        path = rosenbrock.run(name) if name in rosenbrock.LEARNING_RATES else None
        if path is not None:
            _add(files, config, f"algorithms/{figure}", rosenbrock.figure(path, spec.title))
        page = docgen.algorithm_page(spec, figure if path is not None else None, path)
        _add(files, config, f"algorithms/{name}.md", page)
    if files.get_file_from_path("benchmarks.md") is None:
        _add(files, config, "benchmarks.md", docgen.BENCHMARKS_PLACEHOLDER)
    _page_figures(files, config)
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, docgen.cli_reference())
    markdown = CLASSES_MARKER.sub(lambda m: docgen.class_list(m.group(1)), markdown)
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
    """Docstrings use reStructuredText roles (``:class:`X```) and ``::`` before code; show them as Markdown would."""
    html = html.replace("::</p>", ":</p>")
    html = _MATH_HTML.sub(lambda m: f'<span class="arithmatex">\\({m.group(1)}\\)</span>', html)
    return _ROLE_HTML.sub(r"\1", html)
