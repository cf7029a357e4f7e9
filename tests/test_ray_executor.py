"""`--executor ray`: generation on vLLM replicas and the per-sample filter stage as Ray Data jobs,
on a local Ray cluster of 2 CPUs, give the same shards as the local executor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from factory.core.sample import Sampling
from factory.core.shards import done_shards, read_table
from factory.filter.chain import load_chain, run_chain
from factory.generate.runner import GenerateConfig, run_generation
from tests.helpers import REPO, run_factory

pytestmark = pytest.mark.slow

MODEL = str(REPO / "data" / "tiny-model")
PROBLEMS = "builtin:arithmetic?n=24&seed=21"
GENERATE = ["--model", MODEL, "--problems", PROBLEMS, "--template", "arithmetic_r1", "--n", "3", "--temperature", "1.0",
            "--max-tokens", "96", "--shard-size", "18", "--seed", "5"]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("local-runs")
    for args in (["generate", "local", *GENERATE], ["filter", "local", "--chain", "cold_start"]):
        result = run_factory(args, runs, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
    return runs / "local"


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is part of the dev install: make install")
    # The replicas inherit this environment: a small KV cache, as the local run's engine had.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _sorted(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def test_ray_generation_and_filter_match_the_local_executor(local_run: Path, ray_cluster, tmp_path: Path):
    run = tmp_path / "ray"
    config = GenerateConfig(
        problems=PROBLEMS, model=MODEL, template="arithmetic_r1", shard_size=18,
        sampling=Sampling(n=3, temperature=1.0, max_tokens=96, seed=5),
        executor="ray", executor_options={"replicas": 2},
    )
    result = run_generation(config, run)
    assert result.shards_written == result.shards_total == 4 and result.samples == 72

    # Same fingerprint: the executor is how, not what, so either executor may resume the run.
    fingerprint = json.loads((run / "manifest.json").read_text())["fingerprint"]
    assert fingerprint == json.loads((local_run / "manifest.json").read_text())["fingerprint"]

    generated, expected = read_table(run, "generated"), read_table(local_run, "generated")
    assert generated.num_rows == expected.num_rows == 72
    assert _sorted(generated) == _sorted(expected)  # every column, texts included

    funnel = run_chain(run, load_chain("cold_start"), executor="ray")
    local_funnel = json.loads((local_run / "funnel.json").read_text())
    assert funnel == local_funnel and 0 < funnel["kept"] < 72
    for stage in ("curated", "rejected"):
        assert _sorted(read_table(run, stage)) == _sorted(read_table(local_run, stage))
    assert len(done_shards(run, "curated")) == 4


def test_ray_generation_resumes_a_run_the_local_executor_started(local_run: Path, ray_cluster, tmp_path: Path):
    import shutil

    run = tmp_path / "half"
    shutil.copytree(local_run, run)
    for stage in ("curated", "rejected"):
        shutil.rmtree(run / stage)
    (run / "funnel.json").unlink()
    for k in (1, 3):  # two shards lost, as after a crash
        for suffix in (".parquet", ".done"):
            (run / "generated" / f"shard-{k:05d}{suffix}").unlink()
    result = run_factory(["generate", str(run), *GENERATE, "--executor", "ray", "--replicas", "2",
                          "--ray-address", ray_cluster.get_runtime_context().gcs_address], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 of 4 shards to generate" in result.stderr and "on Ray" in result.stderr
    assert _sorted(read_table(run, "generated")) == _sorted(read_table(local_run, "generated"))


def test_recipe_with_executor_ray_filters_like_the_local_executor(ray_cluster, tmp_path: Path, runs_dir: Path, cli):
    from tests.test_chain import make_run

    for name in ("local", "on-ray"):
        make_run(runs_dir / name, problems=60, per_shard=6)  # 10 shards of right, wrong, cut-off, mixed samples
    recipe = tmp_path / "r.yaml"
    recipe.write_text("run: on-ray\nexecutor: ray\nray: {num_cpus: 1}\nfilter: {chain: cold_start}\n")
    result = cli("run", str(recipe), "--json")
    assert result.exit_code == 0, result.output
    assert "10 of 10 shards to filter with chain 'cold_start' on Ray" in result.output
    local = cli("filter", "local", "--chain", "cold_start")
    assert local.exit_code == 0, local.output
    for stage in ("curated", "rejected"):
        assert _sorted(read_table(runs_dir / "on-ray", stage)) == _sorted(read_table(runs_dir / "local", stage))
    assert (runs_dir / "on-ray" / "funnel.json").read_text() == (runs_dir / "local" / "funnel.json").read_text()


def test_a_replica_that_cannot_start_is_one_line_not_a_hang(ray_cluster, tmp_path: Path, runs_dir: Path, cli):
    missing = tmp_path / "no-such-model"
    result = cli("generate", "bad", "--model", str(missing), "--problems", "builtin:arithmetic?n=4",
                 "--executor", "ray", "--max-tokens", "8")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(missing) in lines[0] and "Traceback" not in result.output
    assert not (runs_dir / "bad" / "manifest.json").exists()  # a failed start does not claim the run name
    bad = cli("generate", "bad", "--model", str(missing), "--executor", "ray", "--replicas", "0")
    assert bad.exit_code == 2 and "replicas=0 must be a whole number >= 1" in bad.output
