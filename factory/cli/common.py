"""What every `factory` command shares: the app, its consoles, exit codes, choice types, the
bad-input boundary (`user_errors`) and the options that mean the same in several commands."""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Any, Literal

import typer
import typer.core
from rich.console import Console

from factory.core.errors import FactoryError
from factory.executors import ExecutorName

try:  # typer vendors its own click from 0.2x on; older ones use click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

CONTEXT = {"help_option_names": ["-h", "--help"]}
err = Console(stderr=True)


class OneLineErrors(typer.core.TyperGroup):
    """Bad flags and arguments (an unknown choice, a missing value) get one line and exit 2, like
    every other bad input, instead of click's usage box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as e:
            if not e.format_message().strip():  # no arguments at all: the help was printed
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            hint = f" (see `{ctx.command_path} -h`)" if ctx is not None else ""
            err.print(f"[bold red]error:[/] {e.format_message()}{hint}", highlight=False, soft_wrap=True, markup=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    help="Make DeepSeek-R1-style reasoning data: problems -> templates -> vLLM -> Parquet shards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
)
console = Console()

EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3  # the run finished but some samples failed (their errors are in the shards)
EXIT_BUSY = 75  # the run is held by another process: try again later (BSD's EX_TEMPFAIL)
EXIT_INTERRUPTED = 130

# Rejection reasons that say a sample failed (its request, a verifier or the judge broke), not that it was judged.
FAILURES = {"generation_error", "verifier_error", "judge_error"}
Executor = ExecutorName  # the executors' own list of names
Stage = Literal["generated", "curated", "rejected"]


def _version(value: bool) -> None:
    if value:
        from factory import __version__

        console.print(f"reasoning-factory {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Make DeepSeek-R1-style reasoning data: problems -> templates -> vLLM -> Parquet shards."""


def _print_json(data: Any) -> None:
    import json

    print(json.dumps(data, ensure_ascii=False, default=str))


def user_errors(fn: Any) -> Any:
    """Turn FactoryError into one red line + exit 2, Ctrl-C into a resume hint + exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FactoryError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted:[/] finished shards are kept; rerun the same command to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper
