"""Helpers for tests that run the real `factory` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FACTORY = [sys.executable, "-m", "factory.cli"]


def factory_env(runs_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FACTORY_RUNS_DIR=str(runs_dir),
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_LOGGING_LEVEL="WARNING",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run_factory(args: list[str], runs_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FACTORY, *args], cwd=REPO, env=factory_env(runs_dir), capture_output=True, text=True, timeout=timeout
    )


def record_sandbox_uids(monkeypatch, uids: set[int]) -> None:
    """Collect the host uids the code sandbox runs as during a test, so leftover checks look only at
    this test's processes even while another test run uses the sandbox."""
    from factory.verify import sandbox

    pick = sandbox._pick_uid

    def recording() -> int:
        uid = pick()
        uids.add(uid)
        return uid

    uids.clear()
    monkeypatch.setattr(sandbox, "_pick_uid", recording)


def send_json(handler, status: int, body: object, headers: dict[str, str] | None = None) -> None:
    """A stand-in server's JSON reply, from inside a BaseHTTPRequestHandler."""
    import json

    data = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)

