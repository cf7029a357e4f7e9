"""Global steps: they see all kept samples at once, in DuckDB over every curated shard.

A step returns a `GlobalResult`: the ids to reject with "code: detail" reasons, and scores to
merge into the kept samples' `scores` (a judge's). Applying it is crash-safe:
the rejected rows are written to `rejected/global-NN-<step>.parquet` (with a marker) before
any curated shard is rewritten without them, and a rerun that finds that file re-applies it
instead of computing the step again. Re-applying rewrites every curated shard that still
holds a rejected row or whose marker's row count is not its file's (a kill between the
rewritten shard's rename and its marker), so the markers the funnel adds up stay true.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory.core import shards
from factory.core.crash import crash_point
from factory.core.errors import FactoryError
from factory.core.sample import SCHEMA
from factory.core.settings import setting
from factory.filter.step_stats import StepStats


@dataclass
class GlobalResult:
    """What a global step decided about the kept samples."""

    rejected: pa.Table  # columns id, reason ("code: detail")
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # sample id -> {score name: value}


class GlobalStep:
    name: str
    description: str
    reasons: tuple[str, ...] = ()

    def run(self, con: duckdb.DuckDBPyConnection) -> GlobalResult:
        """Views `kept` (curated samples) and `generated` (all samples) exist."""
        raise NotImplementedError


@dataclass
class Dedup(GlobalStep):
    name = "dedup"
    description = ("Exact duplicates (normalized-text hash join) and near duplicates "
                   "(MinHash + LSH bands joined in DuckDB).")
    reasons = ("exact_duplicate", "near_duplicate")
    exact: bool = setting(True, "reject exact duplicates of the normalized completion")
    near: bool = setting(True, "reject near duplicates by MinHash")
    threshold: float = setting(0.8, "estimated Jaccard similarity from which two texts are near duplicates")
    num_perm: int = setting(128, "MinHash permutations")
    bands: int = setting(16, "LSH bands (num_perm must be a multiple)")
    ngram: int = setting(5, "word n-gram size of the shingles")
    column: str = setting("completion", "text column to deduplicate")

    def validate(self) -> None:
        if self.num_perm % self.bands:
            raise FactoryError("num_perm must be a multiple of bands")
        if not 0 < self.threshold <= 1:
            raise FactoryError("threshold must be in (0, 1]")

    def run(self, con: duckdb.DuckDBPyConnection) -> GlobalResult:
        from factory.filter import dedup

        parts = []
        if self.exact:
            parts.append(dedup.exact_duplicates(con, "kept"))
        if self.near:
            rejected = {i.as_py() for p in parts for i in p["id"]}
            con.register("_not_exact", pa.table({"id": list(rejected)}, schema=pa.schema([("id", pa.string())])))
            con.execute("CREATE OR REPLACE TEMP VIEW kept_unique AS "
                        "SELECT * FROM kept WHERE id NOT IN (SELECT id FROM _not_exact)")
            parts.append(dedup.near_duplicates(con, "kept_unique", text_column=self.column, num_perm=self.num_perm,
                                               bands=self.bands, ngram=self.ngram, threshold=self.threshold))
        return GlobalResult(pa.concat_tables(parts) if parts else _empty())


@dataclass
class Decontaminate(GlobalStep):
    name = "decontaminate"
    description = "Word n-gram overlap of problems with benchmark question files (JSONL, Parquet or text)."
    reasons = ("benchmark_overlap",)
    benchmarks: list[str] = setting([], "benchmark question files")
    n: int = setting(13, "n-gram length in words")
    column: str = setting("problem", "sample column compared with the benchmarks")
    benchmark_column: str | None = setting(None, "question column in the benchmark files "
                                                 "(default: problem/question/prompt/text)")

    def validate(self) -> None:
        if not self.benchmarks:
            raise FactoryError("name at least one benchmark file in 'benchmarks'")

    def run(self, con: duckdb.DuckDBPyConnection) -> GlobalResult:
        from factory.filter import dedup

        return GlobalResult(dedup.decontaminate(con, "kept", self.benchmarks, n=self.n, column=self.column,
                                                benchmark_column=self.benchmark_column))


@dataclass
class Select(GlobalStep):
    name = "select"
    description = ("Per problem: keep problems whose pass rate lies in a band (RL prompt selection), "
                   "then at most k samples (shortest or random).")
    reasons = ("pass_rate_out_of_band", "over_per_problem_limit")
    max_per_problem: int | None = setting(None, "keep at most this many samples per problem")
    order: Literal["shortest", "random"] = setting("shortest",
                                                   "which samples to keep: shortest (completion tokens) or random")
    seed: int = setting(0, "seed of the random order")
    min_pass_rate: float | None = setting(None, "lowest pass rate (kept / generated samples of the problem) to keep")
    max_pass_rate: float | None = setting(None, "highest pass rate to keep")

    def validate(self) -> None:
        if self.max_per_problem is not None and self.max_per_problem < 1:
            raise FactoryError("max_per_problem must be at least 1")

    def run(self, con: duckdb.DuckDBPyConnection) -> GlobalResult:
        parts = []
        if self.min_pass_rate is not None or self.max_pass_rate is not None:
            lo, hi = self.min_pass_rate or 0.0, 1.0 if self.max_pass_rate is None else self.max_pass_rate
            parts.append(con.sql(
                f"""WITH rate AS (
                     SELECT {PROBLEM_KEY.format(t='g')} AS key, count(k.id)::DOUBLE / count(*) AS r
                     FROM generated g LEFT JOIN kept k ON k.id = g.id GROUP BY key)
                   SELECT k.id, printf('pass_rate_out_of_band: %.2f not in [%.2f, %.2f]', r, ?, ?) AS reason
                   FROM kept k JOIN rate ON rate.key = {PROBLEM_KEY.format(t='k')} WHERE r < ? OR r > ?""",
                params=[lo, hi, lo, hi]).to_arrow_table())
        if self.max_per_problem is not None:
            order = "completion_tokens, id" if self.order == "shortest" else f"hash(id || '{int(self.seed)}'), id"
            out_of_band = parts[0] if parts else _empty()
            con.register("_out_of_band", out_of_band)
            parts.append(con.sql(
                f"""SELECT id, printf('over_per_problem_limit: rank %d > %d', rk, ?) AS reason FROM (
                      SELECT id, row_number() OVER (PARTITION BY {PROBLEM_KEY.format(t='kept')} ORDER BY {order}) AS rk
                      FROM kept WHERE id NOT IN (SELECT id FROM _out_of_band)) WHERE rk > ?""",
                params=[self.max_per_problem, self.max_per_problem]).to_arrow_table())
        return GlobalResult(pa.concat_tables([p.cast(_empty().schema) for p in parts]) if parts else _empty())


# A refine run's inputs are earlier samples, each its own "problem"; the problem they answer is
# the one that counts for pass rates and per-problem limits.
PROBLEM_KEY = "coalesce(json_extract_string({t}.metadata, '$.context.origin_problem_id'), {t}.problem_id)"


def _empty() -> pa.Table:
    """A step's rejections when it rejects nothing."""
    return pa.table({"id": pa.array([], pa.string()), "reason": pa.array([], pa.string())})


