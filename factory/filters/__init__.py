"""Registry of chain steps: names used in filters/*.yaml -> classes, imported on first use."""

from __future__ import annotations

from factory.registry import Registry

# Per-sample filters run shard by shard in worker processes.
_PER_SAMPLE = {
    "parsed": "factory.filters.basic:Parsed",
    "complete": "factory.filters.basic:Complete",
    "format": "factory.filters.basic:Format",
    "length": "factory.filters.basic:Length",
    "correct": "factory.filters.correct:Correct",
    "language": "factory.filters.language:Language",
    "readability": "factory.filters.readability:Readability",
}
# Global steps see all kept samples at once (DuckDB over every shard, or a judge model).
_GLOBAL = {
    "dedup": "factory.filters.global_steps:Dedup",
    "decontaminate": "factory.filters.global_steps:Decontaminate",
    "select": "factory.filters.global_steps:Select",
    "judge": "factory.filters.judge:Judge",
}
PER_SAMPLE, GLOBAL = tuple(_PER_SAMPLE), tuple(_GLOBAL)

# No help given: each step's class `description` is its help.
STEPS: Registry[type] = Registry("step")
for _name, _path in {**_PER_SAMPLE, **_GLOBAL}.items():
    STEPS.register(_name, _path)


def step_class(name: str) -> type:
    return STEPS.get(name)
