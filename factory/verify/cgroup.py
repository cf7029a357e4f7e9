"""A memory cgroup per sandbox run, so that the memory limit covers the whole program.

rlimits are per process and count only address space: children each get their own, and
memfd, tmpfs and kernel buffers are outside it. A memory cgroup charges every page any of
its processes touches, so the limit holds however the program spreads its memory.

The cgroup is made as a child of this process's own memory cgroup: cgroup v2 where the
memory controller is delegated to our children, else cgroup v1's memory hierarchy. Making
one needs write access there (root, or a delegated subtree); where that fails, `create`
returns None and the sandbox falls back to rlimits. FACTORY_SANDBOX_CGROUP=0 forces that.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CGROUP_ENV = "FACTORY_SANDBOX_CGROUP"
_PREFIX = "factory-sandbox-"


@dataclass(frozen=True)
class MemoryCgroup:
    path: Path
    version: int  # 1 or 2

    @property
    def procs(self) -> str:
        return str(self.path / "cgroup.procs")

    def oom_kills(self) -> int:
        """How many of its processes the kernel killed for going over the limit."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            text = (self.path / name).read_text()
        except OSError:
            return 0
        m = re.search(r"^oom_kill (\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def remove(self, wait_s: float = 2.0) -> None:
        """Kill anything still inside, then remove the cgroup (the kernel refuses while a
        process, even a dying one, is still in it)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                for pid in (self.path / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return  # left for _sweep in a later process
                time.sleep(0.01)


def enabled() -> bool:
    return os.environ.get(CGROUP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fstype, super options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[3], fields[4], tail[0], set(tail[2].split(","))))
    return found


def _candidates() -> list[tuple[Path, int]]:
    """Our own memory cgroup's directory, v2 first, as (path, version)."""
    mine: dict[str, str] = {}  # controller ("" for v2) -> our path in that hierarchy
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            mine[c] = path
    out = []
    for root, point, fstype, opts in sorted(_mounts(), key=lambda m: m[2] != "cgroup2"):
        key = "" if fstype == "cgroup2" else "memory" if "memory" in opts else None
        if key is None or key not in mine:
            continue
        rel = mine[key]
        if root != "/" and (rel == root or rel.startswith(root + "/")):
            rel = rel[len(root):]
        d = Path(point + rel)
        if fstype == "cgroup2":
            try:  # v2 gives children a memory controller only when the parent delegates it
                if "memory" not in (d / "cgroup.subtree_control").read_text().split():
                    continue
            except OSError:
                continue
        out.append((d, 2 if fstype == "cgroup2" else 1))
    return out


def _sweep(parent: Path) -> None:
    """Remove cgroups that runs of a dead process left behind."""
    for d in parent.glob(_PREFIX + "*"):
        pid = d.name[len(_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                d.rmdir()
            except OSError:
                pass


@lru_cache(maxsize=1)
def _parent() -> tuple[Path, int] | None:
    """Where this process can make memory cgroups, found once by making one."""
    try:
        candidates = _candidates()
    except OSError:
        return None
    for parent, version in candidates:
        _sweep(parent)
        cg = _make(parent, version, 64 << 20)
        if cg is not None:
            cg.remove()
            return parent, version
    return None


def _make(parent: Path, version: int, limit: int) -> MemoryCgroup | None:
    path = parent / f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        path.mkdir()
    except OSError:
        return None
    cg = MemoryCgroup(path, version)
    settings = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", limit)] if version == 1 \
        else [("memory.max", limit), ("memory.swap.max", 0), ("memory.oom.group", 1)]
    try:
        for i, (name, value) in enumerate(settings):
            f = path / name
            if i == 0 or f.exists():  # swap accounting and oom.group are optional
                f.write_text(str(value))
    except OSError:
        cg.remove()
        return None
    return cg


def create(limit_bytes: int) -> MemoryCgroup | None:
    """A fresh memory cgroup capped at limit_bytes (swap included), or None where none can be made."""
    found = _parent()
    return _make(*found, limit_bytes) if found else None
