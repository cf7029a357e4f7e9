"""The generation run: problems -> prompts -> backend -> Parquet shards, resumable.

Problems are cut into shards of `shard_size // n` problems in source order, so shard k
always holds the same problems. Each shard is generated with one backend call and written
atomically with a completion marker; a rerun skips finished shards and redoes the rest.
"""

from __future__ import annotations

import functools
import json
import operator
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.problem import Problem
from factory.core.sample import Sampling, model_digest, request_seed, sample_id, stable_hash, to_table
from factory.core.settings import hints, setting
from factory.core.textnorm import text_hash
from factory.executors import ExecutorName, RayOptions, ShardJobs, check_executor, get_executor
from factory.generate.base import (
    BACKEND_HELP,
    BACKENDS,
    Backend,
    BackendName,
    BackendOptions,
    Completion,
    Request,
    open_backend,
)
from factory.problems.gym import SCORER_KEYS
from factory.problems.sources import FIELDS, load_problems
from factory.prompting.formats import implied_prefill, parse_output, prompt_prefill
from factory.prompting.prompter import Prompter
from factory.prompting.prompter import resolve_mode as resolve_prompt_mode
from factory.prompting.templates import Template, load_template


@dataclass
class GenerateConfig:
    """Everything that decides what a run generates: the `factory generate` flags and a recipe's
    `generate:` settings are these fields, the sampling's and the backend options' (see cli_settings)."""

    problems: str = setting("builtin:arithmetic", "Source: file (.jsonl/.parquet/.csv), datasets folder, "
                            "hf:ORG/NAME[:SPLIT], builtin:arithmetic?n=100&seed=0, gym:NAME?n=100&seed=0 "
                            "(reasoning-gym), or an earlier run folder.", flags=("--problems", "-p"))
    model: str = setting("", "Model folder or hub id (vllm); served model name (openai, default: the first served).",
                         flags=("--model", "-m"))
    template: str = setting("r1_zero", "Template name (see `factory templates`) or path to a .yaml file; a comma "
                            "list prompts each problem with each.", flags=("--template", "-t"))
    backend: BackendName = setting("vllm", BACKEND_HELP)
    sampling: Sampling = setting(Sampling(), "")  # frozen, so one default serves all; its fields are the settings
    mapping: dict[str, str] = setting({}, "Column mapping FIELD=COLUMN for problem, answer, tests, task, id.",
                                      flags=("--map",), key="map")
    limit: int | None = setting(None, "Use only the first N problems.")
    prompt_mode: Literal["auto", "chat", "base"] = setting("auto", "chat (model's chat template), base (plain text), "
                                                                   "or auto.")
    seed_mode: Literal["request", "engine"] = setting("request", "request: each prompt has its own seed (resumed runs "
                                                      "repeat texts); engine: only the engine is seeded.")
    shard_size: int = setting(2048, "Samples per shard.")
    templates_dirs: list[str] = setting([], "Extra folder of template .yaml files (searched first).",
                                        flags=("--templates-dir",))
    # How to reach the model and where to run; these do not change what is generated, so are not fingerprinted.
    backend_options: dict[str, Any] = setting({}, "", options=BackendOptions)
    executor: ExecutorName = setting("local", "local, or ray: shards go to vLLM replicas on a Ray cluster "
                                              "(same output).")
    executor_options: dict[str, Any] = setting({}, "", options=RayOptions)

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise FactoryError(f"unknown backend '{self.backend}': the backends are {', '.join(BACKENDS)}")
        check_executor(self.executor, self.executor_options, self.backend)
        # Literals: refused on the way in, but a library caller may pass any str
        for name in ("prompt_mode", "seed_mode"):
            choices = get_args(hints(GenerateConfig)[name])
            if getattr(self, name) not in choices:
                raise FactoryError(f"unknown {name.replace('_', ' ')} '{getattr(self, name)}': "
                                   f"use {', '.join(choices)}")
        bad = [key for key in self.mapping if key not in FIELDS]
        if bad:
            raise FactoryError(f"bad --map field '{bad[0]}': the fields are {', '.join(FIELDS)}")
        if self.limit is not None and self.limit < 1:
            raise FactoryError(f"--limit {self.limit}: use at least 1 problem, or no limit")
        s = self.sampling
        if s.n < 1 or s.max_tokens < 1 or self.shard_size < 1:
            raise FactoryError("--n, --max-tokens and --shard-size must be at least 1")
        if s.temperature < 0 or not 0 < s.top_p <= 1:
            raise FactoryError("--temperature must be >= 0 and --top-p in (0, 1]")
        if s.temperature == 0 and s.n > 1:
            # greedy decoding gives every sample the same text (vLLM refuses it outright)
            raise FactoryError(f"--temperature 0 is greedy, so its {s.n} samples per prompt would all be the same "
                               "text: use --n 1, or a temperature above 0")


