"""The ray executor: shards run as Ray Data jobs on a Ray cluster.

Jobs with a `setup` run on `replicas` actors, each building the state once (a vLLM engine, with
`num_gpus` GPUs) and running whole shards, so batches match the local executor's. Other jobs run
one shard per task, at most `num_workers` at a time. Results stream back to the caller, which
writes the shards and their markers exactly as with the local executor; so the output is the
same, a killed job resumes from the finished shards, and workers need no shared file system
(only the package, and for generation the model: a Hub id or a path every node has).

`ray.init()` joins the cluster named by the `address` option or `RAY_ADDRESS` (e.g.
`ray://head:10001`, or `auto` on a node of the cluster), and otherwise starts a local one.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from factory.core.errors import FactoryError
from factory.executors.base import Progress, ShardJobs, call_shard


class RayExecutor:
    name = "ray"
    where = " on Ray"
    shares_files = False

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options  # checked by get_executor

    @contextmanager
    def run(self, jobs: ShardJobs, workers: int | None = None,
            progress: Progress | None = None) -> Iterator[Iterator[Any]]:
        ray = connect(self.options)
        results = (_on_actors(ray, jobs, self.options) if jobs.setup is not None
                   else _on_tasks(ray, jobs, self.options, workers))
        yield _reported(results, progress)


def connect(options: dict[str, Any]) -> Any:
    """Join (or start) the Ray cluster, quietly: our own log lines say what happens."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise FactoryError("--executor ray needs Ray: pip install 'reasoning-factory[ray]'") from None
    if not ray.is_initialized():
        address = options.get("address") or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True)
    # Ray Data logs a worker's stack trace on the console; the error line we raise says it all.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.raise_original_map_exception = True  # a worker's FactoryError, not Ray's wrapper
    return ray


def _reported(results: Iterator[tuple[Any, list[float]]], progress: Progress | None) -> Iterator[Any]:
    for result, counts in results:
        if counts and progress is not None:
            progress(*counts)
        yield result


def _on_actors(ray: Any, jobs: ShardJobs, options: dict[str, Any]) -> Iterator[tuple[Any, list[float]]]:
    args = list(jobs.args)  # small (a shard's requests), and one pool of actors must see them all
    replicas = max(1, min(int(options.get("replicas", 1)), len(args)))
    num_gpus = float(options.get("num_gpus", jobs.gpus if ray.cluster_resources().get("GPU", 0) > 0 else 0))
    constructor = {"setup": jobs.setup, "call": jobs.call, "reports_progress": jobs.reports_progress}
    return _stream(ray, [{"args": pickle.dumps(a)} for a in args], _Replica, fn_constructor_kwargs=constructor,
                   compute=ray.data.ActorPoolStrategy(size=replicas), num_gpus=num_gpus or None,
                   num_cpus=float(options.get("num_cpus", 1)),
                   ray_remote_args_fn=lambda: {"max_restarts": 0, "max_task_retries": 0})


def _on_tasks(ray: Any, jobs: ShardJobs, options: dict[str, Any],
              workers: int | None) -> Iterator[tuple[Any, list[float]]]:
    num_workers = options["num_workers"] if "num_workers" in options else workers
    # Arguments travel a window at a time, so the caller never holds a whole large run's shards.
    window = 4 * max(1, int(num_workers or ray.cluster_resources().get("CPU", 1)))
    args = iter(jobs.args)
    while batch := list(itertools.islice(args, window)):
        yield from _stream(ray, [{"args": pickle.dumps(a)} for a in batch], _task,
                           fn_kwargs={"call": jobs.call, "reports_progress": jobs.reports_progress},
                           num_cpus=float(options.get("num_cpus", 1)), concurrency=num_workers,
                           ray_remote_args_fn=lambda: {"max_retries": 0})


class _Replica:
    """A Ray actor holding one worker's state (an engine); it runs whole shards."""

    def __init__(self, setup: Callable[[], Any], call: Callable[..., Any], reports_progress: bool) -> None:
        self.state = setup()
        self.call = call
        self.reports_progress = reports_progress

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return {"result": [pickle.dumps(call_shard(self.call, (self.state,), pickle.loads(a), self.reports_progress))
                           for a in batch["args"]]}


def _task(batch: dict[str, Any], call: Callable[..., Any], reports_progress: bool) -> dict[str, list[Any]]:
    return {"result": [pickle.dumps(call_shard(call, (), pickle.loads(a), reports_progress)) for a in batch["args"]]}


def _stream(ray: Any, items: list[dict[str, Any]], fn: Any, **map_args: Any) -> Iterator[Any]:
    """One Ray Data block per item, mapped one item per call; results as they finish.

    A worker's error reaches the user as the one line it would print locally. Workers are not
    retried (Ray Data's default retries forever, and a scheduled job would hang): finished
    shards are written as they arrive, so a rerun resumes from them."""
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    try:
        for row in dataset.map_batches(fn, batch_size=1, **map_args).iter_rows():
            yield pickle.loads(row["result"])
    except Exception as e:  # noqa: BLE001 (Ray wraps worker errors; unwrap to what failed)
        raise _unwrap(e) from None


def _unwrap(error: BaseException) -> FactoryError:
    seen: BaseException | None = error
    while seen is not None:
        if type(seen) is FactoryError:
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    # An actor that died in its constructor carries only the text of what it raised.
    text = str(error)
    mark = "factory.core.errors.FactoryError: "
    if mark in text:
        return FactoryError(text.split(mark)[-1].strip().splitlines()[0])
    last = text.strip().splitlines()[-1] if text.strip() else type(error).__name__
    return FactoryError(f"a Ray worker failed: {last} (the workers' logs are in the Ray session's logs folder)")
