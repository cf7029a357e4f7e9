"""The `factory` command line: each verb is a thin function over the library.

Errors for bad input reach the user here and only here, as one red line and a non-zero
exit code; a traceback means a bug in the factory, never a mistake of the user.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from factory.cli_common import (  # noqa: F401  (EXIT_* and console are the CLI's public names)
    EXIT_BAD_INPUT, EXIT_BUSY, EXIT_INTERRUPTED, EXIT_PARTIAL, FAILURES, Backend, Executor, FactoryError,
    ApiKeyEnv, BaseUrl, _print_json, ColumnMap, Concurrency, EngineArgs, MaxRetries, PromptMode, app, backend_options, console,
    err, user_errors,
)


@app.command()
@user_errors
def generate(
    run: Annotated[str, typer.Argument(help="Run name (folder under data/runs/) or path to a run folder.")],
    problems: Annotated[str, typer.Option("--problems", "-p", help="Source: file (.jsonl/.parquet/.csv), datasets folder, hf:ORG/NAME[:SPLIT], builtin:arithmetic?n=100&seed=0, gym:NAME?n=100&seed=0 (reasoning-gym), or an earlier run folder.")] = "builtin:arithmetic",
    model: Annotated[str, typer.Option("--model", "-m", help="Model folder or hub id (vllm); served model name (openai, default: the first served).")] = "",
    template: Annotated[str, typer.Option("--template", "-t", help="Template name (see `factory templates`) or path to a .yaml file.")] = "r1_zero",
    backend: Annotated[Backend, typer.Option(help="vllm (offline engine) or openai (any OpenAI-compatible server).")] = "vllm",
    n: Annotated[int, typer.Option("--n", "-n", help="Samples per problem.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 0.95,
    top_k: Annotated[int, typer.Option(help="Top-k sampling (-1 = off).")] = -1,
    max_tokens: Annotated[int, typer.Option(help="Maximum new tokens per sample.")] = 1024,
    seed: Annotated[int, typer.Option(help="Run seed; per-request seeds derive from it.")] = 0,
    seed_mode: Annotated[Literal["request", "engine"], typer.Option(help="request: each prompt has its own seed (resumed runs repeat texts); engine: only the engine is seeded.")] = "request",
    prompt_mode: Annotated[PromptMode, typer.Option(help="chat (model's chat template), base (plain text), or auto.")] = "auto",
    mapping: ColumnMap = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N problems.")] = None,
    shard_size: Annotated[int, typer.Option(help="Samples per shard.")] = 2048,
    templates_dir: Annotated[list[Path] | None, typer.Option(help="Extra folder of template .yaml files (searched first).")] = None,
    engine_arg: EngineArgs = None,
    base_url: BaseUrl = "http://127.0.0.1:8000/v1",
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: Concurrency = 32,
    max_retries: MaxRetries = 4,
    executor: Annotated[Executor, typer.Option(help="local, or ray: shards go to vLLM replicas on a Ray cluster (same output).")] = "local",
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
        backend_options=backend_options(engine_arg, base_url, api_key_env, concurrency, max_retries),
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
    if result.errors:  # finished, but some samples failed: their `error` column says why
        raise typer.Exit(EXIT_PARTIAL)


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
    from factory.sources import FIELDS, parse_mapping

    fields = parse_mapping(mapping, (*FIELDS, *IMPORT_FIELDS))
    config = ImportConfig(source=source, format=format_, model=model, mapping=fields, limit=limit,
                          shard_size=shard_size, tokenizer=tokenizer, allow_empty=allow_empty)
    run_dir = resolve_run(run)
    result = import_generations(config, run_dir, log=lambda m: err.print(m))
    formats = ", ".join(f"{name} {count}" for name, count in sorted(result.formats.items(), key=lambda kv: -kv[1]))
    console.print(f"[green]imported:[/] {result.samples} samples ({formats}) in {result.shards_written} shards "
                  f"({result.shards_done_before} already done) -> {run_dir}"
                  + (f"; {result.empty} empty completions kept as failed samples" if result.empty else ""),
                  highlight=False, soft_wrap=True)


@app.command("filter")
@user_errors
def filter_(
    run: Annotated[str, typer.Argument(help="Run name or path (its generated shards are filtered).")],
    chain: Annotated[str, typer.Option("--chain", "-c", help="Chain name (see `factory chains`) or path to a chain .yaml.")] = "cold_start",
    workers: Annotated[int | None, typer.Option(help="Worker processes for per-sample steps (default: all cores).")] = None,
    redo: Annotated[bool, typer.Option(help="Replace the outputs of an earlier filtering with another chain.")] = False,
    chains_dir: Annotated[list[Path] | None, typer.Option(help="Extra folder of chain .yaml files (searched first).")] = None,
    executor: Annotated[Executor, typer.Option(help="local (worker processes), or ray: per-sample steps as Ray Data tasks (same output).")] = "local",
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
    failed = sum(count for step in funnel["steps"] for reason, count in step["rejected"].items() if reason in FAILURES)
    if failed:  # finished, but samples failed (a request or a verifier broke) rather than being judged
        err.print(f"{failed} samples failed rather than being judged ({', '.join(sorted(FAILURES))}); see `factory show {run} --stage rejected`")
        raise typer.Exit(EXIT_PARTIAL)


@app.command("tiny-model")
@user_errors
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the model to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
) -> None:
    """Create a tiny random Qwen2 model with a character-level tokenizer (no download)."""
    from factory.tiny_model import build_tiny_model

    console.print(f"tiny model written to {build_tiny_model(out, seed=seed)}")


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
    model: Annotated[str, typer.Option("--model", "-m", help="Model folder or hub id (vllm); served model name (openai, default: the first served).")] = "",
    problems: Annotated[str, typer.Option("--problems", "-p", help="Problem source, as for generate.")] = "builtin:arithmetic?n=200&seed=99",
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Samples per problem.")] = 4,
    k: Annotated[int | None, typer.Option(help="k of pass@k (default: n).")] = None,
    template: Annotated[str, typer.Option("--template", "-t", help="Prompt template.")] = "r1_zero",
    temperature: Annotated[float, typer.Option(help="Sampling temperature. 1.0 (not generate's 0.7): pass@k of the policy as GRPO samples it; 0 = greedy, with --n 1.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass. 1.0 (not generate's 0.95): the policy's own distribution.")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Maximum new tokens per sample. 256 (not generate's 1024), as GRPO's rollouts; raise it for long reasoning.")] = 256,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N problems.")] = None,
    seed: Annotated[int, typer.Option(help="Run seed; per-request seeds derive from it.")] = 0,
    prompt_mode: Annotated[PromptMode, typer.Option(help="chat (model's chat template), base (plain text), or auto.")] = "auto",
    mapping: ColumnMap = None,
    backend: Annotated[Backend, typer.Option(help="vllm (offline engine) or openai (any OpenAI-compatible server).")] = "vllm",
    engine_arg: EngineArgs = None,
    base_url: BaseUrl = "http://127.0.0.1:8000/v1",
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: Concurrency = 32,
    max_retries: MaxRetries = 4,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """pass@1 and pass@k of a model, scored by the same verifiers as filters and rewards."""
    from factory.evaluate import evaluate
    from factory.sources import parse_mapping

    if backend == "vllm" and not model:
        raise FactoryError("the vllm backend needs --model: a model folder or a hub id")
    result = evaluate(model, problems, n=n, k=k, template=template, temperature=temperature, max_tokens=max_tokens,
                      seed=seed, limit=limit, backend=backend, top_p=top_p, prompt_mode=prompt_mode,
                      mapping=parse_mapping(mapping),
                      backend_options=backend_options(engine_arg, base_url, api_key_env, concurrency, max_retries),
                      log=lambda m: err.print(m))
    if json_out:
        _print_json(result)
        return
    # One line, never wrapped: scripts read it.
    console.print("  ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}" for key, value in result.items()),
                  soft_wrap=True, highlight=False, markup=False)


import factory.cli_inspect  # noqa: E402,F401  (registers the commands that read runs, listed after these)


def main() -> None:
    # vLLM logs every engine step at INFO; keep the terminal for our own progress.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout is for results (--json)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bar per saved checkpoint
    app(prog_name="factory")


if __name__ == "__main__":
    sys.exit(main())