@dataclass
class Plan:
    templates: list[Template]
    problems: list[Problem]
    per_shard: int

    @functools.cached_property
    def items(self) -> list[tuple[Template, Problem]]:
        """Every (template, problem) prompt, problem-major: one problem's prompts share a shard."""
        return [(t, p) for p in self.problems for t in self.templates]

    @property
    def num_shards(self) -> int:
        return (len(self.problems) * len(self.templates) + self.per_shard - 1) // self.per_shard

    def shard_items(self, index: int) -> list[tuple[Template, Problem]]:
        return self.items[index * self.per_shard : (index + 1) * self.per_shard]


def template_names(spec: str) -> list[str]:
    """`a,b` -> [a, b]: a run may prompt each problem with several templates."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise FactoryError("--template is empty: name a template (see `factory templates`)")
    if len(set(names)) != len(names):
        raise FactoryError(f"--template '{spec}' names a template twice")
    return names


def plan_run(config: GenerateConfig) -> Plan:
    config.validate()
    templates = [load_template(n, [Path(d) for d in config.templates_dirs]) for n in template_names(config.template)]
    problems = load_problems(config.problems, config.mapping, config.limit)
    for p in problems[:1]:
        for t in templates:  # a template that needs inputs the source lacks, or breaks, fails here, not later
            t.render_base(p)
            t.render_messages(p)
    per_shard = max(1, config.shard_size // config.sampling.n)
    return Plan(templates, problems, per_shard)


def fingerprinted_config(config: GenerateConfig, plan: Plan, mode: str) -> dict[str, Any]:
    d = asdict(config)
    for key in ("backend_options", "executor", "executor_options"):
        d.pop(key)
    d.pop("templates_dirs")
    d["prompt_mode"] = mode
    digests = [t.digest for t in plan.templates]
    d["template_digest"] = digests[0] if len(digests) == 1 else stable_hash(digests)
    d["model_digest"] = model_digest(config.model)
    d["problem_ids_digest"] = stable_hash([p.problem_id for p in plan.problems])
    return d


def resolve_mode(config: GenerateConfig, backend_has_chat: Callable[[], bool]) -> str:
    return resolve_prompt_mode(config.prompt_mode, backend_has_chat)


def local_has_chat_template(model: str) -> bool:
    """Read the tokenizer's chat template without starting an engine (so a refusal is quick)."""
    try:
        from transformers import AutoTokenizer

        return bool(AutoTokenizer.from_pretrained(model).chat_template)
    except (OSError, ValueError):
        return False


def make_request(template: Template, p: Problem, mode: str, config: GenerateConfig) -> Request:
    seed = request_seed(config.sampling.seed, p.problem_id, template.name) if config.seed_mode == "request" else None
    return Prompter(template, mode).request(p, seed=seed)


CONTEXT_MAX_CHARS = 4096


def kept_context(p: Problem, template: Template) -> dict[str, Any]:
    """The source's extra columns kept in each sample's metadata: all but bulky ones the template
    does not use (a dataset's reference generations would be copied into every sample)."""
    return small_context(p, template.inputs)


def small_context(p: Problem, keep: Any = ()) -> dict[str, Any]:
    """p.context without values over CONTEXT_MAX_CHARS, except those in `keep` and those a gym
    task's scorer reads (an ARC board's metadata is large, and the verdict needs all of it)."""
    needed = set(keep) | (set(SCORER_KEYS) if p.task.startswith("gym:") else set())
    return {k: v for k, v in p.context.items()
            if k in needed or len(json.dumps(v, ensure_ascii=False, default=str)) <= CONTEXT_MAX_CHARS}


