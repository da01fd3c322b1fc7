"""The ``descend`` command line. It parses arguments, calls the library and prints; it computes nothing itself."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    _MISSING = exc
    typer = None
else:
    _MISSING = None

if TYPE_CHECKING:
    from rich.progress import Progress

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
    UNWRAPPED_WIDTH = 100_000

    def _console(stderr: bool = False) -> Console:
        """A console on stdout (or stderr) as it is now. A terminal gets Rich's usual layout; anything else (a pipe, a
        file, a test runner) gets lines as long as they need to be, never hard-wrapped, so paths, formulas and messages
        stay whole whatever the terminal width or the COLUMNS variable say."""
        probe = Console(stderr=stderr)
        if probe.is_terminal:
            return probe
        return Console(stderr=stderr, soft_wrap=True, width=UNWRAPPED_WIDTH)

    def _print(*objects: object, **kwargs: Any) -> None:
        _console().print(*objects, **kwargs)

    def _fail(message: str) -> NoReturn:
        from rich.markup import escape

        _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        raise typer.Exit(code=2)

    def _check_file(path: Path, suffix: str) -> None:
        from descend.lab.store import check_writable

        if path.suffix.lower() != suffix:
            _fail(f"{str(path)!r} should end in {suffix}")
        try:
            check_writable(path.parent if str(path.parent) else Path("."))
        except ValueError as exc:
            _fail(str(exc))

    @app.command("list")
    def list_() -> None:
        """List the algorithms, the lab's optimizers and problems, the conventions and the backends.

        Example: descend list
        """

        table = Table(title="Algorithms")
        for column in ("name", "class", "torch.optim", "what it does"):
            table.add_column(column)
        for spec in REGISTRY.values():
            table.add_row(spec.name, spec.title, spec.torch_name or "-", spec.summary)
        _print(table)
        conventions = Table(title="Conventions (--convention)")
        conventions.add_column("name")
        conventions.add_column("what it sets")
        for name in CONVENTIONS:
            conventions.add_row(name, DESCRIPTIONS[name])
        _print(conventions)
        ok, why = fused_available()
        backends = Table(title="Backends (backend=)")
        backends.add_column("name")
        backends.add_column("available here")
        for name in BACKENDS:
            here = "yes" if name != "fused" or ok else f"no: {why}"
            backends.add_row(name, here)
        _print(backends)
        from descend.lab import listing

        for table in listing.lab_tables():
            _print(table)

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
        _print(f"[bold]{spec.title}[/] under the [bold]{convention}[/] convention", highlight=False)
        _print(spec.describe(hp, convention), highlight=False, markup=False)
        values = ", ".join(f"{k}={v!r}" for k, v in hp.as_dict().items())
        _print(f"hyperparameters: {values}", highlight=False, markup=False)

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
        plot: Annotated[
            Path | None, typer.Option(help="Also draw the data, the fitted lines and the loss into this PNG file.")
        ] = None,
    ) -> None:
        """Fit y = a*x + b as the article does (Adam, one update per sample) and show the first and last steps.

        Example: descend fit-line --optimizer rmsprop --epochs 20 --plot fit.png
        """
        from descend.lab import default_line_data, fit_line

        if plot is not None:
            _check_file(plot, ".png")
        x, y = default_line_data(n=points, seed=seed)
        extra = {} if lr is None else {"lr": lr}
        try:
            result = fit_line(
                x, y, optimizer=optimizer, epochs=epochs, per_sample=per_sample, convention=convention, **extra
            )
        except (ValueError, TypeError) as exc:
            _fail(str(exc))
        settings = ", ".join(f"{k}={v!r}" for k, v in result.hyperparams.items())
        _print(f"[bold]{optimizer}[/] on y = 2x + 1 + noise ({points} points), {settings}", highlight=False)
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
        _print(table)
        _print(f"final: a = {result.a:.6f}, b = {result.b:.6f}, loss = {result.loss:.6f}", highlight=False)
        if plot is not None:
            from descend.lab.plots import fit_line_plot

            how = "one update per sample" if per_sample else "one update per pass"
            title = f"{optimizer}, lr {result.hyperparams['lr']:g} ({convention} convention), {epochs} passes, {how}"
            fit_line_plot(x, y, result.a_history, result.b_history, result.loss_history, title, plot)
            _print(f"plot: {plot}", highlight=False)

    def _progress() -> Progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        return Progress(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=_console(),
            transient=False,
        )

    def _pair(text: str | None, what: str) -> tuple[float, float] | None:
        if text is None:
            return None
        try:
            a, b = (float(v) for v in text.split(","))
        except ValueError:
            _fail(f"--{what} must be two numbers separated by a comma, like 1.5,-2; got {text!r}")
        return a, b

    @app.command()
    def compare(
        optimizers: Annotated[str | None, typer.Option(help="Comma-separated lab optimizers (`descend list`).")] = None,
        problems: Annotated[str | None, typer.Option(help="Comma-separated problems (see `descend list`).")] = None,
        expr: Annotated[
            str | None,
            typer.Option(
                help='Your own f(x, y), e.g. "(1-x)**2 + 100*(y-x**2)**2"; numbers, x, y, '
                "+ - * / ** and sin cos tan exp log sqrt tanh sinh cosh abs atan."
            ),
        ] = None,
        start: Annotated[
            str | None,
            typer.Option(
                help="Start point x,y for --expr (default -1.5,1.5): the first run starts there, the others at points "
                "around it (Gaussian, sd 0.1), so that success over runs says how much the start matters."
            ),
        ] = None,
        steps: Annotated[int | None, typer.Option(min=1, help="Updates per run (default: each problem's own).")] = None,
        seeds: Annotated[int, typer.Option(min=1, help="Runs per optimizer and problem (seeds or start points).")] = 3,
        seed: Annotated[int, typer.Option(min=0, help="First seed; the same seed gives the same results.")] = 0,
        convention: Annotated[str, typer.Option(help=f"One of: {', '.join(CONVENTIONS)}.")] = "torch",
        lr: Annotated[float | None, typer.Option(help="One fixed lr for all optimizers (no tuning).")] = None,
        tune: Annotated[bool, typer.Option("--tune/--no-tune", help="Grid-search each lr per problem.")] = True,
        tune_momentum: Annotated[bool, typer.Option(help="Also tune momentum / beta1 over 0.5, 0.9, 0.99.")] = False,
        out: Annotated[Path | None, typer.Option(help="Output folder (default: descend-runs/<timestamp>).")] = None,
        resume: Annotated[bool, typer.Option(help="Keep runs already saved in --out (or the latest folder).")] = False,
        jobs: Annotated[int, typer.Option(min=1, help="Worker processes (results do not depend on it).")] = 2,
        plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the pictures and report.html.")] = True,
    ) -> None:
        """Run optimizers side by side on test functions and real data, fairly tuned, and write a report.

        With no arguments: sgd, momentum, nesterov, rmsprop, adagrad, adam, adamw, nadam, amsgrad, lion and
        adamw_schedulefree, and muon-adamw (Muon with AdamW) on the problems that have a weight matrix.

        They run on the default suite (`descend list`), each lr tuned per problem, 3 runs each.

        Writes results.json, results.csv, PNG plots, GIFs and report.html into descend-runs/<timestamp>/.

        Example: descend compare --optimizers sgd,momentum,rmsprop,adam --problems rosenbrock,beale --steps 200

        Example: descend compare --expr "(1-x)**2 + 100*(y-x**2)**2" --start -1,2 --out runs/mine
        """
        import time

        from descend.lab import compare as lab
        from descend.lab.contestants import CONTESTANTS, DEFAULT_OPTIMIZERS, parse_names
        from descend.lab.problems import DEFAULT_SUITE, PROBLEMS, from_expression
        from descend.lab.store import check_writable

        try:
            names = parse_names(optimizers, CONTESTANTS, "optimizers", DEFAULT_OPTIMIZERS)
            chosen: list = parse_names(problems, PROBLEMS, "problems", [] if expr else DEFAULT_SUITE)
            if expr is not None:
                chosen.append(from_expression(expr, _pair(start, "start") or (-1.5, 1.5)))
            elif start is not None:
                _fail("--start only applies to --expr")
            config = lab.CompareConfig(
                optimizers=names,
                problems=chosen,
                steps=steps,
                seeds=seeds,
                seed=seed,
                convention=convention,
                tune=tune,
                lr=lr,
                tune_momentum=tune_momentum,
            )
            total = lab.total_units(config)
            if out is None and resume:
                found = sorted(p for p in Path("descend-runs").glob("*") if p.is_dir())
                if not found:
                    _fail("--resume found no earlier run under descend-runs/; give --out FOLDER")
                out = found[-1]
            folder = check_writable(out or lab.default_out_dir())
            if not resume:
                _refuse_earlier_results(folder)
        except ValueError as exc:
            _fail(str(exc))
        if expr is not None:
            beside = (
                f" beside {', '.join(str(p) for p in chosen[:-1])}"
                if len(chosen) > 1
                else (" alone (add --problems NAMES to run lab problems beside it)")
            )
            first = f"run 1 starts at {start}" if start is not None else "run 1 starts at -1.5,1.5"
            others = f", runs 2 to {seeds} at points around it (sd 0.1)" if seeds > 1 else ""
            _print(f"--expr: your function runs{beside}; {first}{others}", highlight=False, markup=False)
        began = time.perf_counter()
        try:
            with _sigterm_as_interrupt():
                outcome, plots_done = _run_compare(config, folder, resume, jobs, plots, total, began)
        except KeyboardInterrupt:
            _console(stderr=True).print(
                f"interrupted: the runs finished so far are saved in {folder}; continue with --resume --out {folder}",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(code=130) from None
        except ValueError as exc:  # a saved run that cannot be read back with --resume
            _fail(str(exc))
        from descend.lab.tables import rich_tables, rich_verdict
        from descend.lab.verdict import verdict

        for renderable in [*rich_verdict(outcome, verdict(outcome)), *rich_tables(outcome)]:
            _print(renderable)
        if outcome.resumed:
            _print(f"kept {len(outcome.resumed)} runs already saved in {folder}", highlight=False)
        report = f", {folder / 'report.html'}" if plots_done else ""
        _print(f"results: {folder / 'results.json'}, {folder / 'results.csv'}{report}", highlight=False)

    def _refuse_earlier_results(folder: Path) -> None:
        """Refuse an output folder that holds an earlier comparison, so that old pictures and results never sit
        beside new ones."""
        if not folder.is_dir():
            return
        found = sorted(
            p.name
            for p in folder.iterdir()
            if p.name in ("results.json", "results.csv", "report.html", "runs") or p.suffix in (".png", ".gif")
        )
        if found:
            shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
            raise ValueError(
                f"the output folder {str(folder)!r} already holds an earlier comparison ({shown}); add "
                "--resume to continue it, or give another --out"
            )

    @contextmanager
    def _sigterm_as_interrupt() -> Iterator[None]:
        """Treat SIGTERM like Ctrl-C while a comparison runs: stop the workers, keep what was saved, no debris."""

        from descend.lab.workers import request_stop

        def interrupt(signum: int, frame: object) -> None:
            request_stop()  # heard even where Python drops the exception below (see request_stop)
            raise KeyboardInterrupt

        try:
            previous = signal.signal(signal.SIGTERM, interrupt)
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _run_compare(
        config: object, folder: Path, resume: bool, jobs: int, plots: bool, total: int, began: float
    ) -> tuple[object, bool]:
        """Run a comparison and draw its pictures under progress bars."""
        import time

        from descend.lab import compare as lab

        with _progress() as bar:
            task = bar.add_task("tuning and running", total=total)
            outcome = lab.compare(
                config,
                folder,
                resume=resume,
                jobs=jobs,
                progress=lambda n, label: bar.update(task, advance=n, description=label),
            )
            bar.update(task, completed=total, description="runs done")
            if plots:
                from descend.lab.report import picture_count, write_pictures, write_report

                task2 = bar.add_task("pictures", total=picture_count(outcome))

                def drew(name: str) -> None:
                    bar.update(task2, advance=1, description=f"drew {name}")

                pictures = write_pictures(outcome, folder, jobs=jobs, on_picture=drew, summary=True)
                write_report(outcome, folder, pictures, elapsed=time.perf_counter() - began)
        return outcome, plots

    @app.command()
    def train(
        dataset: Annotated[
            str, typer.Option(help="digits, breast-cancer, wine or iris (bundled with scikit-learn).")
        ] = "digits",
        model: Annotated[str, typer.Option(help="logistic, softmax or mlp.")] = "mlp",
        optimizers: Annotated[str, typer.Option(help="Comma-separated lab optimizers.")] = "adam,sgd",
        epochs: Annotated[int, typer.Option(min=1, help="Passes over the training set.")] = 10,
        batch_size: Annotated[int, typer.Option(min=1, help="Samples per update.")] = 32,
        lr: Annotated[float | None, typer.Option(help="Learning rate (default: each optimizer's own).")] = None,
        convention: Annotated[str, typer.Option(help=f"One of: {', '.join(CONVENTIONS)}.")] = "torch",
        seed: Annotated[int, typer.Option(min=0, help="Seeds the weights and the batch order.")] = 0,
    ) -> None:
        """Train a torch model on a bundled data set with descend's torch.optim drop-ins; report test accuracy.

        Example: descend train --dataset digits --model mlp --optimizers adam,sgd --epochs 5
        """
        from descend.lab.contestants import CONTESTANTS, parse_names
        from descend.lab.train import TorchUnavailable
        from descend.lab.train import train as run_training

        try:
            names = parse_names(optimizers, CONTESTANTS, "optimizers", [])
            from descend.algorithms.conventions import check_convention

            check_convention(convention)
            with _progress() as bar:
                task = bar.add_task("training", total=epochs * len(names))
                results = run_training(
                    dataset,
                    model,
                    names,
                    epochs,
                    batch_size,
                    lr,
                    convention,
                    seed,
                    on_epoch=lambda name, epoch: bar.update(task, advance=1, description=f"{name} epoch {epoch}"),
                )
        except (ValueError, TorchUnavailable) as exc:
            _fail(str(exc))
        table = Table(title=f"{model} on {dataset}, {epochs} epochs, batches of {batch_size}")
        for column, right in (
            ("optimizer", False),
            ("lr", True),
            ("train loss", True),
            ("test accuracy", True),
            ("time (s)", True),
        ):
            table.add_column(column, justify="right" if right else "left")
        for r in results:
            table.add_row(
                r.optimizer,
                f"{r.hyperparams['lr']:g}",
                f"{r.train_loss[-1]:.4f}",
                f"{100 * r.test_accuracy:.1f}%",
                f"{r.wall_time:.2f}",
            )
        _print(table)
        if lr is None:
            _print(
                f"lr: each optimizer's default under the {convention} convention, not tuned; set one with "
                "--lr, or compare tuned rates with `descend compare --problems torch-mlp-digits`",
                highlight=False,
            )

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def bench(ctx: typer.Context) -> None:
        """Time the optimizers' step (runs descend.bench; extra arguments are passed on to it).

        With no arguments, a quick look (the mlp case, sgd and adam, 3 repeats); --all runs every case and algorithm
        with 9 repeats (minutes, and about 10 GB of memory). Its own options: descend bench -- --help

        Example: descend bench --cases mlp --algorithms adam sgd --repeats 3
        """
        try:
            from descend import bench as bench_module
        except ImportError as exc:
            _fail(f"the benchmark is not available in this installation (descend.bench: {exc})")
        if not hasattr(bench_module, "main"):
            _fail("the benchmark is not available in this installation (descend.bench has no main())")
        args = list(ctx.args)
        if not args:
            _console(stderr=True).print(
                "a quick run: the mlp case, sgd and adam, 3 repeats; descend bench --all runs everything",
                highlight=False,
                markup=False,
            )
            args = ["--quick"]
        elif args == ["--all"]:
            args = []
        code = bench_module.main(args)
        raise typer.Exit(code=code if isinstance(code, int) else 0)

    def main() -> None:
        app()


if __name__ == "__main__":  # pragma: no cover
    main()
