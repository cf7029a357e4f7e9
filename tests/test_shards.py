"""Shards, markers, manifests and sample ids: what makes a run safe to kill and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import COLUMNS, SCHEMA, Sampling, sample_id, to_table


def rows(n: int, start: int = 0) -> list[dict]:
    out = []
    for i in range(start, start + n):
        r = dict.fromkeys(COLUMNS)  # every column, null unless set below
        r.update(
            id=f"s{i}", problem_id=f"p{i // 2}", sample_index=i % 2, problem=f"What is {i} + 1?",
            answer=str(i + 1), completion=f"<think>r</think> <answer>{i + 1}</answer>", final=str(i + 1),
            completion_tokens=10 + i, sampling=Sampling().as_dict(), scores=json.dumps({"judge": 7.0}),
            metadata=json.dumps({"k": i}),
        )
        out.append(r)
    return out


def write(run: Path, index: int, n: int, start: int = 0) -> Path:
    path = shards.shard_path(run, "generated", index)
    shards.write_shard(path, to_table(rows(n, start)), {"seconds": 0.5})
    return path


def test_write_shard_schema_compression_marker(tmp_path):
    path = write(tmp_path, 0, 4)
    assert path == tmp_path / "generated" / "shard-00000.parquet"
    assert pq.read_schema(path).equals(SCHEMA)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 4
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"ZSTD"}
    marker = json.loads(path.with_suffix(".done").read_text())
    assert marker == {"rows": 4, "seconds": 0.5}
    assert shards.is_done(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["shard-00000.done", "shard-00000.parquet"]


def test_write_shard_casts_to_the_schema(tmp_path):
    table = to_table(rows(2))
    i = table.schema.get_field_index("sample_index")
    widened = table.set_column(i, pa.field("sample_index", pa.int64()), table.column(i).cast(pa.int64()))
    assert not widened.schema.equals(SCHEMA)
    path = tmp_path / "s" / "shard-00000.parquet"
    shards.write_shard(path, widened, {})
    assert pq.read_schema(path).equals(SCHEMA)
    assert pq.read_table(path).column("sample_index").to_pylist() == [0, 1]


def test_is_done_needs_the_marker_and_the_shard(tmp_path):
    path = tmp_path / "generated" / "shard-00000.parquet"
    assert not shards.is_done(path)
    path.parent.mkdir()
    pq.write_table(to_table(rows(1)), path)
    assert not shards.is_done(path)  # a shard without a marker is not finished
    path.with_suffix(".done").write_text("{}")
    assert shards.is_done(path)
    path.unlink()
    assert not shards.is_done(path)  # a marker without its shard is not finished either


def test_remove_stale_temp_files(tmp_path):
    folder = tmp_path / "generated"
    write(tmp_path, 0, 1)
    (folder / ".shard-00001.parquet.abc.tmp").write_bytes(b"partial")
    (folder / ".x.tmp").write_bytes(b"partial")
    shards.remove_stale_temp_files(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["shard-00000.done", "shard-00000.parquet"]


def test_read_table_only_finished_shards(tmp_path):
    write(tmp_path, 0, 3)
    write(tmp_path, 1, 2, start=3)
    unfinished = shards.shard_path(tmp_path, "generated", 2)
    pq.write_table(to_table(rows(5, start=100)), unfinished)  # no marker: a killed writer
    table = shards.read_table(tmp_path, "generated")
    assert table.schema.equals(SCHEMA)
    assert table.column("id").to_pylist() == ["s0", "s1", "s2", "s3", "s4"]
    assert [p.name for p in shards.done_shards(tmp_path, "generated")] == ["shard-00000.parquet", "shard-00001.parquet"]
    assert len(shards.read_samples(tmp_path, "generated")) == 5


def test_read_table_of_missing_stage_is_empty(tmp_path):
    table = shards.read_table(tmp_path, "curated")
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)
    assert shards.read_samples(tmp_path, "curated") == []


def test_shard_opens_in_duckdb_and_pandas(tmp_path):
    import duckdb
    import pandas as pd

    path = write(tmp_path, 0, 6)
    assert duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall() == [(6,)]
    assert duckdb.sql(f"select sum(completion_tokens) from read_parquet('{path}')").fetchall() == [(75,)]
    assert duckdb.sql(f"select sampling.n from read_parquet('{path}') limit 1").fetchall() == [(4,)]
    df = pd.read_parquet(path)
    assert list(df.columns) == COLUMNS
    assert len(df) == 6 and df["final"].tolist() == [str(i + 1) for i in range(6)]


def test_shard_opens_in_datasets(tmp_path):
    import datasets

    path = write(tmp_path, 0, 6)
    ds = datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 6
    assert ds.column_names == COLUMNS
    assert ds[0]["sampling"]["temperature"] == 0.7


def test_to_table_fills_missing_keys_with_nulls():
    table = to_table([{"id": "a", "problem": "x"}, {"id": "b", "sample_index": 3}])
    assert table.schema.equals(SCHEMA)
    assert table.num_rows == 2
    d = table.to_pylist()
    assert d[0]["problem"] == "x" and d[1]["problem"] is None
    assert d[0]["sample_index"] is None and d[1]["sample_index"] == 3
    assert all(d[0][c] is None for c in COLUMNS if c not in ("id", "problem"))


def test_to_table_of_no_rows():
    assert to_table([]).num_rows == 0
    assert to_table([]).schema.equals(SCHEMA)


def test_open_run_writes_manifest(tmp_path):
    run = tmp_path / "run"
    config = {"model": "m", "template": "r1_zero"}
    shards.open_run(run, config, "fp1")
    manifest = shards.read_manifest(run)
    assert manifest["fingerprint"] == "fp1"
    assert manifest["config"] == config
    assert manifest["versions"]["pyarrow"] == pa.__version__
    assert "duckdb" in manifest["versions"]
    shards.open_run(run, config, "fp1")  # same config: accepted
    assert shards.read_manifest(run) == manifest


def test_open_run_refuses_a_different_config(tmp_path):
    run = tmp_path / "run"
    shards.open_run(run, {"model": "m", "template": "r1_zero", "limit": 5}, "fp1")
    with pytest.raises(FactoryError) as e:
        shards.open_run(run, {"model": "other", "template": "r1_zero", "limit": 6}, "fp2")
    msg = str(e.value)
    assert str(run) in msg
    assert "changed: model, limit" in msg
    assert "template" not in msg.split("changed:")[1].split(")")[0]
    assert json.loads((run / "manifest.json").read_text())["fingerprint"] == "fp1"


def test_read_manifest_of_a_non_run(tmp_path):
    with pytest.raises(FactoryError, match="not a run folder"):
        shards.read_manifest(tmp_path)


def test_resolve_run(runs_dir, tmp_path, monkeypatch):
    assert shards.resolve_run("exp1") == runs_dir / "exp1"
    assert shards.resolve_run(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
    assert shards.resolve_run("./a/b") == Path("a/b")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").mkdir()
    assert shards.resolve_run("local") == runs_dir / "local"  # a name is never guessed from the working directory


def test_resolve_run_default_root(monkeypatch):
    monkeypatch.delenv("FACTORY_RUNS_DIR", raising=False)
    assert shards.resolve_run("exp_that_does_not_exist") == Path("data/runs/exp_that_does_not_exist")


def test_atomic_write_json_leaves_no_temp(tmp_path):
    path = tmp_path / "d" / "x.json"
    shards.atomic_write_json(path, {"a": 1})
    shards.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_sample_id_is_stable_and_sensitive():
    s = Sampling()
    base = sample_id("p1", "r1_zero", "model", s, 0)
    assert base == sample_id("p1", "r1_zero", "model", Sampling(), 0)
    assert len(base) == 16 and int(base, 16) >= 0
    variants = [
        sample_id("p2", "r1_zero", "model", s, 0),
        sample_id("p1", "r1_zero", "model", s, 1),
        sample_id("p1", "r1_zero", "other-model", s, 0),
        sample_id("p1", "refine", "model", s, 0),
        sample_id("p1", "r1_zero", "model", Sampling(temperature=1.0), 0),
        sample_id("p1", "r1_zero", "model", Sampling(top_p=0.9), 0),
        sample_id("p1", "r1_zero", "model", Sampling(max_tokens=2048), 0),
        sample_id("p1", "r1_zero", "model", Sampling(seed=1), 0),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_sample_id_ignores_n():
    assert sample_id("p1", "t", "m", Sampling(n=4), 2) == sample_id("p1", "t", "m", Sampling(n=16), 2)


def test_model_digest_changes_when_the_weights_do(tmp_path):
    import os

    from factory.core.sample import model_digest

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"a" * 10)
    before = model_digest(str(tmp_path))
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))
    assert model_digest(str(tmp_path)) != before
    assert model_digest("Qwen/Qwen2.5-0.5B") is None