def sample_rows(
    p: Problem, prompt: str, completions: list[Completion], template: Template, backend: Backend,
    config: GenerateConfig, mode: str,
) -> list[dict[str, Any]]:
    rows = []
    # The part of the model's turn the prompt holds (the template's prefill, a chat template's
    # "<think>\n"): a chat API's prompt is rendered by the server, so there only the completion tells.
    prompt_known = mode == "base" or backend.chat_prefill
    context = kept_context(p, template)
    # The prompt as chat turns for exports and trainers: the template's system prompt and the problem's
    # turn, without few-shot example turns (scaffolding for the generator, not what a student is asked).
    rendered = template.render_messages(p)
    users = [m for m in rendered if m["role"] == "user"]
    messages = [m for m in rendered if m["role"] == "system"] + users[-1:]
    for i, c in enumerate(completions):
        text = c.text
        if template.keep_stop and c.stop_reason in template.stop:
            text += c.stop_reason  # the closing tag ended generation; it belongs to the format
        prefill = prompt_prefill(prompt, template.prefill) if prompt_known else implied_prefill(text)
        parsed = parse_output(prefill + text, template.format) if c.error is None else None
        rows.append(
            {
                "id": sample_id(p.problem_id, template.name, backend.model, config.sampling, i),
                "problem_id": p.problem_id,
                "sample_index": i,
                "source": p.source,
                "task": p.task,
                "problem": p.problem,
                "answer": p.answer,
                "tests": p.tests,
                "template": template.name,
                "prompt": prompt,
                "completion": text,
                "completion_hash": text_hash(text),
                "reasoning": parsed.reasoning if parsed else None,
                "final": parsed.final if parsed else None,
                "parse_error": parsed.error if parsed else None,
                "finish_reason": c.finish_reason,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "model": backend.model,
                "sampling": config.sampling.as_dict(),
                "error": c.error,
                "scores": "{}",
                "metadata": {  # written as JSON by to_table
                    "prompt_mode": mode,
                    "backend": backend.name,
                    # The part of the model's turn that was in the prompt; format checks need it.
                    "prefill": prefill,
                    # The format the completion is in (what `auto` detected, when it could).
                    "format": parsed.format if parsed and parsed.format else template.format,
                    "messages": messages,
                    "context": context,
                },
            }
        )
    return rows


@dataclass
class ShardJob:
    """What one shard's backend calls need; plain data, so an executor can run it on another machine."""

    index: int
    size: int
    # Per template in the shard: the item positions, their requests, the template's stop strings.
    groups: list[tuple[list[int], list[Request], list[str]]]


@dataclass
class BackendInfo:
    name: str
    model: str
    chat_prefill: bool


@dataclass
class ShardOutput:
    index: int
    prompts: list[str]
    outputs: list[list[Completion]]
    seconds: float
    backend: BackendInfo


def shard_job(plan: Plan, index: int, mode: str, config: GenerateConfig) -> ShardJob:
    items = plan.shard_items(index)
    groups: dict[str, tuple[list[int], list[Request], list[str]]] = {}
    for i, (t, p) in enumerate(items):
        where, requests, _ = groups.setdefault(t.name, ([], [], t.stop))
        where.append(i)
        requests.append(make_request(t, p, mode, config))
    return ShardJob(index, len(items), list(groups.values()))


def run_shard_job(backend: Backend, job: ShardJob, sampling: Sampling, progress: Any) -> ShardOutput:
    """One backend call per template in the shard (each has its own stop strings), in item order."""
    t0 = time.perf_counter()
    prompts: list[str] = [""] * job.size
    outputs: list[list[Completion]] = [[] for _ in range(job.size)]
    for where, requests, stop in job.groups:
        for i, request, comps in zip(where, requests, backend.generate(requests, sampling, stop, progress)):
            prompts[i], outputs[i] = backend.prompt_text(request), comps
    info = BackendInfo(backend.name, backend.model, backend.chat_prefill)
    return ShardOutput(job.index, prompts, outputs, time.perf_counter() - t0, info)


@dataclass
class RunResult:
    run_dir: Path
    shards_total: int
    shards_done_before: int
    shards_written: int = 0
    samples: int = 0
    completion_tokens: int = 0
    errors: int = 0
    seconds: float = 0.0


class _NullProgress:
    def start(self, total_samples: int, done_samples: int) -> None: ...
    def advance(self, samples: int, tokens: int) -> None: ...
    def stop(self) -> None: ...


