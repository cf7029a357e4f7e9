"""One writer per run folder: a lease on `RUN/.lock` that no dead, distant or namespaced owner leaves stuck.

The lease is two things:
- an exclusive flock on the file. The kernel drops it when its holder dies, however it dies
  (kill -9, OOM), and it is one lock for every PID namespace on the machine, so a pid never
  decides whether a lock taken this way is live;
- a record in the file: pid, host, kernel boot id, command, a random token and a heartbeat
  (wall-clock seconds) that a thread renews every FACTORY_LOCK_HEARTBEAT_S seconds (10). A
  folder shared between machines (NFS, a volume a rescheduled pod mounts on another node)
  may not carry flocks across them, so a record from another machine counts as held until
  its heartbeat is FACTORY_LOCK_EXPIRY_S old (60).
Only the process that holds the flock judges the record, so taking the lock is atomic: of
any number of simultaneous takers exactly one wins. A holder removes the file on release; a
killed one leaves it, and the next taker finds the flock free and takes over.

Writers call `fence(run_dir)` before each write into the folder: a holder whose lease was
taken over (its heartbeat stalled past the expiry, or the file was deleted) stops there
instead of overwriting the new owner's work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from factory.core.errors import FactoryError, RunBusy

LOCK = ".lock"
HEARTBEAT_S = 10.0
EXPIRY_S = 60.0


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if value <= 0:
        raise FactoryError(f"{name}={raw!r} must be a number of seconds > 0")
    return value


def intervals() -> tuple[float, float]:
    """(heartbeat, expiry) in seconds, from the environment or the defaults."""
    heartbeat, expiry = _seconds("FACTORY_LOCK_HEARTBEAT_S", HEARTBEAT_S), _seconds("FACTORY_LOCK_EXPIRY_S", EXPIRY_S)
    if expiry <= 2 * heartbeat:  # a lease must outlive a late beat or two
        raise FactoryError(f"FACTORY_LOCK_EXPIRY_S ({expiry:g}) must be more than twice "
                           f"FACTORY_LOCK_HEARTBEAT_S ({heartbeat:g})")
    return heartbeat, expiry


def _boot_id() -> str | None:
    # The same boot id means the same kernel, where the flock alone is the truth.
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


@dataclass
class _Held:
    path: Path
    fd: int
    record: dict
    depth: int = 1
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    lost: str | None = None  # why this process no longer holds the lease


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _forget_in_child() -> None:
    # A forked child (a torch or vLLM helper) must neither keep the flock alive after its
    # parent dies nor believe it holds the lease.
    global _GUARD
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()
    _GUARD = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def _key(path: Path) -> str:
    return os.path.realpath(path)


def _parse(data: bytes) -> dict | None:
    try:
        obj = json.loads(data or b"{}")
    except ValueError:
        return None  # a write caught halfway
    return obj if isinstance(obj, dict) else None


def _read(path: Path, fd: int | None = None) -> dict:
    for _ in range(20):
        try:
            data = os.pread(fd, 1 << 16, 0) if fd is not None else path.read_bytes()
        except FileNotFoundError:
            return {}
        if (obj := _parse(data)) is not None:
            if obj or fd is not None:
                return obj
        time.sleep(0.02)  # empty: its holder is about to write it; garbled: a write in progress
    return {}


def _write(fd: int, record: dict) -> None:
    data = json.dumps(record).encode()
    os.pwrite(fd, data, 0)  # in place: the flock belongs to this inode, a rename would drop it
    os.ftruncate(fd, len(data))
    os.fsync(fd)  # so another machine sees the heartbeat


def _same_kernel(owner: dict) -> bool:
    mine = _boot_id()
    if owner.get("boot_id") and mine:
        return owner["boot_id"] == mine
    return owner.get("host") == socket.gethostname()


def _still_held(owner: dict, path: Path) -> str | None:
    """Why a record counts as held although its flock is free here; None when it is stale."""
    if not owner:
        return None
    if not _same_kernel(owner):
        _, expiry = intervals()
        beat = owner.get("heartbeat")
        if not isinstance(beat, (int, float)):
            with contextlib.suppress(OSError):
                beat = path.stat().st_mtime
        age = time.time() - float(beat or 0)
        if age < expiry:
            return (f"its last heartbeat was {max(age, 0):.0f} s ago and its lease expires {expiry:.0f} s "
                    "after the last one")
        return None
    if "token" not in owner:
        # Written by hand or by a version that held no flock: only its pid can tell.
        started = _start_time(int(owner.get("pid", -1)))
        if started is not None and abs(started - float(owner.get("started") or 0)) <= 1.0:
            return "that process is running"
    return None  # same kernel, flock free: its holder is dead


def _refusal(path: Path, owner: dict, why: str | None) -> RunBusy:
    who = (f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')} ({owner.get('command', '')})"
           if owner else "another process (its record is not written yet)")
    if why and "heartbeat" in why:
        hint = "wait for it; if it is gone, its lease expires by itself"
    elif why:
        hint = f"wait for it, or delete {path} if that process is gone"
    else:
        hint = "wait for it to finish (the lock goes with its process)"
    return RunBusy(f"{path.parent} is in use by {who}{f'; {why}' if why else ''}; {hint}")


def _flocked(path: Path) -> int | None:
    """An fd holding the flock on the file now at `path`, or None if another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder released and removed it between our open and flock: take the new file


