"""Markdown made from the code: one page per algorithm (from its module docstring and spec), the command-line
reference (from the typer app) and the stand-in for a benchmark page that has not been written yet."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

GLOSSARY = {
    "lr": r"learning rate $\eta$",
    "betas": r"$(\beta_1, \beta_2)$: decay rates of the first and second moment averages",
    "beta": r"$\beta$: decay rate of the gradient average",
    "alpha": r"$\alpha$: decay rate of the squared-gradient average",
    "rho": r"$\rho$: decay rate of both averages",
    "eps": r"$\epsilon$, added outside the root",
    "eps_root": r"$\epsilon_{root}$, added inside the root",
    "weight_decay": r"$\lambda$: L2 penalty added to the gradient",
    "momentum": r"$\mu$: momentum factor (0 turns momentum off)",
    "dampening": r"$\tau$: dampening of the gradient added to the momentum buffer",
    "nesterov": "use Nesterov's look-ahead form",
    "maximize": "ascend instead of descend (the gradient's sign is flipped)",
    "amsgrad": "divide by the running maximum of the second moment (AMSGrad)",
    "amsgrad_max": "`'raw'`: maximum of $v_t$ (torch, Keras); `'corrected'`: maximum of $\\hat v_t$ (optax)",
    "decoupled_weight_decay": r"decay the weights directly, $\theta \leftarrow (1 - \eta\lambda)\theta$, instead of L2",
    "bias_correction": "divide the moments by $1 - \\beta^t$",
    "eps_hat": "Keras/TensorFlow's epsilon hat: the corrections go into the step size, "
    "$\\epsilon$ is added to $\\sqrt{v_t}$",
    "centered": "divide by an estimate of the variance instead of the raw second moment",
    "lr_decay": r"$\delta$: the learning rate at step $t$ is $\eta / (1 + (t-1)\delta)$",
    "initial_accumulator_value": "starting value of the sum of squared gradients",
    "momentum_decay": r"$\psi$: speed of NAdam's momentum schedule",
    "eps_in_max": "add $\\epsilon$ inside the maximum (torch, optax) or, if False, to the denominator (Keras)",
    "max_iter": "the most iterations one `step(closure)` runs",
    "max_eval": "the most evaluations of the closure one step makes (`None`: `max_iter * 5 // 4`)",
    "tolerance_grad": "stop when the largest gradient entry, in absolute value, falls to this",
    "tolerance_change": "stop when the move, the slope along the direction or the change of loss falls to this",
    "history_size": r"$m$: the number of pairs $(s, y)$ kept",
    "line_search_fn": "`None` (a fixed step) or `'strong_wolfe'`",
}

# Where an algorithm gives a name a different meaning.
GLOSSARY_BY_ALGORITHM = {
    ("adadelta", "eps"): r"$\epsilon$, added inside both roots",
    ("adadelta", "lr"): r"$\eta$, a factor on the update (1 is the paper's rule, which has no learning rate)",
    ("lbfgs", "lr"): r"$\eta$: the step length along the direction (the line search's first trial)",
    ("adamax", "eps"): r"$\epsilon$, added inside the maximum (or to the denominator with `eps_in_max=False`)",
    ("adamw", "weight_decay"): r"$\lambda$: decoupled decay, $\theta \leftarrow (1 - \eta\lambda)\theta$",
    ("adam", "weight_decay"): r"$\lambda$: L2 penalty added to the gradient (decoupled with `decoupled_weight_decay`)",
    ("nadam", "weight_decay"): r"$\lambda$: L2 penalty added to the gradient (decoupled with `decoupled_weight_decay`)",
    ("radam", "weight_decay"): r"$\lambda$: L2 penalty added to the gradient (decoupled with `decoupled_weight_decay`)",
}

CONVENTION_TITLES = {"torch": "torch", "optax": "optax", "keras": "Keras", "paper": "paper", "article": "article"}


# -- reStructuredText docstrings to Markdown --------------------------------------------------------------------------

_ROLE = re.compile(r":(?:class|mod|func|meth|data|attr|obj):`~?([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def _inline(text: str) -> str:
    text = _MATH.sub(lambda m: f"${m.group(1)}$", text)
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    return _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)


def _math_block(lines: list[str]) -> list[str]:
    body = textwrap.dedent("\n".join(lines)).strip("\n")
    if "&" in body or "\\\\" in body:
        body = "\\begin{aligned}\n" + body + "\n\\end{aligned}"
    return ["", "$$", *body.splitlines(), "$$", ""]


def rst_to_markdown(text: str) -> str:
    """The subset of reStructuredText the algorithm docstrings use (``.. math::`` blocks, ``:math:``, roles,
    double-backquote literals), as Markdown with arithmatex's ``$`` and ``$$`` for the math."""
    out: list[str] = []
    prose: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == ".. math::":
            out.append(_inline("\n".join(prose)))
            prose = []
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i])
                i += 1
            out.append("\n".join(_math_block(block)))
            continue
        prose.append(line)
        i += 1
    out.append(_inline("\n".join(prose)))
    return "\n".join(out).strip() + "\n"


