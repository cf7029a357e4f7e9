"""Filter chains: YAML files naming steps and settings, run over a run's shards.

Per-sample steps run shard by shard on an executor (local: worker processes on all cores);
each shard gives `curated/shard-k.parquet` (kept), `rejected/shard-k.parquet` (all columns
plus `rejected_by` and `reason`) and a marker with its per-step counts. Local workers only
write temp files and die with the filter process; the process holding the run lock renames
them into place (remote workers send the rows back and it writes them), so nothing reaches
the run folder without the lock. Global steps then run in DuckDB over all kept samples; each
writes `rejected/global-NN-<step>.parquet` first and then removes those rows from the curated
shards, so a kill at any point resumes cleanly. The run ends by checking the funnel: every
generated sample in exactly one of curated/ and rejected/.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from factory.core import shards
from factory.core.assets import shipped_dir
from factory.core.crash import crash_point
from factory.core.errors import FactoryError
from factory.core.files import read_yaml_file
from factory.core.sample import SCHEMA, to_table, with_parsed_meta
from factory.executors import Executor, ShardJobs, get_executor
from factory.filter.step_stats import StepStats
from factory.filter.steps import GLOBAL, PER_SAMPLE, STEPS, step_class
from factory.filter.steps.base import Outcome, Reject, build

FILTER_MANIFEST = "filter.json"


@dataclass
class Chain:
    name: str
    description: str
    steps: list[tuple[str, Any]]  # (label, configured step object); label = name, or name#2 when repeated
    path: Path
    digest: str

    @property
    def per_sample(self) -> list[tuple[str, Any]]:
        return [(n, s) for n, s in self.steps if s.name in PER_SAMPLE]

    @property
    def global_steps(self) -> list[tuple[str, Any]]:
        return [(n, s) for n, s in self.steps if s.name in GLOBAL]


def chain_dirs(extra: list[Path] | None = None) -> list[Path]:
    return [*(extra or []), shipped_dir("filters")]


def load_chain(name_or_path: str, extra: list[Path] | None = None) -> Chain:
    path = Path(name_or_path)
    if not name_or_path.endswith((".yaml", ".yml")):
        found = [d / f"{name_or_path}.yaml" for d in chain_dirs(extra) if (d / f"{name_or_path}.yaml").is_file()]
        if not found:
            names = sorted({p.stem for d in chain_dirs(extra) if d.is_dir() for p in d.glob("*.yaml")})
            raise FactoryError(f"unknown chain '{name_or_path}': the chains are {', '.join(names)} "
                               "(or pass a .yaml path)")
        path = found[0]
    if not path.is_file():
        raise FactoryError(f"{name_or_path}: no such chain file")
    data = read_yaml_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
        raise FactoryError(f"{path}: a chain is a mapping with 'name', 'description' and a non-empty 'steps' list")
    steps: list[tuple[str, Any]] = []
    seen_global = False
    for i, item in enumerate(data["steps"], 1):
        if isinstance(item, str):
            name, settings = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, settings = next(iter(item.items()))
        else:
            raise FactoryError(f"{path}: step {i} must be a step name or a one-key mapping NAME: {{settings}}")
        if name not in STEPS:
            raise FactoryError(f"{path}: step {i}: unknown step '{name}'; the steps are {', '.join(STEPS)}")
        if name in PER_SAMPLE and seen_global:
            raise FactoryError(f"{path}: step {i} '{name}' is per-sample but comes after a global step; "
                               "list per-sample steps first")
        seen_global |= name in GLOBAL
        repeats = sum(1 for _, s in steps if s.name == name)
        label = name if not repeats else f"{name}#{repeats + 1}"
        steps.append((label, build(step_class(name), settings, f"{path}: step {i}")))
    return Chain(
        name=str(data.get("name") or path.stem),
        description=" ".join(str(data.get("description", "")).split()),
        steps=steps,
        path=path,
        digest=hashlib.sha256(path.read_bytes()).hexdigest()[:16],
    )


def list_chains(extra: list[Path] | None = None) -> dict[str, Chain]:
    found: dict[str, Chain] = {}
    for d in reversed(chain_dirs(extra)):
        for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            c = load_chain(str(p))
            found[c.name] = c
    return found


def _apply(step: Any, samples: list[dict[str, Any]], name: str, stats: StepStats) -> tuple[list, list]:
    step.prepare(samples)
    kept, rejected = [], []
    for s in samples:
        out = step.screen(s)
        if isinstance(out, Reject) or out is None:
            out = Outcome(out)
        if out.scores:
            s["scores"] = json.dumps({**json.loads(s.get("scores") or "{}"), **out.scores})
        if out.reject is None:
            kept.append(s)
        else:
            r = out.reject
            s["rejected_by"], s["reason"] = name, r.reason + (f": {r.detail}" if r.detail else "")
            stats.reject(r.reason)
            rejected.append(s)
    stats.kept = len(kept)
    return kept, rejected


def filter_samples(samples: list[dict[str, Any]], chain: Chain) -> tuple[list, list, list[StepStats]]:
    """The chain's per-sample steps over one shard's samples: (kept, rejected, stats per step)."""
    steps_stats = []
    rejected_all: list[dict[str, Any]] = []
    for name, step in chain.per_sample:
        stats = StepStats(name, len(samples))
        samples, rejected = _apply(step, samples, name, stats)
        rejected_all += rejected
        steps_stats.append(stats)
    return samples, rejected_all, steps_stats


def _stage_outputs(run: Path, index: int, kept: list, rejected: list, steps_stats: list[StepStats]) -> dict[str, Any]:
    """A shard's outputs as temp files beside their final paths: only the lock holder commits them."""
    return {
        "index": index, "steps": [s.to_dict() for s in steps_stats],
        "rejected": (str(shards.write_temp(shards.shard_path(run, "rejected", index), to_table(rejected))),
                     len(rejected)),
        "curated": (str(shards.write_temp(shards.shard_path(run, "curated", index), to_table(kept))), len(kept)),
    }


