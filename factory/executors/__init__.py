"""Where per-shard work runs: `local` (this machine) or `ray` (a Ray cluster), behind one interface.

The generation runner and the filter chain cut their work into shards and hand an executor a
`ShardJobs` (a picklable function and its arguments per shard, see `base`); the executor runs the
shards and yields their results as they finish, and the caller writes them under the run lock, so
the run folder is the same whichever executor ran. The executors' names (`ExecutorName`) and the
Ray options (`RayOptions`, a settings dataclass: `factory generate`'s Ray flags and a recipe's `ray:`
keys are its fields) are defined and checked here and nowhere else; Ray is imported only when the
ray executor runs.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from factory.core.errors import FactoryError
from factory.core.settings import build, check, setting
from factory.executors.base import Executor, ShardJobs

__all__ = ["EXECUTORS", "RAY_OPTIONS", "Executor", "ExecutorName", "RayOptions", "ShardJobs", "check_executor",
           "check_ray_options", "get_executor"]

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = typing.get_args(ExecutorName)


@dataclass
class RayOptions:
    """`--executor ray` settings (a recipe's `ray:` mapping), handed on as a dict of the ones given."""

    address: str | None = setting(None, "ray: cluster to join, e.g. ray://head:10001 or auto (default: RAY_ADDRESS, "
                                  "else a local one).", key="ray_address")
    replicas: int = setting(1, "ray: vLLM engines (actors) running shards in parallel.")
    num_gpus: float | None = setting(None, "ray: GPUs per vLLM replica "
                                           "(default: tensor_parallel_size with GPUs, else 0).")
    num_cpus: float | None = setting(None, "ray: CPUs per vLLM replica or filter task (default 1).")
    num_workers: int | None = setting(None, "ray: filter tasks in flight at most (default: the cluster's CPUs).")

    def validate(self) -> None:
        for key in ("replicas", "num_workers", "num_gpus", "num_cpus"):
            value, least = getattr(self, key), 1 if key in ("replicas", "num_workers") else 0
            if value is not None and value < least:
                raise FactoryError(f"Ray option {key}={value!r} must be "
                                   f"{'a whole number' if least else 'a number'} >= {least}")


RAY_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RayOptions))


def check_ray_options(options: Any, where: str = "Ray options") -> dict[str, Any]:
    """The given Ray options converted to their types and checked (names, types, ranges), as RayOptions
    says; only the ones given a value are returned, so Ray picks the rest."""
    checked = check(RayOptions, options, where)
    build(RayOptions, checked, where)
    return {key: value for key, value in checked.items() if value is not None}


def check_executor(name: str, options: dict[str, Any] | None = None, backend: str | None = None) -> None:
    """Refuse an unknown executor, bad Ray options, or a generation backend the executor cannot run.

    The local executor ignores the Ray options (the command line always passes `replicas`)."""
    if name not in EXECUTORS:
        raise FactoryError(f"executor '{name}' is not {' or '.join(EXECUTORS)}")
    if name == "ray":
        check_ray_options(options or {})
        if backend is not None and backend != "vllm":
            raise FactoryError("--executor ray runs vLLM replicas; with --backend openai the server already scales out")


def get_executor(name: str, options: dict[str, Any] | None = None) -> Executor:
    check_executor(name, options)
    if name == "ray":
        from factory.executors.ray import RayExecutor

        return RayExecutor(dict(options or {}))
    from factory.executors.local import LocalExecutor

    return LocalExecutor()
