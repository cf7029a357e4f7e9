"""A sample's metadata: parsed once when a chain reads a shard, written back as the very JSON text it was."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from factory.core import shards
from factory.core.sample import meta_json, to_table
from factory.filter.chain import filter_shard, load_chain, run_chain
from tests.test_chain import all_rows, make_run


def test_metadata_is_written_as_generation_always_wrote_it():
    meta = {"prefill": "<think>\n", "context": {"é": ("a", 1), "when": date(2020, 1, 1)}}
    # The text shards have held since the first runs: not ASCII-escaped, default separators, str() for the rest.
    assert meta_json(meta) == '{"prefill": "<think>\\n", "context": {"é": ["a", 1], "when": "2020-01-01"}}'
    assert to_table([{"metadata": meta}, {"metadata": None}])["metadata"].to_pylist() == [meta_json(meta), None]


def _run_with_distinct_metadata(run: Path) -> dict[str, str]:
    """make_run's samples, each with its own non-ASCII metadata text; id -> that text."""
    make_run(run)
    texts = {}
    for path in shards.done_shards(run, "generated"):
        rows = pq.read_table(path).to_pylist()
        for row in rows:
            row["metadata"] = json.dumps({"prefill": "", "format": "think_answer",
                                          "context": {"note": f"échantillon {row['id']}"}}, ensure_ascii=False)
            texts[row["id"]] = row["metadata"]
        shards.write_shard(path, to_table(rows), {})
    return texts


def test_a_chain_parses_each_samples_metadata_once(tmp_path: Path, monkeypatch):
    texts = _run_with_distinct_metadata(tmp_path / "r")
    decoded: Counter[str] = Counter()
    loads = json.loads

    def counting(text, *args, **kwargs):
        if isinstance(text, str) and text in texts.values():
            decoded[text] += 1
        return loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    out = filter_shard(str(tmp_path / "r"), 0, str(load_chain("cold_start").path))  # a worker's whole job
    staged = [row for stage in ("curated", "rejected") for row in pq.read_table(out[stage][0]).to_pylist()]
    assert max(decoded.values()) == 1, decoded.most_common(1)
    assert len(decoded) == len(staged) > 0  # each once, whichever step it reached


def test_filtered_shards_keep_each_samples_metadata_text(tmp_path: Path):
    texts = _run_with_distinct_metadata(tmp_path / "r")
    run_chain(tmp_path / "r", load_chain("cold_start"), workers=2)
    written = {row["id"]: row["metadata"]
               for stage in ("curated", "rejected") for row in all_rows(tmp_path / "r", stage)}
    assert written == texts
