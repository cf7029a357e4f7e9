"""The executors' interface: per-shard jobs in, per-shard results out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

Progress = Callable[..., None]


@dataclass(frozen=True)
class ShardJobs:
    """`call(*args)` for each shard's `args`, or `call(state, *args)` when `setup` is given.

    Everything here may travel to another machine, so `call`, `setup` and the arguments must
    pickle (module-level functions and plain data). `args` may be lazy: an executor that ships
    large arguments (a shard's bytes) reads it a window at a time."""

    call: Callable[..., Any]
    args: Iterable[tuple[Any, ...]]
    # Builds what a worker keeps across its shards (a vLLM engine): once per worker, not per shard.
    setup: Callable[[], Any] | None = None
    # Run on that state once its worker is done with it (frees the devices).
    teardown: Callable[[Any], None] | None = None
    # `call` takes `progress=`, a function of running counts (samples, tokens) it calls as it goes.
    reports_progress: bool = False
    # GPUs one worker's state needs, where the workers have GPUs.
    gpus: float = 0


class Executor(Protocol):
    name: str
    # Appended to the log line that says how many shards are to do.
    where: str
    # Whether workers see this machine's files: if not, jobs must carry their inputs and return their outputs.
    shares_files: bool

    def run(self, jobs: ShardJobs, workers: int | None = None,
            progress: Progress | None = None) -> AbstractContextManager[Iterator[Any]]:
        """Entering starts the workers (and their `setup`), so a bad model fails before any
        other output; the iterator yields each shard's result as it finishes; leaving stops
        the workers, and an error in the caller's loop starts no further shards."""
        ...


def call_shard(call: Callable[..., Any], prefix: tuple[Any, ...], args: tuple[Any, ...],
               reports_progress: bool) -> tuple[Any, list[float]]:
    """`call(*prefix, *args)` in a worker: its result and the progress counts it reported,
    summed, so that a remote worker's progress reaches the caller with its result."""
    if not reports_progress:
        return call(*prefix, *args), []
    totals: list[float] = []

    def count(*values: float) -> None:
        totals.extend([0] * (len(values) - len(totals)))
        for i, v in enumerate(values):
            totals[i] += v

    return call(*prefix, *args, progress=count), totals
