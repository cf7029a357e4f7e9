"""Synthetic runs: generated shards as the runner writes them, without a model.

Tests and benchmarks design the samples (which are right, wrong, cut off...); `write_run` fills
in every other column as generation would (id, parse, hash, token count) and writes the shards.
Benchmarks import it too, with the repository root on sys.path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from factory.core import shards
from factory.core.sample import Sampling, sample_id, stable_hash, to_table
from factory.core.textnorm import text_hash
from factory.prompting.templates import load_template


def write_run(
    run: Path, samples: Iterable[dict[str, Any]], rows_per_shard: int, *, config: dict[str, Any] | None = None,
    fingerprint: str | None = None, model: str = "m", sampling: Sampling | None = None, template: str = "r1_zero",
) -> list[dict[str, Any]]:
    """Open `run` and write `samples` as its generated shards, `rows_per_shard` rows each; the full rows.

    A sample gives problem_id, sample_index, problem, answer and completion; any other column it
    sets wins over the stand-in here."""
    config = {"synthetic": True} if config is None else config
    shards.open_run(run, config, stable_hash(config) if fingerprint is None else fingerprint)
    sampling = sampling or Sampling()
    parse = load_template(template).parse
    rows = []
    for s in samples:
        completion = s["completion"]
        parsed = parse(completion)
        rows.append({
            "id": sample_id(s["problem_id"], template, model, sampling, s["sample_index"]), "source": "builtin",
            "task": "arithmetic", "template": template, "prompt": "P", "completion_hash": text_hash(completion),
            "reasoning": parsed.reasoning, "final": parsed.final, "parse_error": parsed.error,
            "finish_reason": "stop" if "</answer>" in completion else "length", "prompt_tokens": 10,
            "completion_tokens": len(completion) // 3, "model": model, "sampling": sampling.as_dict(), "scores": "{}",
            "metadata": json.dumps({"prefill": ""}),
            **s,
        })
    for k in range(0, len(rows), rows_per_shard):
        shards.write_shard(shards.shard_path(run, "generated", k // rows_per_shard),
                           to_table(rows[k : k + rows_per_shard]), {})
    return rows
