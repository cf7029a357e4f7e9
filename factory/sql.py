"""`factory sql`: DuckDB over a run's generated, curated and rejected shards, as views."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from factory import shards
from factory.errors import FactoryError
from factory.sample import SCHEMA

STAGES = ("generated", "curated", "rejected")


def connect(run_dir: Path) -> duckdb.DuckDBPyConnection:
    """A connection with one view per stage (empty views for stages not written yet)."""
    shards.read_manifest(run_dir)
    con = duckdb.connect()
    for stage in STAGES:
        files = [str(p) for p in shards.done_shards(run_dir, stage)]
        if files:
            con.execute(f"CREATE VIEW {stage} AS SELECT * FROM read_parquet({files!r}, union_by_name = true)")
        else:
            con.register(f"_{stage}_empty", SCHEMA.empty_table())
            con.execute(f"CREATE VIEW {stage} AS SELECT * FROM _{stage}_empty")
    return con


def query(run_dir: Path, sql: str) -> pa.Table:
    con = connect(run_dir)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as e:
        raise FactoryError(f"query failed: {str(e).splitlines()[0]} (views: {', '.join(STAGES)})") from None
    except AttributeError:
        raise FactoryError("the statement returned no rows to show; use a SELECT") from None