def _acquire(path: Path) -> _Held:
    heartbeat, _ = intervals()
    for attempt in range(5):
        fd = _flocked(path)
        if fd is None:
            if attempt < 4:  # live_owner() probes hold a shared flock for an instant
                time.sleep(0.05)
                continue
            raise _refusal(path, _read(path), None)
        owner = _read(path, fd)
        why = _still_held(owner, path)
        if why:
            os.close(fd)
            raise _refusal(path, owner, why)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
                  "started": _start_time(os.getpid()), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv)[:200], "token": secrets.token_hex(8), "heartbeat": time.time()}
        _write(fd, record)
        held = _Held(path, fd, record)
        held.thread = threading.Thread(target=_beat, args=(held, heartbeat), name="run-lock-heartbeat", daemon=True)
        held.thread.start()
        return held
    raise AssertionError("unreachable")


def _check(held: _Held) -> str | None:
    """Why `held` is no longer this process's lease, or None while it is."""
    try:
        if not os.path.samestat(os.fstat(held.fd), os.stat(held.path)):
            return f"{held.path} was replaced"
    except FileNotFoundError:
        return f"{held.path} was deleted"
    owner = _read(held.path, held.fd)
    if owner.get("token") != held.record["token"]:
        return f"pid {owner.get('pid')} on {owner.get('host')} took it over ({owner.get('command', '')})"
    return None


def _beat(held: _Held, every: float) -> None:
    while not held.stop.wait(every):
        try:
            held.lost = held.lost or _check(held)
            if held.lost:
                return
            held.record["heartbeat"] = time.time()
            _write(held.fd, held.record)
        except OSError:
            continue  # a passing file-system error: the next beat tries again


def _release(key: str) -> None:
    with _GUARD:
        held = _HELD.get(key)
        if held is None:
            return
        held.depth -= 1
        if held.depth:
            return
        del _HELD[key]
    held.stop.set()
    if held.thread is not None:
        held.thread.join()
    with contextlib.suppress(OSError):
        if _check(held) is None:
            held.path.unlink()  # still flocked: a waiting taker sees the inode change and retries
    os.close(held.fd)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    key = _key(path)
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:  # re-entrant: this process holds it already (e.g. generate inside a recipe)
            held.depth += 1
    if held is None:
        held = _acquire(path)
        with _GUARD:
            _HELD[key] = held
    try:
        yield
    finally:
        _release(key)


def holds(run_dir: Path) -> bool:
    """Whether this process holds the run's lock."""
    return _key(run_dir / LOCK) in _HELD


def fence(run_dir: Path) -> None:
    """Raise unless this process still holds the run's lease; call it before each write."""
    held = _HELD.get(_key(run_dir / LOCK))
    if held is None:
        raise FactoryError(f"{run_dir}: writing needs the run lock, which this process does not hold")
    held.lost = held.lost or _check(held)
    if held.lost:
        raise FactoryError(f"{run_dir}: this process lost its run lock ({held.lost}); stopped before writing. "
                           "Rerun when the other process is done")


def live_owner(run_dir: Path) -> dict | None:
    """Who holds the run's lock now, or None (no lock, or a dead owner's stale one)."""
    path = run_dir / LOCK
    held = _HELD.get(_key(path))
    if held is not None:
        return dict(held.record)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: a probe never blocks another probe
        except BlockingIOError:
            return _read(path) or {"pid": None, "host": None, "command": "(starting)"}
        owner = _read(path, fd)
        return owner if _still_held(owner, path) else None
    finally:
        os.close(fd)
