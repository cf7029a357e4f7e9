"""`factory` commands that read runs and list what is there: formats, templates, show, funnel,
chains, sql, report, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factory.cli.common import FactoryError, Stage, _print_json, app, console, user_errors


@app.command()
@user_errors
def formats() -> None:
    """List the output formats: what each parser reads, and `auto`."""
    from rich.table import Table

    from factory.prompting.formats import format_names, get_format

    table = Table("format", "description")
    for name in format_names():
        table.add_row(name, get_format(name).description)
    console.print(table)


@app.command()
@user_errors
def templates(
    templates_dir: Annotated[list[Path] | None, typer.Option(help="Extra folder of template .yaml files.")] = None,
) -> None:
    """List the prompt templates with their output format and a one-line description."""
    from rich.table import Table

    from factory.prompting.templates import list_templates

    table = Table("name", "format", "description")
    for t in list_templates(templates_dir).values():
        table.add_row(t.name, t.format, t.description)
    console.print(table)


@app.command()
@user_errors
def show(
    run: Annotated[str, typer.Argument(help="Run name or path.")],
    n: Annotated[int, typer.Option("--n", "-n", help="How many samples to show.")] = 3,
    stage: Annotated[Stage, typer.Option(help="Which shards: generated, curated or rejected.")] = "generated",
    json_out: Annotated[bool, typer.Option("--json", help="Print counts and samples as one JSON object.")] = False,
) -> None:
    """Counts for a run and a few samples, rendered readably."""
    from factory.core.shards import resolve_run
    from factory.inspect.show import run_summary, show_run

    if json_out:
        _print_json(run_summary(resolve_run(run), stage, n))
    else:
        show_run(resolve_run(run), stage, n, console)


@app.command()
@user_errors
def funnel(
    run: Annotated[str, typer.Argument(help="Run name or path.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the funnel as one JSON object.")] = False,
) -> None:
    """The funnel of a filtered run: in, kept and rejected per step and reason."""
    import json

    from factory.core.lock import live_owner
    from factory.core.shards import resolve_run
    from factory.filter.funnel import check_exact, compute_funnel, print_funnel

    run_dir = resolve_run(run)
    funnel = compute_funnel(run_dir)
    _print_json(funnel) if json_out else print_funnel(funnel, console)
    if live_owner(run_dir) is None:  # while a writer works on the run its counts are in flux, not wrong
        recorded = run_dir / "filter.json"
        chain = json.loads(recorded.read_text()).get("chain", "NAME") if recorded.exists() else "NAME"
        check_exact(run_dir, funnel, f"factory filter {run} --chain {chain} --redo")


@app.command()
@user_errors
def chains(
    chains_dir: Annotated[list[Path] | None, typer.Option(help="Extra folder of chain .yaml files.")] = None,
) -> None:
    """List the filter chains and their steps; and every step with its settings."""
    from rich.table import Table

    from factory.core.settings import describe
    from factory.filter.chain import list_chains
    from factory.filter.steps import STEPS

    table = Table("chain", "steps", "description")
    for c in list_chains(chains_dir).values():
        table.add_row(c.name, ", ".join(n for n, _ in c.steps), c.description)
    console.print(table)
    steps = Table("step", "description", "settings")
    for name, description in STEPS.items():
        steps.add_row(name, description, describe(STEPS.get(name)))
    console.print(steps)


@app.command()
@user_errors
def sql(
    run: Annotated[str, typer.Argument(help="Run name or path.")],
    statement: Annotated[str, typer.Argument(help="SQL over the views generated, curated and rejected.")],
    limit: Annotated[int, typer.Option(help="Rows to print at most.")] = 50,
    unsafe: Annotated[bool, typer.Option(
        help="Let the statement read and write other files (DuckDB's file access), on your own machine.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the rows (up to --limit) as one JSON list of objects.")] = False,
) -> None:
    """Ad-hoc DuckDB SQL over a run, e.g. which problems never pass, which reason dominates."""
    from rich.table import Table

    from factory.core.shards import resolve_run
    from factory.inspect.sql import query

    table = query(resolve_run(run), statement, unsafe=unsafe)
    if json_out:
        _print_json(table.slice(0, limit).to_pylist())
        return
    out = Table(*table.column_names)
    for row in table.slice(0, limit).to_pylist():
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(out)
    if table.num_rows > limit:
        console.print(f"({table.num_rows - limit} more rows; raise --limit)")


@app.command()
@user_errors
def report(
    run: Annotated[str, typer.Argument(help="Run name or path (a filtered run).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="HTML file to write (default: RUN/report.html).")] = None,
) -> None:
    """One self-contained HTML page: funnel, lengths, pass rates, samples per problem, examples."""
    from factory.core.shards import resolve_run
    from factory.inspect.report import write_report

    console.print(f"report written to {write_report(resolve_run(run), out)}",
                  highlight=False, markup=False, soft_wrap=True)


@app.command()
@user_errors
def export(
    run: Annotated[str, typer.Argument(help="Run name or path (its curated samples are exported).")],
    to: Annotated[Path | None, typer.Option(
        "--out", "-o", "--to", help="Write a dataset folder in the Hub's layout here.")] = None,
    to_hub: Annotated[str | None, typer.Option("--to-hub", help="Upload to this Hub dataset repo, USER/NAME.")] = None,
    private: Annotated[bool, typer.Option(help="Make a new Hub repo private.")] = False,
    license_: Annotated[str, typer.Option(
        "--license",
        help="The card's license (a Hub license id, e.g. apache-2.0, mit, cc-by-4.0, other).")] = "apache-2.0",
    rejected: Annotated[bool, typer.Option(
        help="Also export the rejected samples, with their reasons, as a second config `rejected`.")] = False,
) -> None:
    """A curated run as a Hub dataset: data/train-*.parquet with chat `messages`, TRL `prompt`/`completion`
    and `solution`, and a dataset card; `--rejected` adds the rejected samples as a second config."""
    import tempfile

    from factory.core.shards import resolve_run
    from factory.hub import check_token, export_run, upload

    if not to and not to_hub:
        raise FactoryError("say where: --out DIR (a local dataset folder) and/or --to-hub USER/NAME")
    if to_hub:
        check_token()  # a missing or rejected token fails here, before any work
    with tempfile.TemporaryDirectory(prefix="factory-export-") as scratch:  # removed on any exit
        folder = to or Path(scratch) / "dataset"
        summary = export_run(resolve_run(run), folder, license=license_, rejected=rejected)
        extra = f" and {summary['rejected_rows']} rejected" if rejected else ""
        console.print(f"exported {summary['rows']} rows{extra} in {len(summary['files'])} files -> {summary['path']}",
                      highlight=False, soft_wrap=True)
        if to_hub:
            console.print(f"uploaded to {upload(folder, to_hub, private=private)}")
