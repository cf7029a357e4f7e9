"""Scale-out on Ray: the local executor's per-shard work, run as Ray Data jobs.

The unit of work is the shard, as on one machine: a generation replica (an actor holding one
vLLM engine) runs a shard's requests with the same per-request seeds, and a filter task runs
the chain's per-sample steps over one shard. Results stream back to the driver, which writes
the shards and their completion markers exactly as the local executor does; so the output is
the same, a killed job resumes from the finished shards, and workers need no shared file
system (only the package, and for generation the model: a Hub id or a path every node has).

`ray.init()` joins the cluster named by `--ray-address` or `RAY_ADDRESS` (e.g. `ray://head:10001`
or `auto` on a node of the cluster), and otherwise starts a local one.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from factory.errors import FactoryError
from factory.settings import build, setting


@dataclass
class RayOptions:
    """`--executor ray` settings (a recipe's `ray:` mapping), handed on as a dict of the ones given."""

    address: str | None = setting(None, "ray: cluster to join, e.g. ray://head:10001 or auto (default: RAY_ADDRESS, "
                                  "else a local one).", key="ray_address")
    replicas: int = setting(1, "ray: vLLM engines (actors) running shards in parallel.")
    num_gpus: float | None = setting(None, "ray: GPUs per vLLM replica (default: tensor_parallel_size with GPUs, else 0).")
    num_cpus: float | None = setting(None, "ray: CPUs per vLLM replica or filter task (default 1).")
    num_workers: int | None = setting(None, "ray: filter tasks in flight at most (default: the cluster's CPUs).")

    def validate(self) -> None:
        for key in ("replicas", "num_workers", "num_gpus", "num_cpus"):
            value, least = getattr(self, key), 1 if key in ("replicas", "num_workers") else 0
            if value is not None and value < least:
                raise FactoryError(f"Ray option {key}={value!r} must be {'a whole number' if least else 'a number'} >= {least}")


def check_options(options: dict[str, Any]) -> None:
    build(RayOptions, options, "Ray options")


def connect(options: dict[str, Any]) -> Any:
    """Join (or start) the Ray cluster, quietly: our own log lines say what happens."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise FactoryError("--executor ray needs Ray: pip install 'reasoning-factory[ray]'") from None
    check_options(options)
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
    mark = "factory.errors.FactoryError: "
    if mark in text:
        return FactoryError(text.split(mark)[-1].strip().splitlines()[0])
    last = text.strip().splitlines()[-1] if text.strip() else type(error).__name__
    return FactoryError(f"a Ray worker failed: {last} (the workers' logs are in the Ray session's logs folder)")


class _GenerationReplica:
    """A Ray actor with one engine; it runs whole shards, so batches match the local executor's."""

    def __init__(self, backend: str, model: str, options: dict[str, Any], sampling: Any) -> None:
        from factory.generate.base import open_backend

        self.backend = open_backend(backend, model, options)
        self.sampling = sampling

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from factory.generate.runner import run_shard_job

        results = [pickle.dumps(run_shard_job(self.backend, pickle.loads(job), self.sampling, lambda *_: None))
                   for job in batch["job"]]
        return {"result": results}


def generate_on_ray(config: Any, jobs: list[Any], progress: Callable[[int, int], None]) -> Iterator[Any]:
    """ShardOutputs of the jobs, from `replicas` vLLM engines (each with `num_gpus` GPUs)."""
    options = dict(config.executor_options)
    ray = connect(options)
    replicas = max(1, min(int(options.get("replicas", 1)), len(jobs)))
    engine_args = dict(config.backend_options.get("engine_args") or {})
    num_gpus = float(options.get("num_gpus", engine_args.get("tensor_parallel_size", 1) if _has_gpus(ray) else 0))
    constructor = {"backend": config.backend, "model": config.model, "sampling": config.sampling,
                   "options": {"seed": config.sampling.seed, **config.backend_options}}
    items = [{"job": pickle.dumps(job)} for job in jobs]
    for out in _stream(ray, items, _GenerationReplica, fn_constructor_kwargs=constructor,
                       compute=ray.data.ActorPoolStrategy(size=replicas), num_gpus=num_gpus or None,
                       num_cpus=float(options.get("num_cpus", 1)),
                       ray_remote_args_fn=lambda: {"max_restarts": 0, "max_task_retries": 0}):
        progress(sum(len(c) for c in out.outputs), sum(x.completion_tokens or 0 for c in out.outputs for x in c))
        yield out


def _has_gpus(ray: Any) -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def _filter_task(batch: dict[str, Any]) -> dict[str, list[Any]]:
    from factory.chain import filter_samples, load_chain_text

    import io

    import pyarrow.parquet as pq

    from factory.sample import SCHEMA

    results = []
    for index, shard, chain_text in zip(batch["index"], batch["shard"], batch["chain"]):
        samples = pq.read_table(io.BytesIO(shard), schema=SCHEMA).to_pylist()
        results.append(pickle.dumps((int(index), *filter_samples(samples, load_chain_text(chain_text)))))
    return {"result": results}


def filter_on_ray(run_dir: Any, indices: list[int], chain: Any, options: dict[str, Any]) -> Iterator[tuple[int, list, list, list]]:
    """(index, kept, rejected, step stats) per shard, from Ray tasks over the shards' bytes."""
    from factory import shards

    ray = connect(options)
    chain_text = chain.path.read_text(encoding="utf-8")
    # Shards travel as bytes, a window at a time, so the driver never holds a whole large run.
    window = 4 * max(1, int(options.get("num_workers") or ray.cluster_resources().get("CPU", 1)))
    for start in range(0, len(indices), window):
        items = [{"index": k, "shard": shards.shard_path(run_dir, "generated", k).read_bytes(), "chain": chain_text}
                 for k in indices[start : start + window]]
        yield from _stream(ray, items, _filter_task, num_cpus=float(options.get("num_cpus", 1)),
                           concurrency=options.get("num_workers"), ray_remote_args_fn=lambda: {"max_retries": 0})
