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