def split_docstring(doc: str) -> tuple[str, str, list[str]]:
    """A module docstring's first line, its body (before ``References:``) and its references, one per entry."""
    doc = inspect.cleandoc(doc)
    first, _, rest = doc.partition("\n")
    body, _, refs = rest.partition("\nReferences:\n")
    references: list[str] = []
    for line in refs.splitlines():
        if not line.strip():
            continue
        if line.startswith("        ") and references:
            references[-1] += " " + line.strip()
        else:
            references.append(line.strip())
    return first.strip(), body, references


# -- algorithm pages --------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return repr(value)


def _slot_variants(spec: Any) -> list[tuple[str, tuple[str, ...]]]:
    """State slots with the defaults, then with each setting that adds slots."""
    base = spec.make()
    found = [("the defaults", spec.state_slots(base))]
    for f in dataclasses.fields(spec.hyperparams):
        default = getattr(base, f.name)
        if isinstance(default, bool):
            trial = {f.name: not default}
        elif f.name == "momentum":
            trial = {f.name: 0.9}
        else:
            continue
        try:
            slots = spec.state_slots(spec.make(**trial))
        except (ValueError, TypeError):
            continue
        if slots != found[0][1]:
            found.append((", ".join(f"`{k}={_fmt(v)}`" for k, v in trial.items()), slots))
    return found


def _closure_state(spec: Any) -> list[str]:
    """The State section of a closure-driven algorithm: its keys, kept on the first parameter as torch keeps them."""
    lines = [
        "Not elementwise: every parameter is part of one flat vector, and the whole state is kept on the first "
        "parameter (torch's layout, so state_dicts load both ways). `step(closure)` takes a closure; see "
        "`descend.closure` for the NumPy front's.",
        "",
        "| key | what it holds |",
        "|---|---|",
    ]
    return lines + [f"| `{key}` | {spec.state_doc[key]} |" for key in spec.state_keys]


