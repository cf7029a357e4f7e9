"""Kills at every point of `factory filter`, then reruns: the funnel stays exact, workers die with their parent.

Each killed run is the real CLI in its own process, SIGKILLed by a named kill point
(FACTORY_CRASH_AT, factory/core/crash.py) rather than by a timer. The processes are forked from a
server that has the factory imported, so a kill-and-rerun costs a fraction of a second.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.core import shards
from factory.core.sample import SCHEMA
from tests.helpers import FACTORY, REPO, factory_env, run_factory
from tests.test_chain import make_run

CHAIN_A = ("name: strict\nsteps:\n  - parsed\n  - correct\n  - select: {min_pass_rate: 0.6}\n"
           "  - dedup: {exact: true, near: true}\n")
OTHER = "cold_start"  # dedup then select: another chain, for reruns with --redo
PRELOAD = ["factory.cli", "factory.filter.chain", "factory.filter.steps.global_steps", "factory.filter.steps.basic",
           "factory.filter.steps.correct", "factory.filter.steps.language", "factory.filter.steps.readability",
           "factory.filter.dedup", "duckdb", "tests.test_attacks_kill"]


def _cli_child(args: list[str], env: dict[str, str], log: str) -> None:
    """In a forked child: the `factory` command with this environment, its output in `log`."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    sys.argv = ["factory", *args]
    from factory.cli import main

    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@pytest.fixture(scope="module")
def factory_cmd(tmp_path_factory: pytest.TempPathFactory):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    logs = tmp_path_factory.mktemp("logs")

    def run(*args: str, crash: str | None = None) -> tuple[int, str]:
        log = logs / f"{uuid.uuid4().hex}.log"
        env = {"FACTORY_CRASH_AT": crash or "", "TOKENIZERS_PARALLELISM": "false"}
        p = ctx.Process(target=_cli_child, args=([str(a) for a in args], env, str(log)))
        p.start()
        p.join(120)
        assert p.exitcode is not None, f"factory {' '.join(args)} hangs"
        return p.exitcode, log.read_text() if log.exists() else ""

    return run


def _ids(run: Path, stage: str) -> list[str]:
    return shards.read_table(run, stage)["id"].to_pylist()


def outcome(run: Path) -> tuple:
    """What a filter leaves: kept ids, (id, step, reason) rejected, and the funnel."""
    rejected = shards.read_table(run, "rejected").select(["id", "rejected_by", "reason"]).to_pylist()
    return (sorted(_ids(run, "curated")), sorted((r["id"], r["rejected_by"], r["reason"]) for r in rejected),
            json.loads((run / "funnel.json").read_text()))


def assert_exact(run: Path) -> None:
    generated, kept, rejected = _ids(run, "generated"), _ids(run, "curated"), _ids(run, "rejected")
    assert len(kept) == len(set(kept)) and len(rejected) == len(set(rejected)), "an id twice in one stage"
    assert not set(kept) & set(rejected), "an id both curated and rejected"
    assert sorted(kept + rejected) == sorted(generated), "an id lost or made up"
    funnel = json.loads((run / "funnel.json").read_text())
    assert funnel["generated"] == funnel["kept"] + funnel["rejected"] == len(generated)
    assert funnel["kept"] == len(kept) and funnel["rejected"] == len(rejected)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, factory_cmd):
    """A generated run, the test chain, and the outcome of clean runs of both chains."""
    root = tmp_path_factory.mktemp("clean")
    chain_a = root / "strict.yaml"
    chain_a.write_text(CHAIN_A)
    base = root / "base"
    make_run(base)
    results = {}
    for name, chain in (("a", chain_a), ("other", OTHER)):
        run = root / name
        shutil.copytree(base, run)
        code, log = factory_cmd("filter", run, "--chain", chain, "--workers", "1")
        assert code == 0, log
        assert_exact(run)
        results[name] = outcome(run)
    return {"base": base, "chain_a": chain_a, **results}


FIRST_RUN_POINTS = [
    "filter.rejected.renamed@2", "filter.rejected.done@2", "filter.curated.renamed@2", "filter.curated.done@2",
    *[f"global.{step}.{p}" for step in ("select", "dedup") for p in
      ("computed", "rejected.renamed", "rejected.done", "curated.renamed@2", "curated.done@2", "applied")],
    "filter.funnel",
]


@pytest.mark.parametrize("point", FIRST_RUN_POINTS)
def test_kill_at_any_point_then_rerun_is_exact(point: str, clean, factory_cmd, tmp_path: Path):
    killed = tmp_path / "killed"
    shutil.copytree(clean["base"], killed)
    workers = "2" if point.startswith("filter.") else "1"  # per-sample points also through the process pool
    code, log = factory_cmd("filter", killed, "--chain", clean["chain_a"], "--workers", workers, crash=point)
    assert code == -signal.SIGKILL, f"no kill at {point}: exit {code}\n{log}"
    redo = tmp_path / "redo"
    shutil.copytree(killed, redo)

    code, log = factory_cmd("filter", killed, "--chain", clean["chain_a"], "--workers", "1")
    assert code == 0, log
    assert_exact(killed)
    assert outcome(killed) == clean["a"]  # the same samples, reasons and funnel as a run never killed

    code, log = factory_cmd("filter", redo, "--redo", "--chain", OTHER, "--workers", "1")
    assert code == 0, log
    assert_exact(redo)
    assert outcome(redo) == clean["other"]


