"""The local executor: every shard runs on this machine.

Jobs with a `setup` (a vLLM engine) run in this process one shard after another: one engine
holds the devices and batches a whole shard. Other jobs run one shard per task in worker
processes, on `workers` cores (default: all); they die with this process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any

from factory.core.errors import FactoryError
from factory.executors.base import Progress, ShardJobs, call_shard


class LocalExecutor:
    name = "local"
    where = ""
    shares_files = True

    @contextmanager
    def run(self, jobs: ShardJobs, workers: int | None = None,
            progress: Progress | None = None) -> Iterator[Iterator[Any]]:
        if jobs.setup is not None:
            state = jobs.setup()
            try:
                yield _here(jobs, (state,), jobs.args, progress)
            finally:
                if jobs.teardown is not None:
                    jobs.teardown(state)
            return
        args = list(jobs.args)
        workers = max(1, min(workers or os.cpu_count() or 1, len(args)))
        if workers == 1:
            yield _here(jobs, (), args, progress)
            return
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(call_shard, jobs.call, (), a, jobs.reports_progress) for a in args]
            try:
                yield _completed(futures, progress)
            except BaseException:
                pool.shutdown(cancel_futures=True)  # e.g. the caller lost the run lock: start no more shards
                raise


def _here(jobs: ShardJobs, prefix: tuple[Any, ...], args: Iterable[tuple[Any, ...]],
          progress: Progress | None) -> Iterator[Any]:
    live = {"progress": progress or _ignore} if jobs.reports_progress else {}
    for a in args:
        yield jobs.call(*prefix, *a, **live)


def _ignore(*_counts: float) -> None:
    pass


def _completed(futures: list[Future], progress: Progress | None) -> Iterator[Any]:
    """Results as they finish; a shard's FactoryError waits until the other shards are done
    (their results are still kept), and the first one is raised."""
    error: FactoryError | None = None
    for f in as_completed(futures):
        try:
            result, counts = f.result()
        except FactoryError as e:
            error = error or e
            continue
        if counts and progress is not None:
            progress(*counts)
        yield result
    if error is not None:
        raise error


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a worker must not outlive the process that started it.

    A killed parent never sends EOF; its workers would finish their queued shards with no
    lock holder, then wait forever."""
    try:  # Linux: the kernel kills this worker when its parent dies
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # elsewhere the watchdog below ends it within a second
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