def commit_filtered(run: Path, out: dict[str, Any]) -> None:
    """Under the run lock: rejected first, then curated, whose marker says the shard is filtered."""
    from factory.core.lock import fence

    fence(run)
    index = out["index"]
    tmp, rows = out["rejected"]
    shards.commit_shard(shards.shard_path(run, "rejected", index), Path(tmp), {"rows": rows}, point="filter.rejected")
    tmp, rows = out["curated"]
    shards.commit_shard(shards.shard_path(run, "curated", index), Path(tmp), {"rows": rows, "steps": out["steps"]},
                        point="filter.curated")


def write_filtered(run: Path, index: int, kept: list, rejected: list, steps_stats: list[StepStats]) -> None:
    commit_filtered(run, _stage_outputs(run, index, kept, rejected, steps_stats))


def filter_shard(run_dir: str, index: int, chain_path: str) -> dict[str, Any]:
    """Worker: run the chain's per-sample steps over one generated shard; its outputs as temp files."""
    run = Path(run_dir)
    source = shards.shard_path(run, "generated", index)
    try:
        samples = with_parsed_meta(pq.read_table(source, schema=SCHEMA).to_pylist())
    except Exception as e:  # a corrupt shard is bad input, reported with its path
        raise FactoryError(f"{source}: cannot read shard ({str(e).splitlines()[0]}); "
                           "regenerate it by deleting it and its .done marker") from None
    kept, rejected, steps_stats = filter_samples(samples, load_chain(chain_path))
    return _stage_outputs(run, index, kept, rejected, steps_stats)


def load_chain_text(text: str) -> Chain:
    """A chain from its YAML text (a remote worker gets the text, not the driver's file)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chain.yaml"
        path.write_text(text, encoding="utf-8")
        return load_chain(str(path))


def filter_shard_bytes(index: int, shard: bytes, chain_text: str) -> tuple[int, list, list, list[StepStats]]:
    """Remote worker: the chain's per-sample steps over a shard sent as bytes; the rows come back."""
    samples = with_parsed_meta(pq.read_table(io.BytesIO(shard), schema=SCHEMA).to_pylist())
    return (index, *filter_samples(samples, load_chain_text(chain_text)))


def _clear(run_dir: Path) -> None:
    (run_dir / "funnel.json").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "curated", ignore_errors=True)
    crash_point("redo.curated_removed")
    shutil.rmtree(run_dir / "rejected", ignore_errors=True)


