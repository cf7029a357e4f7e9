"""What the training-gain benches share: the factory's CLI in a subprocess (each vLLM engine in its
own process, so every stage starts as a user's command would), held-out evaluation, and the table
of arms over seeds."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELD_OUT = "builtin:arithmetic?n=500&seed=7"  # 500 problems x 4 samples: standard error ~1.7 points


def factory(*args: str, runs: Path | None = None) -> str:
    """Run `factory ARGS...`; return its stdout, or stop with its last lines if it fails."""
    env = {**os.environ, **({"FACTORY_RUNS_DIR": str(runs)} if runs else {})}
    done = subprocess.run([sys.executable, "-m", "factory.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"factory {' '.join(map(str, args))} failed:\n" + "\n".join(done.stderr.splitlines()[-8:]))
    return done.stdout


def held_out(model: Path | str, seed: int, runs: Path, problems: str = HELD_OUT, n: int = 4) -> dict:
    """Sampled pass@1 (temperature 1.0) of a model on the held-out problems, with its standard error."""
    out = factory("eval", "--model", model, "--problems", problems, "--template", "arithmetic_r1", "--n", n,
                  "--temperature", "1.0", "--max-tokens", "128", "--seed", seed, "--json", runs=runs)
    return json.loads(out.strip().splitlines()[-1])


def table(rows: dict[str, list[float]], se: dict[str, float]) -> str:
    """One line per arm: each seed's pass@1, the mean, the spread (min..max) and a typical standard error."""
    lines = ["| arm | pass@1 per seed | mean | min..max | s.e. of one eval |", "|---|---|---|---|---|"]
    for arm, values in rows.items():
        per_seed = ", ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {arm} | {per_seed} | {statistics.mean(values):.3f} | {min(values):.3f}..{max(values):.3f} "
                     f"| {se[arm]:.3f} |")
    return "\n".join(lines)