@pytest.mark.parametrize("point", ["redo.marked", "redo.curated_removed", "redo.cleared"])
@pytest.mark.parametrize("rerun", [["--redo"], []])
def test_kill_while_redo_clears_then_rerun_is_exact(point: str, rerun: list[str], clean, factory_cmd, tmp_path: Path):
    run = tmp_path / "r"
    shutil.copytree(clean["base"], run)
    assert factory_cmd("filter", run, "--chain", clean["chain_a"], "--workers", "1")[0] == 0
    code, log = factory_cmd("filter", run, "--redo", "--chain", OTHER, "--workers", "1", crash=point)
    assert code == -signal.SIGKILL, f"no kill at {point}: exit {code}\n{log}"
    assert not (run / "funnel.json").exists()  # nobody may take the half-cleared run for a filtered one
    code, log = factory_cmd("filter", run, *rerun, "--chain", OTHER, "--workers", "1")
    assert code == 0, log  # without --redo too: the interrupted redo is finished, not refused
    assert_exact(run)
    assert outcome(run) == clean["other"]


def test_a_marker_left_stale_by_a_killed_rewrite_is_repaired(clean, tmp_path: Path):
    run = tmp_path / "r"
    shutil.copytree(clean["base"], run)
    assert run_factory(["filter", str(run), "--chain", OTHER, "--workers", "1"], tmp_path).returncode == 0
    # As killed between a dedup rewrite's rename and its marker: the marker still counts the removed rows.
    (run / "rejected" / "global-00-dedup.applied").unlink()
    shard = shards.done_shards(run, "curated")[0]
    marker = json.loads(shards.marker_path(shard).read_text())
    shards.atomic_write_json(shards.marker_path(shard), {**marker, "rows": marker["rows"] + 3})
    result = run_factory(["filter", str(run), "--chain", OTHER, "--workers", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert_exact(run)
    assert outcome(run) == clean["other"]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_counts_or_ids_that_do_not_add_up_fail_the_command(clean, tmp_path: Path):
    run = tmp_path / "r"
    shutil.copytree(clean["base"], run)
    assert run_factory(["filter", str(run), "--chain", OTHER, "--workers", "1"], tmp_path).returncode == 0
    shard = shards.done_shards(run, "curated")[0]
    marker = json.loads(shards.marker_path(shard).read_text())
    shards.atomic_write_json(shards.marker_path(shard), {**marker, "rows": marker["rows"] + 5})
    for args in (["filter", str(run), "--chain", OTHER], ["funnel", str(run)]):
        result = run_factory(args, tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = _error_lines(result.stderr)
        assert len(lines) == 1 and "does not add up" in lines[0] and "--redo" in lines[0], result.stderr
    shards.atomic_write_json(shards.marker_path(shard), marker)
    # Counts that add up, ids that do not: a rejected row swapped for a copy of a kept one.
    rejected = shards.done_shards(run, "rejected")[0]
    table = pq.read_table(rejected, schema=SCHEMA)
    kept_row = pq.read_table(shard, schema=SCHEMA).slice(0, 1)
    shards.write_shard(rejected, pa.concat_tables([table.slice(1), kept_row]), {})
    result = run_factory(["filter", str(run), "--chain", OTHER], tmp_path)
    assert result.returncode == 2 and "not in exactly one of curated/ and rejected/" in result.stderr, result.stderr
    assert len(_error_lines(result.stderr)) == 1
    # --redo rebuilds it from the generated shards.
    assert run_factory(["filter", str(run), "--redo", "--chain", OTHER], tmp_path).returncode == 0
    assert_exact(run)


def _tagged(tag: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("FACTORY_TEST_TAG") == tag:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_killing_the_filter_process_leaves_no_worker_writing(tmp_path: Path):
    run = tmp_path / "r"
    make_run(run, problems=400, per_shard=25)  # 16 shards: many still queued when the kill lands
    tag = uuid.uuid4().hex
    proc = subprocess.Popen(
        [*FACTORY, "filter", str(run), "--chain", "cold_start", "--workers", "2"], cwd=REPO,
        env={**factory_env(tmp_path), "FACTORY_TEST_TAG": tag}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not shards.done_shards(run, "curated"):
            assert proc.poll() is None and time.time() < deadline, "the filter ended before its first shard"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # the main process only, as an OOM killer or `kill -9 PID` would
        proc.wait()
        assert len(shards.done_shards(run, "curated")) < 16, "the kill must land mid-filter"
        # At once, with another chain: leftover workers of the killed run must neither live nor write.
        result = run_factory(["filter", str(run), "--redo", "--chain", "distill", "--workers", "2"], tmp_path)
        assert result.returncode == 0, result.stderr
        gone_by = time.time() + 5
        while _tagged(tag) and time.time() < gone_by:
            time.sleep(0.1)
        assert not _tagged(tag), "workers of the killed filter are still running"
        time.sleep(1)
        assert_exact(run)
        distill_steps = {"parsed", "complete", "correct", "language", "length", "readability", "dedup"}
        for marker in (run / "curated").glob("*.done"):
            assert {s["step"] for s in json.loads(marker.read_text())["steps"]} <= distill_steps, marker
    finally:
        for p in _tagged(tag):
            p.kill()