def _check_filter_manifest(run_dir: Path, chain: Chain, redo: bool) -> None:
    path = run_dir / FILTER_MANIFEST
    old = json.loads(path.read_text()) if path.exists() else None
    if old is not None and old.get("digest") == chain.digest and not redo and not old.get("clearing"):
        return
    if old is not None and old.get("digest") != chain.digest and not redo:
        raise FactoryError(
            f"{run_dir} was filtered with chain '{old.get('chain')}' ({old.get('path')}), not this one; "
            "pass --redo to replace its curated/ and rejected/ shards"
        )
    # Named before clearing: a kill midway leaves a folder this chain's next run finishes clearing.
    manifest = {"chain": chain.name, "path": str(chain.path), "digest": chain.digest}
    (run_dir / "funnel.json").unlink(missing_ok=True)  # downstream runs take its presence for "filtered to the end"
    shards.atomic_write_json(path, {**manifest, "clearing": True})
    crash_point("redo.marked")
    _clear(run_dir)
    crash_point("redo.cleared")
    shards.atomic_write_json(path, manifest)


def run_chain(
    run_dir: Path, chain: Chain, workers: int | None = None, redo: bool = False,
    log: Callable[[str], None] = lambda _m: None, on_shard: Callable[[int], None] = lambda _n: None,
    executor: str = "local", executor_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Filter every unfiltered shard, then run the global steps; return the funnel."""
    from factory.core.lock import run_lock

    runner = get_executor(executor, executor_options)
    shards.read_manifest(run_dir)
    with run_lock(run_dir):  # one writer per run folder; a crashed owner's lock is taken over
        return _run_chain(run_dir, chain, workers, redo, log, on_shard, runner)


def _run_chain(
    run_dir: Path, chain: Chain, workers: int | None, redo: bool, log: Callable[[str], None],
    on_shard: Callable[[int], None], executor: Executor,
) -> dict[str, Any]:
    generated = shards.done_shards(run_dir, "generated")
    if not generated:
        raise FactoryError(f"{run_dir}: no finished generated shards to filter; run `factory generate` first")
    _check_filter_manifest(run_dir, chain, redo)
    for stage in ("curated", "rejected"):
        shards.remove_stale_temp_files(run_dir / stage)
    indices = [int(p.stem.split("-")[1]) for p in generated]
    todo = [k for k in indices
            if not all(shards.is_done(shards.shard_path(run_dir, stage, k)) for stage in ("rejected", "curated"))]
    if todo and list((run_dir / "rejected").glob("global-*")):
        # Global steps already removed rows from the curated shards; with new or redone shards
        # their result would double count, so the whole chain runs again from the generated shards.
        log("shards changed since the global steps ran: filtering every shard again")
        _clear(run_dir)
        todo = indices
    if todo:
        (run_dir / "funnel.json").unlink(missing_ok=True)
    log(f"{len(todo)} of {len(indices)} shards to filter with chain '{chain.name}'" + executor.where)
    if todo:
        _filter_shards(run_dir, todo, chain, executor, workers, on_shard)
    from factory.filter.steps.global_steps import run_global_steps

    run_global_steps(run_dir, chain, log)
    from factory.filter.funnel import check_exact, compute_funnel

    funnel = compute_funnel(run_dir)
    check_exact(run_dir, funnel, f"factory filter {run_dir} --chain {chain.name} --redo")
    crash_point("filter.funnel")
    shards.atomic_write_json(run_dir / "funnel.json", funnel)
    return funnel


def _filter_shards(run_dir: Path, todo: list[int], chain: Chain, executor: Executor, workers: int | None,
                   on_shard: Callable[[int], None]) -> None:
    if executor.shares_files:  # workers read the shards and stage their outputs beside them
        jobs = ShardJobs(filter_shard, [(str(run_dir), k, str(chain.path)) for k in todo])
    else:  # shards travel as bytes, read as the executor asks for them; the rows come back
        text = chain.path.read_text(encoding="utf-8")
        jobs = ShardJobs(filter_shard_bytes,
                         ((k, shards.shard_path(run_dir, "generated", k).read_bytes(), text) for k in todo))
    with executor.run(jobs, workers=workers) as results:
        for out in results:
            if executor.shares_files:
                commit_filtered(run_dir, out)
            else:
                write_filtered(run_dir, *out)
            on_shard(1)
