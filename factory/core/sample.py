"""The one record type: every shard of every stage has these columns.

A sample is one row. Rejected samples keep every column and add `rejected_by` and
`reason`, so nothing is ever dropped silently. Open-ended fields (`scores`, `metadata`)
are JSON strings, since `datasets` reads no Arrow map type. `id` is a stable hash of what makes the
sample (problem, template, model, sampling without `n`, sample index), so a rerun or a
resumed run produces exactly the same ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from factory.core.settings import setting

SAMPLING_TYPE = pa.struct(
    [
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("top_k", pa.int32()),
        ("max_tokens", pa.int32()),
        ("n", pa.int32()),
        ("seed", pa.int64()),
    ]
)

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("problem_id", pa.string()),
        ("sample_index", pa.int32()),
        ("source", pa.string()),
        ("task", pa.string()),
        ("problem", pa.string()),
        ("answer", pa.string()),
        ("tests", pa.string()),  # JSON list of test cases for code tasks, else null
        ("template", pa.string()),
        ("prompt", pa.string()),
        ("completion", pa.string()),
        ("completion_hash", pa.int64()),  # textnorm.text_hash(completion): exact dedup is a hash join
        ("reasoning", pa.string()),
        ("final", pa.string()),
        ("parse_error", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("model", pa.string()),
        ("sampling", SAMPLING_TYPE),
        ("error", pa.string()),
        ("rejected_by", pa.string()),
        ("reason", pa.string()),
        # JSON object of name -> number (judge score, language share...). A JSON string rather
        # than an Arrow map because `datasets` cannot read map columns.
        ("scores", pa.string()),
        ("metadata", pa.string()),  # JSON object
    ]
)

COLUMNS = SCHEMA.names


@dataclass(frozen=True)
class Sampling:
    """Sampling settings, stored with every sample."""

    temperature: float = setting(0.7, "Sampling temperature.")
    top_p: float = setting(0.95, "Nucleus sampling mass.")
    top_k: int = setting(-1, "Top-k sampling (-1 = off).")
    max_tokens: int = setting(1024, "Maximum new tokens per sample.")
    n: int = setting(4, "Samples per problem.", flags=("--n", "-n"))
    seed: int = setting(0, "Run seed; per-request seeds derive from it.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What changes a sample's text: everything but `n`, so sample i keeps its id when n grows."""
        d = self.as_dict()
        d.pop("n")
        return d


def stable_hash(*parts: Any, length: int = 16) -> str:
    """A short hex digest of JSON-encoded parts; the same on every machine and run."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(payload.encode(), digest_size=length // 2).hexdigest()


def model_digest(model: str) -> str | None:
    """Identity of a local model's weights (file names, sizes, mtimes): a model retrained in
    the same folder is a different model. None for a hub id."""
    from pathlib import Path

    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
    return stable_hash([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def sample_id(problem_id: str, template: str, model: str, sampling: Sampling, index: int) -> str:
    return stable_hash(problem_id, template, model, sampling.identity(), index)


def request_seed(run_seed: int, problem_id: str, template: str) -> int:
    """Per-request seed: depends only on the request, so a resumed shard samples the same text."""
    return int(stable_hash(run_seed, problem_id, template, length=12), 16) % (2**31 - 1)


def row_meta(row: dict[str, Any]) -> dict[str, Any]:
    """A sample's metadata as a dict: rows read for processing hold it parsed (`with_parsed_meta`), as
    rows made in memory do (generation, GRPO); a row read straight from a shard holds its JSON text."""
    meta = row.get("metadata") or {}
    return json.loads(meta) if isinstance(meta, str) else meta


def with_parsed_meta(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their metadata parsed once, in place, for steps that each read it; `to_table` writes it back."""
    for row in rows:
        meta = row.get("metadata")
        if isinstance(meta, str) and meta:
            row["metadata"] = json.loads(meta)
    return rows


def meta_json(meta: dict[str, Any]) -> str:
    """Metadata as shards store it: the one encoding, so a sample read, parsed and written again keeps its
    bytes (and a run folder its hashes)."""
    return json.dumps(meta, ensure_ascii=False, default=str)


def prefilled_completion(row: dict[str, Any]) -> str:
    """The model's whole turn: the prompt's prefill (e.g. "<think>") put back before the completion."""
    return (row_meta(row).get("prefill") or "") + (row.get("completion") or "")


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Build a table with exactly SCHEMA from row dicts (missing keys become null, metadata dicts JSON)."""
    columns = {name: [row.get(name) for row in rows] for name in COLUMNS}
    columns["metadata"] = [meta_json(m) if isinstance(m, dict) else m for m in columns["metadata"]]
    return pa.Table.from_pydict(columns, schema=SCHEMA)
