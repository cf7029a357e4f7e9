"""Registry of chain steps: names used in filters/*.yaml -> classes, imported lazily."""

from __future__ import annotations

import importlib

# Per-sample filters run shard by shard in worker processes.
PER_SAMPLE = {
    "parsed": "factory.filters.basic:Parsed",
    "complete": "factory.filters.basic:Complete",
    "format": "factory.filters.basic:Format",
    "length": "factory.filters.basic:Length",
    "correct": "factory.filters.correct:Correct",
    "language": "factory.filters.language:Language",
    "readability": "factory.filters.readability:Readability",
}
# Global steps see all kept samples at once (DuckDB over every shard, or a judge model).
GLOBAL = {
    "dedup": "factory.filters.global_steps:Dedup",
    "decontaminate": "factory.filters.global_steps:Decontaminate",
    "select": "factory.filters.global_steps:Select",
    "judge": "factory.filters.judge:Judge",
}
STEPS = {**PER_SAMPLE, **GLOBAL}


def step_class(name: str) -> type:
    module, _, cls = STEPS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
