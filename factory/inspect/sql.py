"""`factory sql`: DuckDB over a run's generated, curated and rejected shards, as views."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import SCHEMA

STAGES = ("generated", "curated", "rejected")


def connect(run_dir: Path, unsafe: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with one view per stage (empty views for stages not written yet).

    The shards reach DuckDB as Arrow datasets, so DuckDB itself needs no file access: it is turned
    off (and locked), and a statement can neither read other files (`read_text('/etc/...')`) nor
    write any (`COPY ... TO`), which matters once a report or a service runs queries. `unsafe`
    leaves DuckDB's file access on, for one's own machine.
    """
    shards.read_manifest(run_dir)
    con = duckdb.connect()
    for stage in STAGES:
        files = [str(p) for p in shards.readable_shards(run_dir, stage)]
        con.register(f"_{stage}", ds.dataset(files, schema=SCHEMA, format="parquet") if files else SCHEMA.empty_table())
        con.execute(f"CREATE VIEW {stage} AS SELECT * FROM _{stage}")
    if not unsafe:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def query(run_dir: Path, sql: str, unsafe: bool = False) -> pa.Table:
    con = connect(run_dir, unsafe)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.PermissionException:
        raise FactoryError("the statement reaches files outside the run's views; `factory sql` reads only "
                           f"{', '.join(STAGES)} (pass --unsafe on your own machine to allow DuckDB "
                           "file access)") from None
    except duckdb.Error as e:
        raise FactoryError(f"query failed: {str(e).splitlines()[0]} (views: {', '.join(STAGES)})") from None
    except AttributeError:
        raise FactoryError("the statement returned no rows to show; use a SELECT") from None