def algorithm_page(spec: Any, figure: str | None = None, path: Any = None) -> str:
    """The Markdown page of one algorithm, everything taken from its spec and its module docstring."""
    import descend
    from descend.algorithms import CONVENTIONS

    first, body, references = split_docstring(spec.module.__doc__ or "")
    own_module = spec.module.__name__.rsplit(".", 1)[-1] == spec.name
    lead = _inline(first) if own_module else f"{spec.summary[0].upper()}{spec.summary[1:]}."
    torch_twin = f"`torch.optim.{spec.torch_name}`" if spec.torch_name else "none"
    signature = str(inspect.signature(descend.OPTIMIZERS[spec.name]))
    lines = [
        f"# {spec.title}",
        "",
        lead,
        "",
        "| where | what |",
        "|---|---|",
        f"| NumPy | `descend.{spec.title}(params, ...)` |",
        f"| torch | `descend.torch.{spec.title}(params, ...)` |",
        f"| same rule in `torch.optim` | {torch_twin} |",
        f"| registry name | `{spec.name}` (`descend describe {spec.name}`) |",
        f"| math | `{spec.module.__name__}` |",
        "",
        "## The rule",
        "",
        *([] if own_module else [f"This rule is documented in `{spec.module.__name__}` together with Adam's.", ""]),
        rst_to_markdown(body),
        "## Hyperparameters",
        "",
        "```python",
        f"descend.{spec.title}{signature}",
        "```",
        "",
        "`descend.torch."
        + spec.title
        + "` takes the same arguments"
        + (
            f" in `torch.optim.{spec.torch_name}`'s order"
            + (
                ", with torch's `foreach`, `fused`, `capturable` and `differentiable` as well."
                if spec.elementwise
                else "."
            )
            if spec.torch_name
            else "."
        ),
        "Defaults are torch's (the `torch` convention); arguments after `*` are keyword-only.",
        "",
        "| name | default | meaning |",
        "|---|---|---|",
    ]
    for f in dataclasses.fields(spec.hyperparams):
        if f.name == "_":
            continue
        meaning = GLOSSARY_BY_ALGORITHM.get((spec.name, f.name), GLOSSARY.get(f.name, ""))
        lines.append(f"| `{f.name}` | `{_fmt(f.default)}` | {meaning} |")
    lines += ["", "## State", ""]
    if not spec.elementwise:
        lines += _closure_state(spec)
    elif spec.has_step:
        lines.append("Every parameter's state keeps `step`, the number of updates it has had.")
    else:
        lines.append("No step count is kept (as in torch).")
    if spec.elementwise:
        host = spec.host_slots(spec.make())
        if host:
            lines.append(f"Scalar state kept on the host: {', '.join(f'`{k}`' for k in host)}.")
        lines += ["", "| with | array slots |", "|---|---|"]
        for when, slots in _slot_variants(spec):
            lines.append(f"| {when} | {', '.join(f'`{s}`' for s in slots) or 'none'} |")
    lines += [
        "",
        "## Conventions",
        "",
        "What each convention changes from torch's defaults (arguments given explicitly always win), and where a "
        "library has no such optimizer, which rule runs instead. See [Conventions](../conventions.md) for the reasons.",
        "",
        "| convention | the library's rule | changes | note |",
        "|---|---|---|---|",
    ]
    for name in CONVENTIONS:
        if not spec.follows(name):
            status, change = "**not available**", "none"
        elif spec.presets[name]:
            status = "yes"
            change = ", ".join(f"`{k}={_fmt(v)}`" for k, v in spec.presets[name].items())
        else:
            status, change = "yes", "none: this convention's values are torch's" if name != "torch" else "none"
        lines.append(f"| `{name}` | {status} | {change} | {_cell(spec.note(name) or '')} |")
    lines += ["", "## The rule in force", ""]
    lines += ["`describe()` prints the rule with its numbers; here under each convention that changes something:", ""]
    shown = [c for c in CONVENTIONS if c == "torch" or spec.presets.get(c) or spec.note(c)]
    for name in shown:
        lines += [f'=== "{CONVENTION_TITLES[name]}"', "", "    ```text"]
        lines += [f"    {line}" for line in spec.describe(convention=name).splitlines()]
        lines += ["    ```", ""]
    if figure:
        lines += ["## On the Rosenbrock function", ""]
        lines += [f"![{spec.title} on the Rosenbrock function]({figure})", ""]
        if path is not None:
            lines.append(_path_sentence(spec, path))
            lines.append("")
    if references:
        lines += ["## References", ""]
        lines += [f"- {_inline(r)}" for r in references]
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|").replace("*", "\\*")


