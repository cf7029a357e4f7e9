"""Registry of chain steps: names used in filters/*.yaml -> classes, imported on first use."""

from __future__ import annotations

from factory.core.registry import Registry

# Per-sample filters run shard by shard in worker processes.
_PER_SAMPLE = {
    "parsed": "factory.filter.steps.basic:Parsed",
    "complete": "factory.filter.steps.basic:Complete",
    "format": "factory.filter.steps.basic:Format",
    "length": "factory.filter.steps.basic:Length",
    "correct": "factory.filter.steps.correct:Correct",
    "language": "factory.filter.steps.language:Language",
    "readability": "factory.filter.steps.readability:Readability",
}
# Global steps see all kept samples at once (DuckDB over every shard, or a judge model).
_GLOBAL = {
    "dedup": "factory.filter.steps.global_steps:Dedup",
    "decontaminate": "factory.filter.steps.global_steps:Decontaminate",
    "select": "factory.filter.steps.global_steps:Select",
    "judge": "factory.filter.steps.judge:Judge",
}
PER_SAMPLE, GLOBAL = tuple(_PER_SAMPLE), tuple(_GLOBAL)

# No help given: each step's class `description` is its help.
STEPS: Registry[type] = Registry("step")
for _name, _path in {**_PER_SAMPLE, **_GLOBAL}.items():
    STEPS.register(_name, _path)


def step_class(name: str) -> type:
    return STEPS.get(name)
