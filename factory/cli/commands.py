"""The `factory` command line: each verb is a thin function over the library.

Errors for bad input reach the user here and only here, as one red line and a non-zero
exit code; a traceback means a bug in the factory, never a mistake of the user.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from factory.cli.common import (  # noqa: F401  (EXIT_* and console are the CLI's public names)
    EXIT_BAD_INPUT,
    EXIT_BUSY,
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    FAILURES,
    Executor,
    FactoryError,
    _print_json,
    app,
    console,
    err,
    user_errors,
)
from factory.cli.flags import with_settings
from factory.core.settings import flatten, from_flat, help_of, validated
from factory.filter.config import FilterConfig
from factory.generate.evaluate import EVAL_DEFAULTS, EVAL_SETTINGS, eval_config, evaluate
from factory.generate.runner import GenerateConfig
from factory.problems.importer import ImportConfig

# Generate's flags are GenerateConfig's settings (its sampling's and backend options' too); the Ray
# filter tasks' option is filter's, not generate's.
GENERATE = [leaf for leaf in flatten(GenerateConfig) if leaf.key != "num_workers"]


@app.command()
@user_errors
@with_settings(GENERATE)
def generate(
    run: Annotated[str, typer.Argument(help="Run name (folder under data/runs/) or path to a run folder.")],
    settings: dict[str, Any],
) -> None:
    """Sample n completions per problem into Parquet shards; rerun the same command to resume."""
    from factory.core.progress import RateProgress
    from factory.core.shards import resolve_run
    from factory.generate.runner import run_generation

    config = from_flat(GenerateConfig, settings, "factory generate", GENERATE)
    if config.backend == "vllm" and not config.model:
        raise FactoryError("the vllm backend needs --model: a model folder (e.g. one made by `factory tiny-model`) "
                           "or a hub id")
    run_dir = resolve_run(run)
    result = run_generation(config, run_dir, progress=RateProgress("generate", err), log=lambda m: err.print(m))
    if result.shards_written:
        rate = result.completion_tokens / result.seconds if result.seconds else 0.0
        console.print(
            f"[green]done:[/] {result.samples} samples in {result.shards_written} shards "
            f"({result.shards_done_before} already done) -> {run_dir}  "
            f"{result.completion_tokens} tokens, {rate:,.0f} tok/s, {result.errors} errors"
        )
    if result.errors:  # finished, but some samples failed: their `error` column says why
        raise typer.Exit(EXIT_PARTIAL)


# Import's flags are ImportConfig's settings; its source is the command's first argument.
IMPORT = [leaf for leaf in flatten(ImportConfig) if leaf.key != "source"]
IMPORT_SOURCE = next(leaf for leaf in flatten(ImportConfig) if leaf.key == "source")


@app.command("import")
@user_errors
@with_settings(IMPORT)
def import_(
    source: Annotated[str, typer.Argument(help=help_of(IMPORT_SOURCE.field))],
    run: Annotated[str, typer.Argument(help="Run name (folder under data/runs/) or path to a run folder.")],
    settings: dict[str, Any],
) -> None:
    """Curate generations made elsewhere: they become a run that filter, show, report, export and train read."""
    from factory.core.shards import resolve_run
    from factory.problems.importer import import_generations

    config = from_flat(ImportConfig, {**settings, "source": source}, "factory import")
    run_dir = resolve_run(run)
    result = import_generations(config, run_dir, log=lambda m: err.print(m))
    formats = ", ".join(f"{name} {count}" for name, count in sorted(result.formats.items(), key=lambda kv: -kv[1]))
    console.print(f"[green]imported:[/] {result.samples} samples ({formats}) in {result.shards_written} shards "
                  f"({result.shards_done_before} already done) -> {run_dir}"
                  + (f"; {result.empty} empty completions kept as failed samples" if result.empty else ""),
                  highlight=False, soft_wrap=True)


# Filter's flags are FilterConfig's settings, but the Ray options that size vLLM replicas.
FILTER = [leaf for leaf in flatten(FilterConfig) if leaf.key not in ("replicas", "num_gpus")]


@app.command("filter")
@user_errors
@with_settings(FILTER)
def filter_(
    run: Annotated[str, typer.Argument(help="Run name or path (its generated shards are filtered).")],
    settings: dict[str, Any],
    redo: Annotated[bool, typer.Option(help="Replace the outputs of an earlier filtering with another chain.")] = False,
) -> None:
    """Rejection sampling: write curated/ (kept) and rejected/ (with reasons) shards and the funnel."""
    from rich.progress import Progress

    from factory.core.shards import done_shards, resolve_run
    from factory.filter.chain import run_chain
    from factory.filter.config import configured_chain
    from factory.filter.funnel import print_funnel

    config = validated(from_flat(FilterConfig, settings, "factory filter", FILTER), "factory filter")
    run_dir = resolve_run(run)
    chain = configured_chain(config, run_dir)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("filter", total=len(done_shards(run_dir, "generated")))
        funnel = run_chain(run_dir, chain, workers=config.workers, redo=redo, log=lambda m: err.print(m),
                           executor=config.executor, executor_options=config.executor_options,
                           on_shard=lambda k: progress.advance(task, k))
    print_funnel(funnel, console)
    failed = sum(count for step in funnel["steps"] for reason, count in step["rejected"].items() if reason in FAILURES)
    if failed:  # finished, but samples failed (a request or a verifier broke) rather than being judged
        err.print(f"{failed} samples failed rather than being judged ({', '.join(sorted(FAILURES))}); "
                  f"see `factory show {run} --stage rejected`")
        raise typer.Exit(EXIT_PARTIAL)


@app.command("tiny-model")
@user_errors
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the model to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
) -> None:
    """Create a tiny random Qwen2 model with a character-level tokenizer (no download)."""
    from factory.train.tiny_model import build_tiny_model

    console.print(f"tiny model written to {build_tiny_model(out, seed=seed)}")


@app.command("run")
@user_errors
def run_(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    dry_run: Annotated[bool, typer.Option(help="Print the plan (stages, counts, what is done) and stop.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary for job systems.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe setting: KEY.PATH=VALUE (YAML value), e.g. generate.model=data/tiny-model; "
                      "STAGE=null drops a stage.")] = None,
    executor: Annotated[str | None, typer.Option(
        help="local or ray (overrides the recipe's `executor`); Ray options go in the recipe's `ray:` "
             "mapping.")] = None,
    redo: Annotated[bool, typer.Option(
        help="Filter again from the generated shards (after the recipe's chain changed).")] = False,
) -> None:
    """Run every stage of a recipe into one run folder; safe to repeat from a scheduler.

    Exit codes: 0 done (or nothing to do), 2 bad input or run in use, 3 finished with failed
    samples, 130 interrupted (rerun to resume).
    """
    import json

    from factory.core.shards import resolve_run
    from factory.recipe import load_recipe, plan, run_recipe

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
    from factory.cli.train import train_app

    app.add_typer(train_app(user_errors, lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True)),
                  name="train")


_add_train_commands()


EVAL_HELP = {
    "problems": "Problem source, as for generate.",
    "temperature": "Sampling temperature. 1.0 (not generate's 0.7): pass@k of the policy as GRPO samples it; "
                   "0 = greedy, with --n 1.",
    "top_p": "Nucleus sampling mass. 1.0 (not generate's 0.95): the policy's own distribution.",
    "max_tokens": "Maximum new tokens per sample. 256 (not generate's 1024), as GRPO's rollouts; "
                  "raise it for long reasoning.",
}


@app.command("eval")
@user_errors
@with_settings(EVAL_SETTINGS, EVAL_DEFAULTS, EVAL_HELP)
def eval_(
    settings: dict[str, Any],
    k: Annotated[int | None, typer.Option(help="k of pass@k (default: n).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """pass@1 and pass@k of a model, scored by the same verifiers as filters and rewards."""
    config = eval_config(settings)
    if config.backend == "vllm" and not config.model:
        raise FactoryError("the vllm backend needs --model: a model folder or a hub id")
    result = evaluate(config, k=k, log=lambda m: err.print(m))
    if json_out:
        _print_json(result)
        return
    # One line, never wrapped: scripts read it.
    console.print("  ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                            for key, value in result.items()),
                  soft_wrap=True, highlight=False, markup=False)


import factory.cli.inspect_commands  # noqa: E402,F401  (registers the commands that read runs, listed after these)


def main() -> None:
    # vLLM logs every engine step at INFO; keep the terminal for our own progress.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout is for results (--json)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bar per saved checkpoint
    app(prog_name="factory")