def convention_matrix() -> str:
    """Every algorithm under every convention: whether the library's rule runs, and the note describe() prints."""
    from descend.algorithms import CONVENTIONS, REGISTRY

    lines = ["| algorithm | " + " | ".join(f"`{c}`" for c in CONVENTIONS) + " |", "|---" * (len(CONVENTIONS) + 1) + "|"]
    for name, spec in REGISTRY.items():
        cells = []
        for convention in CONVENTIONS:
            note = spec.note(convention)
            if not spec.follows(convention):
                cells.append(f"**not available**: {_cell(note or '')}")
            else:
                change = ", ".join(f"`{k}={_fmt(v)}`" for k, v in spec.presets[convention].items())
                text = change or "yes"
                cells.append(f"{text}; {_cell(note)}" if note else text)
        lines.append(f"| [{spec.title}](algorithms/{name}.md) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _path_sentence(spec: Any, path: Any) -> str:
    steps = len(path.points) - 1
    fixed = "" if spec.elementwise else "".join(f", {k}={_fmt(v)}" for k, v in spec.one_iteration.items())
    settings = f"`descend.{spec.title}([p], lr={path.lr:g}{fixed})`, torch's other defaults, from (-1.2, 1)"
    if spec.param_ndim == 2:
        settings += " (the point as a 1 × 2 matrix, whose orthogonalised momentum is its direction)"
    if path.diverged:
        return f"With {settings}, the path left the plotted region after {steps} steps."
    x, y = path.final
    return (
        f"With {settings}: after {steps} steps the point is ({x:.4g}, {y:.4g}) and f = {path.final_value:.3g}. "
        "The learning rate is the best of a coarse grid for this picture, not a recommendation; "
        "`python docs/_hooks/rosenbrock.py --tune` reruns the search."
    )


def algorithms_index() -> str:
    from descend.algorithms import REGISTRY

    lines = [
        "# Algorithms",
        "",
        "One page per algorithm, each made from the algorithm's module: its rule, hyperparameters, state, "
        "conventions, the rule printed by `describe()`, its path on the Rosenbrock function and its references.",
        "",
        "| name | class | same rule in `torch.optim` | what it does |",
        "|---|---|---|---|",
    ]
    for spec in REGISTRY.values():
        twin = f"`{spec.torch_name}`" if spec.torch_name else "none"
        lines.append(f"| [`{spec.name}`]({spec.name}.md) | `{spec.title}` | {twin} | {spec.summary} |")
    return "\n".join(lines) + "\n"


# -- the command line ---------------------------------------------------------------------------------------------


def _param_row(param: Any, ctx: Any) -> str:
    names, text = param.get_help_record(ctx)
    kind = "argument" if param.param_type_name == "argument" else "option"
    return f"| `{names}` | {kind} | {text.replace('|', '&#124;')} |"


def cli_reference() -> str:
    """Every command of ``descend``: usage, help text and a table of its arguments and options, read from the app."""
    import typer

    from descend.cli import app

    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="descend")
    lines = [f"`descend` — {group.help}", ""]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        ctx = typer.Context(command, info_name=name, parent=root)
        arguments = [p.name.upper() for p in command.params if p.param_type_name == "argument"]
        usage = " ".join(["[OPTIONS]", *arguments])
        helptext = inspect.cleandoc(command.help or "")
        summary, _, rest = helptext.partition("\n\n")
        lines += [f"### `descend {name}`", "", summary.replace("\n", " "), ""]
        lines += ["```text", f"descend {name} {usage}".rstrip(), "```", ""]
        for para in rest.split("\n\n"):
            para = para.strip()
            if para.startswith("Example:"):
                lines += ["Example:", "", "```bash", " ".join(para.removeprefix("Example:").split()), "```", ""]
            elif para:
                lines += [para, ""]
        params = [p for p in command.params if p.name != "help"]
        if params:
            lines += ["| name | kind | help |", "|---|---|---|"]
            lines += [_param_row(p, ctx) for p in params]
            lines.append("")
    return "\n".join(lines)


