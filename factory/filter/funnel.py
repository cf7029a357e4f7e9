"""The funnel: for each step, how many samples came in, were kept, and were rejected per reason.

Built from the per-shard markers (per-sample steps) and the global steps' markers, so it
costs nothing to compute and always matches the shards on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from factory.core import shards
from factory.core.errors import FactoryError
from factory.filter.step_stats import StepStats


def compute_funnel(run_dir: Path) -> dict[str, Any]:
    steps: dict[str, StepStats] = {}  # in first-seen order
    shards.readable_shards(run_dir, "generated")  # a damaged input shard is named, not counted past
    markers = [shards.marker_path(p) for p in shards.done_shards(run_dir, "curated")]
    markers += [shards.marker_path(p) for p in shards.done_shards(run_dir, "rejected") if p.name.startswith("global-")]
    if not markers:
        raise FactoryError(f"{run_dir}: not filtered yet; run `factory filter {run_dir} --chain NAME` first")
    for marker in markers:
        for s in map(StepStats.from_dict, json.loads(marker.read_text()).get("steps", [])):
            steps.setdefault(s.step, StepStats(s.step)).add(s)
    generated = sum(json.loads(shards.marker_path(p).read_text())["rows"]
                    for p in shards.done_shards(run_dir, "generated"))
    curated = sum(json.loads(shards.marker_path(p).read_text())["rows"] for p in shards.done_shards(run_dir, "curated"))
    rejected = sum(json.loads(shards.marker_path(p).read_text())["rows"]
                   for p in shards.done_shards(run_dir, "rejected"))
    return {"generated": generated, "kept": curated, "rejected": rejected,
            "steps": [s.to_dict() for s in steps.values()]}


def check_exact(run_dir: Path, funnel: dict[str, Any], fix: str) -> None:
    """Raise unless every generated sample is in exactly one of curated/ and rejected/.

    The counts come from the markers and the ids from the shards themselves, so a marker
    that disagrees with its file is caught too. `fix` is the command that rebuilds the run."""
    g, k, r = funnel["generated"], funnel["kept"], funnel["rejected"]
    if g != k + r:
        raise FactoryError(f"{run_dir}: the funnel does not add up (generated {g} != kept {k} + rejected {r}); "
                           f"rebuild curated/ and rejected/ with `{fix}`")
    import duckdb

    files = {stage: [str(p) for p in shards.done_shards(run_dir, stage)]
             for stage in ("generated", "curated", "rejected")}
    parts = [f"SELECT id, {int(stage == 'generated')} AS g FROM read_parquet({paths!r})"
             for stage, paths in files.items() if paths]
    wrong = duckdb.connect().sql(
        f"SELECT id, sum(g) AS g, count(*) - sum(g) AS out FROM ({' UNION ALL '.join(parts)}) GROUP BY id "
        "HAVING sum(g) != count(*) - sum(g) ORDER BY id"
    ).fetchall()
    if wrong:
        i, seen, placed = wrong[0]
        raise FactoryError(f"{run_dir}: {len(wrong)} sample ids are not in exactly one of curated/ and rejected/ "
                           f"(e.g. {i}: generated {seen}x, filtered {placed}x); "
                           f"rebuild curated/ and rejected/ with `{fix}`")


def print_funnel(funnel: dict[str, Any], console: Console) -> None:
    table = Table("step", "in", "kept", "rejected", "reasons", title="funnel")
    for s in funnel["steps"]:
        total = sum(s["rejected"].values())
        reasons = ", ".join(f"{r} {c}" for r, c in sorted(s["rejected"].items(), key=lambda kv: -kv[1]))
        table.add_row(s["step"], str(s["in"]), str(s["kept"]), str(total), reasons)
    console.print(table)
    ok = funnel["generated"] == funnel["kept"] + funnel["rejected"]
    console.print(
        f"generated {funnel['generated']} = kept {funnel['kept']} + rejected {funnel['rejected']}"
        + ("" if ok else "  [red](mismatch: the run is being written or a shard is corrupt)[/]")
    )