def run_generation(
    config: GenerateConfig,
    run_dir: Path,
    backend: Backend | None = None,
    progress: Any = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> RunResult:
    """Generate every unfinished shard of the run. `backend` may be passed in (benchmarks)."""
    from factory.core.lock import run_lock

    plan = plan_run(config)
    with run_lock(run_dir):  # one writer per run folder; a crashed owner's lock is taken over
        return _generate(config, plan, run_dir, backend, progress, log)


def _generate(
    config: GenerateConfig, plan: Plan, run_dir: Path, backend: Backend | None, progress: Any,
    log: Callable[[str], None],
) -> RunResult:
    if backend is None and config.backend == "vllm":
        mode = resolve_mode(config, lambda: local_has_chat_template(config.model))
    elif backend is not None:
        mode = resolve_mode(config, backend.has_chat_template)
    else:
        mode = "chat" if config.prompt_mode == "auto" else config.prompt_mode
    fingerprint_config = fingerprinted_config(config, plan, mode)
    fingerprint = stable_hash(fingerprint_config)
    shards.check_run(run_dir, fingerprint_config, fingerprint)  # refuse a changed config before any slow start
    shards.remove_stale_temp_files(run_dir / "generated")
    todo = [k for k in range(plan.num_shards) if not shards.is_done(shards.shard_path(run_dir, "generated", k))]
    result = RunResult(run_dir, plan.num_shards, plan.num_shards - len(todo))
    if not todo:
        log(f"all {plan.num_shards} shards of {run_dir} are already done; nothing to do")
        return result
    if backend is None:  # each of the executor's workers opens its own
        setup = functools.partial(open_backend, config.backend, config.model,
                                  {"seed": config.sampling.seed, **config.backend_options})
        teardown = operator.methodcaller("close")
    else:  # passed in (benchmarks): its owner closes it
        setup, teardown = (lambda: backend), None
    engine_args = dict(config.backend_options.get("engine_args") or {})
    jobs = ShardJobs(run_shard_job, [(shard_job(plan, k, mode, config), config.sampling) for k in todo], setup=setup,
                     teardown=teardown, reports_progress=True, gpus=engine_args.get("tensor_parallel_size", 1))
    executor = get_executor(config.executor, config.executor_options)
    progress = progress or _NullProgress()
    # Entering starts the backend before any log line, so a bad model is the only thing the user sees.
    with executor.run(jobs, progress=progress.advance) as done:
        per_problem = (f"{len(plan.templates)} templates x {config.sampling.n}" if len(plan.templates) > 1
                       else str(config.sampling.n))
        log(f"{len(todo)} of {plan.num_shards} shards to generate "
            f"({len(plan.problems)} problems x {per_problem} samples)" + executor.where)
        n = config.sampling.n
        already = sum(len(plan.shard_items(k)) * n for k in range(plan.num_shards) if k not in todo)
        progress.start(len(plan.items) * n, already)
        started = time.perf_counter()
        try:
            _write_shards(done, config, plan, run_dir, mode, fingerprint_config, fingerprint, result)
        finally:
            progress.stop()
            result.seconds = time.perf_counter() - started
    return result


def _write_shards(
    done: Any, config: GenerateConfig, plan: Plan, run_dir: Path, mode: str, fingerprint_config: dict[str, Any],
    fingerprint: str, result: RunResult,
) -> None:
    manifest_written = False
    for out in done:
        if not manifest_written:
            # Written only once a model answered, so a failed start does not tie the run name to bad settings.
            shards.write_manifest(run_dir, fingerprint_config, fingerprint)
            manifest_written = True
        items = plan.shard_items(out.index)
        rows = [
            row
            for (t, p), prompt, comps in zip(items, out.prompts, out.outputs)
            for row in sample_rows(p, prompt, comps, t, out.backend, config, mode)
        ]
        tokens = sum(r["completion_tokens"] or 0 for r in rows)
        errors = sum(r["error"] is not None for r in rows)
        shards.write_shard(
            shards.shard_path(run_dir, "generated", out.index),
            to_table(rows),
            {"seconds": round(out.seconds, 3), "completion_tokens": tokens, "errors": errors},
        )
        result.shards_written += 1
        result.samples += len(rows)
        result.completion_tokens += tokens
        result.errors += errors
