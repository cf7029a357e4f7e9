"""The `factory` command line: each verb is a thin function over the library.

Errors for bad input reach the user here and only here, as one red line and a non-zero
exit code; a traceback means a bug in the factory, never a mistake of the user.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from factory.errors import FactoryError

app = typer.Typer(
    help="Make DeepSeek-R1-style reasoning data: problems -> templates -> vLLM -> Parquet shards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3  # the run finished but some samples failed (their errors are in the shards)
EXIT_INTERRUPTED = 130


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


def _parse_engine_args(items: list[str] | None) -> dict[str, Any]:
    from factory.files import parse_yaml_value

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise FactoryError(f"bad --engine-arg '{item}': write KEY=VALUE, e.g. --engine-arg max_model_len=4096")
        out[key.replace("-", "_")] = parse_yaml_value(value, f"--engine-arg {key}")
    return out


@app.command()
@user_errors
def generate(
    run: Annotated[str, typer.Argument(help="Run name (folder under data/runs/) or path to a run folder.")],
    problems: Annotated[str, typer.Option("--problems", "-p", help="Source: file (.jsonl/.parquet/.csv), datasets folder, hf:ORG/NAME[:SPLIT], builtin:arithmetic?n=100&seed=0, gym:NAME?n=100&seed=0 (reasoning-gym), or an earlier run folder.")] = "builtin:arithmetic",
    model: Annotated[str, typer.Option("--model", "-m", help="Model folder or hub id (vllm); served model name (openai, default: the first served).")] = "",
    template: Annotated[str, typer.Option("--template", "-t", help="Template name (see `factory templates`) or path to a .yaml file.")] = "r1_zero",
    backend: Annotated[str, typer.Option(help="vllm (offline engine) or openai (any OpenAI-compatible server).")] = "vllm",
    n: Annotated[int, typer.Option("--n", "-n", help="Samples per problem.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 0.95,
    top_k: Annotated[int, typer.Option(help="Top-k sampling (-1 = off).")] = -1,
    max_tokens: Annotated[int, typer.Option(help="Maximum new tokens per sample.")] = 1024,
    seed: Annotated[int, typer.Option(help="Run seed; per-request seeds derive from it.")] = 0,
    seed_mode: Annotated[str, typer.Option(help="request: each prompt has its own seed (resumed runs repeat texts); engine: only the engine is seeded.")] = "request",
    prompt_mode: Annotated[str, typer.Option(help="chat (model's chat template), base (plain text), or auto.")] = "auto",
    mapping: Annotated[list[str] | None, typer.Option("--map", help="Column mapping FIELD=COLUMN for problem, answer, tests, task, id.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N problems.")] = None,
    shard_size: Annotated[int, typer.Option(help="Samples per shard.")] = 2048,
    templates_dir: Annotated[list[Path] | None, typer.Option(help="Extra folder of template .yaml files (searched first).")] = None,
    engine_arg: Annotated[list[str] | None, typer.Option(help="vLLM engine argument KEY=VALUE, e.g. max_model_len=4096.")] = None,
    base_url: Annotated[str, typer.Option(help="openai backend: API root.")] = "http://127.0.0.1:8000/v1",
    api_key_env: Annotated[str, typer.Option(help="openai backend: environment variable holding the API key.")] = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option(help="openai backend: requests in flight at most.")] = 32,
    max_retries: Annotated[int, typer.Option(help="openai backend: retries of a failed request, with backoff.")] = 4,
    executor: Annotated[str, typer.Option(help="local, or ray: shards go to vLLM replicas on a Ray cluster (same output).")] = "local",
    replicas: Annotated[int, typer.Option(help="ray: vLLM engines (actors) running shards in parallel.")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="ray: cluster to join (default: RAY_ADDRESS, else a local one).")] = None,
) -> None:
    """Sample n completions per problem into Parquet shards; rerun the same command to resume."""
    from factory.generate.runner import GenerateConfig, run_generation
    from factory.progress import RateProgress
    from factory.sample import Sampling
    from factory.shards import resolve_run
    from factory.sources import parse_mapping

    if backend == "vllm" and not model:
        raise FactoryError("the vllm backend needs --model: a model folder (e.g. one made by `factory tiny-model`) or a hub id")
    config = GenerateConfig(
        problems=problems,
        model=model,
        template=template,
        backend=backend,
        sampling=Sampling(temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, n=n, seed=seed),
        mapping=parse_mapping(mapping),
        limit=limit,
        prompt_mode=prompt_mode,
        seed_mode=seed_mode,
        shard_size=shard_size,
        templates_dirs=[str(d) for d in templates_dir or []],
        backend_options={
            "engine_args": _parse_engine_args(engine_arg),
            "base_url": base_url,
            "api_key_env": api_key_env,
            "concurrency": concurrency,
            "max_retries": max_retries,
        },
        executor=executor,
        executor_options={"replicas": replicas, **({"address": ray_address} if ray_address else {})},
    )
    run_dir = resolve_run(run)
    result = run_generation(config, run_dir, progress=RateProgress("generate", err), log=lambda m: err.print(m))
    if result.shards_written:
        rate = result.completion_tokens / result.seconds if result.seconds else 0.0
        console.print(
            f"[green]done:[/] {result.samples} samples in {result.shards_written} shards "
            f"({result.shards_done_before} already done) -> {run_dir}  "
            f"{result.completion_tokens} tokens, {rate:,.0f} tok/s, {result.errors} errors"
        )


@app.command("import")
@user_errors
def import_(
    source: Annotated[str, typer.Argument(help="Existing generations: .jsonl/.parquet/.csv, a datasets folder or hf:ORG/NAME[:SPLIT], with a completion column (text or list of texts) or chat messages.")],
    run: Annotated[str, typer.Argument(help="Run name (folder under data/runs/) or path to a run folder.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="Output format of the completions (see `factory formats`); auto detects it per sample.")] = "auto",
    model: Annotated[str, typer.Option("--model", "-m", help="Who wrote the completions, recorded in every sample.")] = "unknown",
    mapping: Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN for problem, answer, tests, task, id, completion, messages, reasoning, finish_reason, completion_tokens, prefill, model.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Import only the first N rows.")] = None,
    shard_size: Annotated[int, typer.Option(help="Samples per shard.")] = 2048,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer (model folder or hub id) to count completion tokens when the source has none.")] = None,
    allow_empty: Annotated[bool, typer.Option(help="Keep empty completions as failed samples instead of refusing the source.")] = False,
) -> None:
    """Curate generations made elsewhere: they become a run that filter, show, report, export and train read."""
    from factory.importer import IMPORT_FIELDS, ImportConfig, import_generations
    from factory.shards import resolve_run
    from factory.sources import FIELDS

    fields: dict[str, str] = {}
    for item in mapping or []:
        key, sep, column = item.partition("=")
        if not sep or not column or key not in (*FIELDS, *IMPORT_FIELDS):
            raise FactoryError(f"bad --map '{item}': write FIELD=COLUMN with FIELD one of {', '.join((*FIELDS, *IMPORT_FIELDS))}")
        fields[key] = column
    config = ImportConfig(source=source, format=format_, model=model, mapping=fields, limit=limit,
                          shard_size=shard_size, tokenizer=tokenizer, allow_empty=allow_empty)
    run_dir = resolve_run(run)
    result = import_generations(config, run_dir, log=lambda m: err.print(m))
    formats = ", ".join(f"{name} {count}" for name, count in sorted(result.formats.items(), key=lambda kv: -kv[1]))
    console.print(f"[green]imported:[/] {result.samples} samples ({formats}) in {result.shards_written} shards "
                  f"({result.shards_done_before} already done) -> {run_dir}"
                  + (f"; {result.empty} empty completions kept as failed samples" if result.empty else ""),
                  highlight=False, soft_wrap=True)


@app.command()
@user_errors
def formats() -> None:
    """List the output formats: what each parser reads, and `auto`."""
    from rich.table import Table

    from factory.formats import AUTO_FORMAT, FORMATS, format_names

    table = Table("format", "description")
    for name in format_names():
        table.add_row(name, (FORMATS.get(name) or AUTO_FORMAT).description)
    console.print(table)


@app.command()
@user_errors
def templates(
    templates_dir: Annotated[list[Path] | None, typer.Option(help="Extra folder of template .yaml files.")] = None,
) -> None:
    """List the prompt templates with their output format and a one-line description."""
    from rich.table import Table

    from factory.templates import list_templates

    table = Table("name", "format", "description")
    for t in list_templates(templates_dir).values():
        table.add_row(t.name, t.format, t.description)
    console.print(table)


@app.command()
@user_errors
def show(
    run: Annotated[str, typer.Argument(help="Run name or path.")],
    n: Annotated[int, typer.Option("--n", "-n", help="How many samples to show.")] = 3,
    stage: Annotated[str, typer.Option(help="Which shards: generated, curated or rejected.")] = "generated",
) -> None:
    """Counts for a run and a few samples, rendered readably."""
    from factory.show import show_run
    from factory.shards import resolve_run

    show_run(resolve_run(run), stage, n, console)


@app.command("filter")
@user_errors
def filter_(
    run: Annotated[str, typer.Argument(help="Run name or path (its generated shards are filtered).")],
    chain: Annotated[str, typer.Option("--chain", "-c", help="Chain name (see `factory chains`) or path to a chain .yaml.")] = "cold_start",
    workers: Annotated[int | None, typer.Option(help="Worker processes for per-sample steps (default: all cores).")] = None,
    redo: Annotated[bool, typer.Option(help="Replace the outputs of an earlier filtering with another chain.")] = False,
    chains_dir: Annotated[list[Path] | None, typer.Option(help="Extra folder of chain .yaml files (searched first).")] = None,
    executor: Annotated[str, typer.Option(help="local (worker processes), or ray: per-sample steps as Ray Data tasks (same output).")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="ray: cluster to join (default: RAY_ADDRESS, else a local one).")] = None,
) -> None:
    """Rejection sampling: write curated/ (kept) and rejected/ (with reasons) shards and the funnel."""
    from rich.progress import Progress

    from factory.chain import load_chain, run_chain
    from factory.funnel import print_funnel
    from factory.shards import done_shards, resolve_run

    run_dir = resolve_run(run)
    loaded = load_chain(chain, chains_dir)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("filter", total=len(done_shards(run_dir, "generated")))
        funnel = run_chain(run_dir, loaded, workers=workers, redo=redo, log=lambda m: err.print(m),
                           executor=executor, executor_options={"address": ray_address} if ray_address else {},
                           on_shard=lambda k: progress.advance(task, k))
    print_funnel(funnel, console)


@app.command()
@user_errors
def funnel(run: Annotated[str, typer.Argument(help="Run name or path.")]) -> None:
    """The funnel of a filtered run: in, kept and rejected per step and reason."""
    from factory.funnel import compute_funnel, print_funnel
    from factory.shards import resolve_run

    print_funnel(compute_funnel(resolve_run(run)), console)


@app.command()
@user_errors
def chains(
    chains_dir: Annotated[list[Path] | None, typer.Option(help="Extra folder of chain .yaml files.")] = None,
) -> None:
    """List the filter chains and their steps; and every step with its settings."""
    from rich.table import Table

    from factory.chain import list_chains
    from factory.filters import STEPS, step_class
    from factory.filters.base import describe_settings

    table = Table("chain", "steps", "description")
    for c in list_chains(chains_dir).values():
        table.add_row(c.name, ", ".join(n for n, _ in c.steps), c.description)
    console.print(table)
    steps = Table("step", "description", "settings")
    for name in STEPS:
        cls = step_class(name)
        steps.add_row(name, cls.description, describe_settings(cls))
    console.print(steps)


@app.command("tiny-model")
@user_errors
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the model to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
) -> None:
    """Create a tiny random Qwen2 model with a character-level tokenizer (no download)."""
    from factory.tiny_model import build_tiny_model

    console.print(f"tiny model written to {build_tiny_model(out, seed=seed)}")


@app.command()
@user_errors
def sql(
    run: Annotated[str, typer.Argument(help="Run name or path.")],
    statement: Annotated[str, typer.Argument(help="SQL over the views generated, curated and rejected.")],
    limit: Annotated[int, typer.Option(help="Rows to print at most.")] = 50,
    unsafe: Annotated[bool, typer.Option(help="Let the statement read and write other files (DuckDB's file access), on your own machine.")] = False,
) -> None:
    """Ad-hoc DuckDB SQL over a run, e.g. which problems never pass, which reason dominates."""
    from rich.table import Table

    from factory.shards import resolve_run
    from factory.sql import query

    table = query(resolve_run(run), statement, unsafe=unsafe)
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
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write (default: RUN/report.html).")] = None,
) -> None:
    """One self-contained HTML page: funnel, lengths, pass rates, samples per problem, examples."""
    from factory.report import write_report
    from factory.shards import resolve_run

    console.print(f"report written to {write_report(resolve_run(run), out)}", highlight=False, markup=False, soft_wrap=True)


@app.command()
@user_errors
def export(
    run: Annotated[str, typer.Argument(help="Run name or path (its curated samples are exported).")],
    to: Annotated[Path | None, typer.Option("--to", help="Write a dataset folder in the Hub's layout here.")] = None,
    to_hub: Annotated[str | None, typer.Option("--to-hub", help="Upload to this Hub dataset repo, USER/NAME.")] = None,
    private: Annotated[bool, typer.Option(help="Make a new Hub repo private.")] = False,
) -> None:
    """A curated run as a Hub dataset: data/train-*.parquet with chat `messages`, and a dataset card."""
    import tempfile

    from factory.hub import check_token, export_run, upload
    from factory.shards import resolve_run

    if not to and not to_hub:
        raise FactoryError("say where: --to DIR (a local dataset folder) and/or --to-hub USER/NAME")
    if to_hub:
        check_token()  # a missing or rejected token fails here, before any work
    with tempfile.TemporaryDirectory(prefix="factory-export-") as scratch:  # removed on any exit
        folder = to or Path(scratch) / "dataset"
        summary = export_run(resolve_run(run), folder)
        console.print(f"exported {summary['rows']} rows in {summary['files']} files -> {summary['path']}")
        if to_hub:
            console.print(f"uploaded to {upload(folder, to_hub, private=private)}")


@app.command("run")
@user_errors
def run_(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    dry_run: Annotated[bool, typer.Option(help="Print the plan (stages, counts, what is done) and stop.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary for job systems.")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe setting: KEY.PATH=VALUE (YAML value), e.g. generate.model=data/tiny-model; STAGE=null drops a stage.")] = None,
    executor: Annotated[str | None, typer.Option(help="local or ray (overrides the recipe's `executor`); Ray options go in the recipe's `ray:` mapping.")] = None,
    redo: Annotated[bool, typer.Option(help="Filter again from the generated shards (after the recipe's chain changed).")] = False,
) -> None:
    """Run every stage of a recipe into one run folder; safe to repeat from a scheduler.

    Exit codes: 0 done (or nothing to do), 2 bad input or run in use, 3 finished with failed
    samples, 130 interrupted (rerun to resume).
    """
    import json

    from factory.recipe import load_recipe, plan, run_recipe
    from factory.shards import resolve_run

    loaded = load_recipe(recipe, [*(set_ or []), *([f"executor={executor}"] if executor else [])])
    if dry_run:
        steps = plan(loaded, resolve_run(str(loaded["run"])))
        console.print_json(json.dumps(steps)) if json_out else _print_stages("plan", steps)
        return
    summary = run_recipe(loaded, log=lambda m: err.print(m), redo_filter=redo)
    if json_out:
        print(json.dumps(summary, default=str))
    else:
        _print_stages(str(summary["run"]), summary["stages"])
    if summary["errors"]:
        raise typer.Exit(EXIT_PARTIAL)


def _print_stages(title: str, stages: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("stage", "details", title=title, title_justify="left")
    for s in stages:
        table.add_row(s["stage"], "  ".join(f"{k} {v}" for k, v in s.items() if k != "stage"))
    console.print(table)


def _add_train_commands() -> None:
    from factory.train.cli import train_app

    app.add_typer(train_app(user_errors, lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True)), name="train")


_add_train_commands()


@app.command("eval")
@user_errors
def eval_(
    model: Annotated[str, typer.Option("--model", "-m", help="Model folder to evaluate.")],
    problems: Annotated[str, typer.Option("--problems", "-p", help="Problem source, as for generate.")] = "builtin:arithmetic?n=200&seed=99",
    n: Annotated[int, typer.Option("--n", "-n", help="Samples per problem.")] = 4,
    k: Annotated[int | None, typer.Option(help="k of pass@k (default: n).")] = None,
    template: Annotated[str, typer.Option("--template", "-t", help="Prompt template.")] = "r1_zero",
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy, with n 1).")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Maximum new tokens per sample.")] = 256,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N problems.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    engine_arg: Annotated[list[str] | None, typer.Option(help="vLLM engine argument KEY=VALUE.")] = None,
) -> None:
    """pass@1 and pass@k of a model, scored by the same verifiers as filters and rewards."""
    from factory.evaluate import evaluate

    result = evaluate(model, problems, n=n, k=k, template=template, temperature=temperature, max_tokens=max_tokens,
                      seed=seed, limit=limit, backend_options={"engine_args": _parse_engine_args(engine_arg)},
                      log=lambda m: err.print(m))
    # One line, never wrapped: scripts read it.
    console.print("  ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}" for key, value in result.items()),
                  soft_wrap=True, highlight=False, markup=False)


def main() -> None:
    # vLLM logs every engine step at INFO; keep the terminal for our own progress.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout is for results (--json)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bar per saved checkpoint
    app(prog_name="factory")


if __name__ == "__main__":
    sys.exit(main())
