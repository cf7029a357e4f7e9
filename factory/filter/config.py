"""What a filtering does: the `factory filter` flags and a recipe's `filter:` settings are FilterConfig's
fields, and `configured_chain` is the chain they make.

`decontaminate` and `dedup` change the named chain: the changed copy is written to RUN/chain.yaml and
that file is the chain that runs, so the run's filter manifest names it and a rerun reads the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.files import read_yaml_file
from factory.core.settings import setting
from factory.executors import ExecutorName, RayOptions, check_executor
from factory.filter.chain import Chain, load_chain
from factory.filter.steps import GLOBAL, step_class
from factory.filter.steps.base import build

# The name of a chain changed by these settings; recipes were its first writers, and a new name would
# change RUN/chain.yaml, so every run filtered that way would ask for --redo.
CHANGED_SUFFIX = "+recipe"


@dataclass
class FilterConfig:
    chain: str = setting("cold_start", "Chain name (see `factory chains`) or path to a chain .yaml.",
                         flags=("--chain", "-c"))
    decontaminate: list[str] | str | None = setting(None, "Benchmark file(s) whose problems are removed: a "
                                                    "decontaminate step before the chain's first global step.")
    dedup: bool | dict[str, Any] | None = setting(None, "Replace the chain's dedup step: false drops it, true uses "
                                                  "the default settings, a mapping (in a recipe) these dedup "
                                                  "settings (default: as the chain says).")
    chains_dirs: list[str] = setting([], "Extra folder of chain .yaml files (searched first).", flags=("--chains-dir",),
                                     key="chains_dir")
    workers: int | None = setting(None, "Worker processes for per-sample steps (default: all cores).")
    executor: ExecutorName = setting("local", "local (worker processes), or ray: per-sample steps as Ray Data tasks "
                                              "(same output).")
    executor_options: dict[str, Any] = setting({}, "", options=RayOptions)

    def validate(self) -> None:
        check_executor(self.executor, self.executor_options)
        if self.workers is not None and self.workers < 1:
            raise FactoryError(f"workers={self.workers} must be >= 1")
        if isinstance(self.dedup, dict):  # refused now, not when the filter reaches the step
            build(step_class("dedup"), self.dedup, "dedup")

    @property
    def benchmarks(self) -> list[str]:
        return [self.decontaminate] if isinstance(self.decontaminate, str) else list(self.decontaminate or [])


def _step_name(step: Any) -> str:
    return step if isinstance(step, str) else next(iter(step))


def _first_global(steps: list[Any]) -> int:
    return next((i for i, s in enumerate(steps) if _step_name(s) in GLOBAL), len(steps))


def configured_chain(config: FilterConfig, run_dir: Path) -> Chain:
    """The chain `config` names; with `decontaminate` or `dedup` set, a changed copy of it in RUN/chain.yaml."""
    base = load_chain(config.chain, [Path(d) for d in config.chains_dirs])
    if config.decontaminate is None and config.dedup is None:
        return base
    data = read_yaml_file(base.path)
    steps = data["steps"]
    if config.dedup is not None:  # replace the chain's dedup, where it was (false: no dedup)
        at = next((i for i, s in enumerate(steps) if _step_name(s) == "dedup"), None)
        steps = [s for s in steps if _step_name(s) != "dedup"]
        if config.dedup is not False:
            dedup = {"dedup": config.dedup if isinstance(config.dedup, dict) else {}}
            steps.insert(at if at is not None else _first_global(steps), dedup)
    if config.decontaminate:
        steps.insert(_first_global(steps), {"decontaminate": {"benchmarks": config.benchmarks}})
    data["steps"] = steps
    data["name"] = f"{base.name}{CHANGED_SUFFIX}"
    path = run_dir / "chain.yaml"
    shards.atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False).encode())
    return load_chain(str(path))
