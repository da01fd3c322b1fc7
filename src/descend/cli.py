"""The ``descend`` command line. It parses arguments, calls the library and prints; it computes nothing itself."""

from __future__ import annotations

import sys
from typing import Annotated

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    _MISSING = exc
    typer = None
else:
    _MISSING = None

if typer is None:  # pragma: no cover

    def main() -> None:
        print(
            f"descend's command line needs the 'lab' extra ({_MISSING}); install it with: pip install 'descend[lab]'",
            file=sys.stderr,
        )
        raise SystemExit(2)

else:
    from descend.algorithms import CONVENTIONS, REGISTRY
    from descend.algorithms.conventions import DESCRIPTIONS
    from descend.backends import BACKENDS, fused_available

    app = typer.Typer(
        help="descend: gradient descent, momentum, RMSprop, Adam and their relatives, written once and run fast.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    console = Console()

    def _fail(message: str) -> None:
        Console(stderr=True).print(f"[bold red]error:[/] {message}")
        raise typer.Exit(code=2)

    @app.command("list")
    def list_() -> None:
        """List the algorithms, conventions and backends.

        Example: descend list
        """
        table = Table(title="Algorithms")
        for column in ("name", "class", "torch.optim", "what it does"):
            table.add_column(column)
        for spec in REGISTRY.values():
            table.add_row(spec.name, spec.title, spec.torch_name or "-", spec.summary)
        console.print(table)
        conventions = Table(title="Conventions (--convention)")
        conventions.add_column("name")
        conventions.add_column("what it sets")
        for name in CONVENTIONS:
            conventions.add_row(name, DESCRIPTIONS[name])
        console.print(conventions)
        ok, why = fused_available()
        backends = Table(title="Backends (backend=)")
        backends.add_column("name")
        backends.add_column("available here")
        for name in BACKENDS:
            here = "yes" if name != "fused" or ok else f"no: {why}"
            backends.add_row(name, here)
        console.print(backends)

    @app.command()
    def describe(
        name: Annotated[str, typer.Argument(help="An algorithm name from `descend list`, e.g. adam.")],
        convention: Annotated[str, typer.Option(help=f"One of: {', '.join(CONVENTIONS)}.")] = "torch",
    ) -> None:
        """Print the update rule in force for an algorithm under a convention, with its default hyperparameters.

        Example: descend describe adam --convention keras
        """
        try:
            from descend.algorithms import get

            spec = get(name)
            hp = spec.make(convention)
        except ValueError as exc:
            _fail(str(exc))
        console.print(f"[bold]{spec.title}[/] under the [bold]{convention}[/] convention", highlight=False)
        console.print(spec.describe(hp), highlight=False, markup=False)
        values = ", ".join(f"{k}={v!r}" for k, v in hp.as_dict().items())
        console.print(f"hyperparameters: {values}", highlight=False, markup=False)

    @app.command("fit-line")
    def fit_line_command(
        optimizer: Annotated[str, typer.Option(help="An algorithm name from `descend list`.")] = "adam",
        epochs: Annotated[int, typer.Option(min=0, help="Passes over the data.")] = 10,
        lr: Annotated[float | None, typer.Option(help="Learning rate (default: the convention's).")] = None,
        convention: Annotated[str, typer.Option(help=f"One of: {', '.join(CONVENTIONS)}.")] = "article",
        per_sample: Annotated[
            bool, typer.Option("--per-sample/--full-batch", help="Update after every sample, or once per pass.")
        ] = True,
        points: Annotated[int, typer.Option(min=1, help="Number of samples in the generated line data.")] = 20,
        seed: Annotated[int, typer.Option(help="Seed of the data's noise.")] = 0,
        rows: Annotated[int, typer.Option(min=1, help="Rows shown at the start and at the end.")] = 5,
    ) -> None:
        """Fit y = a*x + b as the article does (Adam, one update per sample) and show the first and last steps.

        Example: descend fit-line --optimizer rmsprop --epochs 20
        """
        from descend.lab import default_line_data, fit_line

        x, y = default_line_data(n=points, seed=seed)
        extra = {} if lr is None else {"lr": lr}
        try:
            result = fit_line(
                x, y, optimizer=optimizer, epochs=epochs, per_sample=per_sample, convention=convention, **extra
            )
        except (ValueError, TypeError) as exc:
            _fail(str(exc))
        settings = ", ".join(f"{k}={v!r}" for k, v in result.hyperparams.items())
        console.print(f"[bold]{optimizer}[/] on y = 2x + 1 + noise ({points} points), {settings}", highlight=False)
        table = Table()
        for column in ("update", "a", "b", "loss"):
            table.add_column(column, justify="right")
        total = len(result.a_history)
        shown = list(range(min(rows, total))) + list(range(max(rows, total - rows), total))
        previous = -1
        for i in shown:
            if i != previous + 1:
                table.add_row("...", "", "", "")
            table.add_row(
                str(i), f"{result.a_history[i]:.6f}", f"{result.b_history[i]:.6f}", f"{result.loss_history[i]:.6f}"
            )
            previous = i
        console.print(table)
        console.print(f"final: a = {result.a:.6f}, b = {result.b:.6f}, loss = {result.loss:.6f}", highlight=False)

    def main() -> None:
        app()


if __name__ == "__main__":  # pragma: no cover
    main()