def _global_path(run_dir: Path, position: int, label: str) -> Path:
    return run_dir / "rejected" / f"global-{position:02d}-{label.replace('#', '-')}.parquet"


def _connect(run_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for view, stage in (("kept", "curated"), ("generated", "generated")):
        files = [str(p) for p in shards.done_shards(run_dir, stage)]
        if files:
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({files!r})")
        else:
            con.register(view, SCHEMA.empty_table())
    return con


def _apply_to_curated(run_dir: Path, label: str, rejected_ids: set[str],
                      score_updates: dict[str, dict[str, float]]) -> None:
    """Rewrite the curated shards without the rejected rows and with the step's scores merged."""
    from factory.core.lock import fence

    if not rejected_ids and not score_updates:
        return
    ids = pa.array(sorted(rejected_ids), pa.string())
    for shard in shards.done_shards(run_dir, "curated"):
        table = pq.read_table(shard, schema=SCHEMA)
        stats = json.loads(shards.marker_path(shard).read_text())
        mask = pc.is_in(table["id"], value_set=ids)
        touched = any(i in score_updates for i in table["id"].to_pylist())
        if not pc.any(mask).as_py() and not touched and stats.get("rows") == table.num_rows:
            continue
        table = table.filter(pc.invert(mask))
        if touched:
            merged = [
                json.dumps({**json.loads(sc or "{}"), **score_updates.get(i, {})})
                for i, sc in zip(table["id"].to_pylist(), table["scores"].to_pylist())
            ]
            table = table.set_column(table.schema.get_field_index("scores"), "scores", pa.array(merged, pa.string()))
        stats.pop("rows", None)
        fence(run_dir)
        shards.write_shard(shard, table, stats, point=f"global.{label}.curated")


def run_global_steps(run_dir: Path, chain: Any, log: Callable[[str], None]) -> None:
    from factory.core.lock import fence

    for position, (name, step) in enumerate(chain.global_steps):
        path = _global_path(run_dir, position, name)
        marker = shards.marker_path(path).with_suffix(".applied")
        if marker.exists():
            continue
        if not shards.is_done(path):
            con = _connect(run_dir)
            entering = con.execute("SELECT count(*) FROM kept").fetchall()[0][0]
            try:
                result = step.run(con)
            except duckdb.Error as e:
                raise FactoryError(f"global step '{name}' failed in DuckDB: {str(e).splitlines()[0]}") from None
            con.register("_rejects", result.rejected)
            rows = con.sql(
                "SELECT k.* EXCLUDE (rejected_by, reason), ? AS rejected_by, r.reason "
                "FROM kept k JOIN _rejects r USING (id)",
                params=[name],
            ).to_arrow_table().select(SCHEMA.names).cast(SCHEMA)
            counts = StepStats(name, entering, entering - rows.num_rows)
            for reason in rows["reason"].to_pylist():
                counts.reject(reason.split(":", 1)[0])
            stats = {
                "steps": [counts.to_dict()],
                "scores": result.scores,  # kept here so a resumed apply still has them
            }
            crash_point(f"global.{name}.computed")
            fence(run_dir)
            shards.write_shard(path, rows, stats, point=f"global.{name}.rejected")
            log(f"{name}: {rows.num_rows} of {entering} rejected")
        rejected = set(pq.read_table(path, columns=["id"])["id"].to_pylist())
        scores = json.loads(shards.marker_path(path).read_text()).get("scores", {})
        _apply_to_curated(run_dir, name, rejected, scores)
        fence(run_dir)
        shards.atomic_write_bytes(marker, b"applied\n")
        crash_point(f"global.{name}.applied")
