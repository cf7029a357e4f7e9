"""`factory eval`: pass@1 and pass@k of a model on problems, scored by the shared verifiers.

Generation goes through the same runner as `factory generate` (so it resumes and its
samples stay in a run folder to inspect), and scoring through the GRPO accuracy reward,
so evaluation, rewards and filters never disagree about what is right.
"""

from __future__ import annotations

from collections import defaultdict
from math import comb
from pathlib import Path
from typing import Any

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import model_digest, stable_hash
from factory.core.settings import flatten, from_flat
from factory.generate.runner import GenerateConfig, run_generation

# The settings eval shares with generate; its defaults are generate's but for the problems and the
# sampling, which are GRPO's rollouts' (pass@k of the policy as it samples), not generate's.
EVAL_SETTINGS = [leaf for leaf in flatten(GenerateConfig)
                 if leaf.key in {"model", "problems", "n", "template", "temperature", "top_p", "max_tokens",
                                 "limit", "seed", "prompt_mode", "map", "backend"}
                 or leaf.path[0] == "backend_options"]
EVAL_DEFAULTS = {"problems": "builtin:arithmetic?n=200&seed=99", "temperature": 1.0, "top_p": 1.0, "max_tokens": 256}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def eval_config(values: dict[str, Any], where: str = "factory eval") -> GenerateConfig:
    """The generation an evaluation runs, from flat settings (keyed as in a recipe) over eval's defaults."""
    return from_flat(GenerateConfig, {**EVAL_DEFAULTS, **values}, where, EVAL_SETTINGS)


def evaluate(config: GenerateConfig, k: int | None = None, run_dir: Path | None = None,
             log: Any = lambda _m: None) -> dict[str, Any]:
    sampling = config.sampling
    k = k or sampling.n
    if not 1 <= k <= sampling.n:
        raise FactoryError(f"--k {k} must be between 1 and --n {sampling.n}: "
                           "pass@k needs at least k samples per problem")
    model, backend = config.model, config.backend
    # The model's identity (a served name for a server), its weights, and everything that changes the samples.
    where = (str(Path(model).resolve()) if backend == "vllm"
             else f"{backend}:{config.backend_options.get('base_url')}:{model}")
    key = stable_hash(where, model_digest(model) if backend == "vllm" else None, config.problems, config.template,
                      sampling.as_dict(), config.limit, config.mapping, config.prompt_mode)
    run_dir = run_dir or shards.runs_root() / f"eval-{key}"  # a retrained model gets a new run
    run_generation(config, run_dir, log=log)
    return {"model": model, **score_samples(shards.read_samples(run_dir, "generated"), k), "run": str(run_dir)}


def score_samples(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """pass@1 and pass@k of samples, each scored by the GRPO accuracy reward: the sample's format
    parser reads the answer and the verifier registry checks it, exactly as the `correct` filter does."""
    from factory.train.rewards import REWARDS

    accuracy = REWARDS.get("accuracy")
    correct: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        correct[row["problem_id"]].append(accuracy(row) if not row.get("error") else 0.0)
    per_problem = [(len(v), int(sum(v))) for v in correct.values()]
    rates = [c / m for m, c in per_problem]
    return {
        "problems": len(per_problem),
        "samples": sum(m for m, _ in per_problem),
        "pass@1": sum(rates) / len(rates),
        "pass@1_se": standard_error(rates),
        f"pass@{k}": sum(pass_at_k(m, c, k) for m, c in per_problem) / len(per_problem),
    }


def standard_error(rates: list[float]) -> float:
    """Standard error of the mean of per-problem pass rates: the problems are the sample, so this is
    what says whether two pass@1 figures on the same problems differ by more than the draw of problems."""
    if len(rates) < 2:
        return float("nan")
    mean = sum(rates) / len(rates)
    return (sum((r - mean) ** 2 for r in rates) / (len(rates) - 1) / len(rates)) ** 0.5
