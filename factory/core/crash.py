"""Named kill points: FACTORY_CRASH_AT=NAME (or NAME@N, its Nth time) SIGKILLs the process there.

Every write sequence of a run (a shard then its marker, a global step's rejected file then
the curated rewrites) must leave a folder the next run completes exactly, wherever a kill
lands. The tests prove it by killing at each of these points rather than by timing a kill.
"""

from __future__ import annotations

import os
import signal

ENV = "FACTORY_CRASH_AT"
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    target = os.environ.get(ENV)
    if not target:
        return
    wanted, _, nth = target.partition("@")
    if wanted != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
