"""One writer per run folder: a lock file that a crashed process does not leave stuck.

`run_lock(run_dir)` creates `run_dir/.lock` atomically (O_EXCL) holding the owner's pid,
host and process start time. A second process is refused with who holds it. A lock whose
owner is gone (same host, pid dead, or pid reused by a process that started later) is
stale: it is taken over, so a `kill -9` never blocks the next scheduled run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from factory.errors import FactoryError

LOCK = ".lock"


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _is_stale(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return False  # another machine's process cannot be checked from here
    started = _start_time(int(owner.get("pid", -1)))
    return started is None or abs(started - float(owner.get("started", 0))) > 1.0


def live_owner(run_dir: Path) -> dict | None:
    """Who holds the run's lock now, or None (no lock, or a crashed owner's stale one)."""
    try:
        owner = json.loads((run_dir / LOCK).read_text() or "{}")
    except (OSError, ValueError):
        return None
    return owner if owner and not _is_stale(owner) else None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()),
          "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:200]}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                owner = {}
            if owner.get("pid") == os.getpid() and owner.get("host") == me["host"]:
                yield  # re-entrant: this process already holds it (e.g. eval inside a recipe)
                return
            if owner and not _is_stale(owner):
                raise FactoryError(
                    f"{run_dir} is in use by pid {owner.get('pid')} on {owner.get('host')} since "
                    f"{owner.get('since')} ({owner.get('command')}); wait for it, or delete {path} if that process is gone"
                )
            path.unlink(missing_ok=True)  # stale: its owner died without releasing it
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    raise FactoryError(f"{path}: could not take the run lock; another process keeps replacing it")
