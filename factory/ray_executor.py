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

import os
import pickle
from collections.abc import Callable, Iterator
from typing import Any

from factory.errors import FactoryError

RAY_OPTIONS = ("address", "replicas", "num_gpus", "num_cpus", "num_workers")


def check_options(options: dict[str, Any]) -> None:
    unknown = set(options) - set(RAY_OPTIONS)
    if unknown:
        raise FactoryError(f"unknown Ray option(s) {', '.join(sorted(unknown))}; the options are {', '.join(RAY_OPTIONS)}")


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
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return ray


def _stream(ray: Any, items: list[dict[str, Any]], fn: Any, **map_args: Any) -> Iterator[Any]:
    """One Ray Data block per item, mapped one item per call; results as they finish."""
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    for row in dataset.map_batches(fn, batch_size=1, **map_args).iter_rows():
        yield pickle.loads(row["result"])


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
                       num_cpus=float(options.get("num_cpus", 1))):
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
                           concurrency=options.get("num_workers"))
