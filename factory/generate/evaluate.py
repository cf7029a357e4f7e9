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
from factory.core.sample import Sampling, model_digest, stable_hash
from factory.generate.runner import GenerateConfig, run_generation


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def evaluate(
    model: str, problems: str, n: int = 4, k: int | None = None, template: str = "r1_zero",
    temperature: float = 1.0, max_tokens: int = 256, seed: int = 0, limit: int | None = None,
    run_dir: Path | None = None, backend: str = "vllm", backend_options: dict[str, Any] | None = None,
    log: Any = lambda _m: None, top_p: float = 1.0, mapping: dict[str, str] | None = None, prompt_mode: str = "auto",
) -> dict[str, Any]:
    k = k or n
    if not 1 <= k <= n:
        from factory.core.errors import FactoryError

        raise FactoryError(f"--k {k} must be between 1 and --n {n}: pass@k needs at least k samples per problem")
    sampling = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, n=n, seed=seed)
    config = GenerateConfig(problems=problems, model=model, template=template, backend=backend, sampling=sampling,
                            limit=limit, backend_options=backend_options or {}, mapping=mapping or {},
                            prompt_mode=prompt_mode)
    # The model's identity (a served name for a server), its weights, and everything that changes the samples.
    where = (str(Path(model).resolve()) if backend == "vllm"
             else f"{backend}:{(backend_options or {}).get('base_url')}:{model}")
    key = stable_hash(where, model_digest(model) if backend == "vllm" else None, problems, template, sampling.as_dict(),
                      limit, mapping or {}, prompt_mode)
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
