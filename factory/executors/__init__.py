"""Where per-shard work runs: `local` (this machine) or `ray` (a Ray cluster), behind one interface.

The generation runner and the filter chain cut their work into shards and hand an executor a
`ShardJobs` (a picklable function and its arguments per shard, see `base`); the executor runs the
shards and yields their results as they finish, and the caller writes them under the run lock, so
the run folder is the same whichever executor ran. The executors' names and options are checked
here and nowhere else; Ray is imported only when the ray executor runs.
"""

from __future__ import annotations

from typing import Any

from factory.errors import FactoryError
from factory.executors.base import Executor, ShardJobs

__all__ = ["EXECUTORS", "RAY_OPTIONS", "Executor", "ShardJobs", "check_executor", "check_ray_options", "get_executor"]

EXECUTORS = ("local", "ray")
RAY_OPTIONS = ("address", "replicas", "num_gpus", "num_cpus", "num_workers")
_WHOLE = ("replicas", "num_workers")


def check_ray_options(options: dict[str, Any]) -> None:
    unknown = set(options) - set(RAY_OPTIONS)
    if unknown:
        raise FactoryError(f"unknown Ray option(s) {', '.join(sorted(unknown))}; the options are {', '.join(RAY_OPTIONS)}")
    if options.get("address") is not None and not isinstance(options["address"], str):
        raise FactoryError(f"Ray option address={options['address']!r} must be text, e.g. ray://head:10001 or auto")
    for key in ("replicas", "num_gpus", "num_cpus", "num_workers"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                  or (key in _WHOLE and (value < 1 or value != int(value)))):
            raise FactoryError(f"Ray option {key}={value!r} must be a {'whole number >= 1' if key in _WHOLE else 'number >= 0'}")


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