BENCHMARKS_PLACEHOLDER = """# Benchmarks

The benchmark has not been run for this build of the documentation, so there are no numbers here yet.

The benchmark (`descend.bench`) measures the step time of descend's optimizers against `torch.optim`, plain NumPy
and optax, and writes this page, `docs/benchmarks.md`, stamped with the machine, the versions and the date. Run it
from the repository root, then build the documentation again:

```bash
python benchmarks/step_speed.py --out docs/benchmarks.md
```
"""


# -- the tests --------------------------------------------------------------------------------------------------------


def test_inventory(tests: Path) -> str:
    """A table of the test modules: what each checks (its docstring's first paragraph) and its test functions."""
    lines = ["| module | test functions | what it checks |", "|---|---|---|"]
    total = 0
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        count = sum(1 for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))
        if not count:
            continue
        total += count
        doc = (ast.get_docstring(tree) or "").split("\n\n")[0].replace("\n", " ").replace("|", "&#124;")
        lines.append(f"| `{path.name}` | {count} | {_inline(doc)} |")
    lines.append(f"| **total** | **{total}** | |")
    return "\n".join(lines) + "\n"


def tolerance_table(tolerances: Path) -> str:
    """The tolerance constants of ``tests/tolerances.py`` with the comment above each, which gives its reason."""
    lines = ["| name | rtol | atol | why |", "|---|---|---|---|"]
    comment: list[str] = []
    previous = ""  # the reason of a constant on the line just above, which a constant without comment shares
    for line in tolerances.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("# ").strip())
            continue
        match = re.match(r"^([A-Z][A-Z0-9_]*) = (\{.*\})$", line)
        if match:
            values = ast.literal_eval(match.group(2))
            why = _inline(" ".join(comment)).replace("|", "&#124;") if comment else previous
            lines.append(f"| `{match.group(1)}` | {values.get('rtol', '')} | {values.get('atol', '')} | {why} |")
        previous = why if match else ""
        comment = []
    return "\n".join(lines) + "\n"


# -- the optimizer classes --------------------------------------------------------------------------------------------


def class_list(front: str) -> str:
    """The optimizer classes of a front (``"numpy"`` or ``"torch"``), with their signatures and docstrings.

    The classes are made from the algorithm specs when the package is imported, so they are listed from the live
    objects rather than from the source.
    """
    if front == "torch":
        try:
            import descend.torch as module
        except ImportError as exc:
            return f"*descend.torch could not be imported when this site was built ({exc}); install torch.*\n"
        prefix = "descend.torch"
    else:
        import descend as module

        prefix = "descend"
    lines = []
    for name, cls in module.OPTIMIZERS.items():
        signature = str(inspect.signature(cls)).replace("torch.Tensor", "Tensor")
        doc = _inline(inspect.cleandoc(cls.__doc__ or "")).replace(":mod:", "")
        lines += [f"### `{prefix}.{cls.__name__}`", "", "```python", f"{prefix}.{cls.__name__}{signature}", "```", ""]
        lines += [doc, "", f"The rule and its hyperparameters: [{cls.__name__}](../algorithms/{name}.md).", ""]
    return "\n".join(lines)


# -- the lab's problems -----------------------------------------------------------------------------------------------


def problem_table() -> str:
    """The lab's problems, read from its registry: name, kind, default steps and what each is."""
    try:
        from descend.lab.problems import DEFAULT_SUITE, PROBLEMS
    except ImportError as exc:
        return f"*The lab's problems could not be imported when this site was built ({exc}).*\n"
    lines = ["| name | kind | steps | what it is |", "|---|---|---:|---|"]
    for name, problem in PROBLEMS.items():
        mark = " (default suite)" if name in DEFAULT_SUITE else ""
        text = " ".join(str(getattr(problem, "description", "")).split()).replace("|", "&#124;")
        kind = getattr(problem, "family", "")
        steps = getattr(problem, "default_steps", "")
        lines.append(f"| `{name}`{mark} | {kind} | {steps} | {text} |")
    return "\n".join(lines) + "\n"
