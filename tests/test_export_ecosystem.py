"""Exports that TRL, open-r1 and the Hub take as they are: the template's system prompt in the
turns, TRL's prompt/completion columns, `solution`, the card's language, source datasets and
license, the rejected samples as a second config, and `train sft --data` on an export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.hub import export_run
from factory.train.data import load_sft_examples
from tests.test_hub import front_matter, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from factory.filter.chain import load_chain, run_chain

    run = tmp_path_factory.mktemp("runs") / "eco"
    make_run(run)
    # As generation records them: the template's system prompt and the problem's turn.
    import pyarrow.parquet as pq

    from factory.core import shards
    from factory.core.sample import to_table

    for path in shards.done_shards(run, "generated"):
        rows = pq.read_table(path).to_pylist()
        for r in rows:
            r["metadata"] = json.dumps({"prefill": "",
                                        "messages": [{"role": "system", "content": "Think, then answer."},
                                                     {"role": "user", "content": r["problem"]}]})
        shards.write_shard(path, to_table(rows), {})
    run_chain(run, load_chain("distill"), workers=1)
    return run


def load(folder: Path, config: str = "default"):
    from datasets import load_dataset

    return load_dataset(str(folder), config, cache_dir=str(folder.parent / "cache"))["train"]


def test_columns_for_trl_and_open_r1(run: Path, tmp_path: Path):
    export_run(run, tmp_path / "ds")
    row = load(tmp_path / "ds")[0]
    assert row["prompt"] == [{"role": "system", "content": "Think, then answer."},
                             {"role": "user", "content": row["problem"]}]
    assert row["completion"][0]["role"] == "assistant" and row["completion"][0]["content"].startswith("<think>")
    assert row["messages"] == row["prompt"] + row["completion"]
    assert row["solution"] == row["answer"]


def test_card_language_license_and_rejected_config(run: Path, tmp_path: Path):
    summary = export_run(run, tmp_path / "ds", license="mit", rejected=True)
    meta, body = front_matter(tmp_path / "ds" / "README.md")
    assert meta["license"] == "mit" and meta["language"] == ["en"]
    assert [c["config_name"] for c in meta["configs"]] == ["default", "rejected"]
    rejected = load(tmp_path / "ds", "rejected")
    assert len(rejected) == summary["rejected_rows"] > 0
    assert all(r["rejected_by"] and r["reason"] for r in rejected)
    assert "`rejected` config" in body


def test_source_datasets_from_hf_problems():
    from factory.hub import _source_datasets

    assert _source_datasets({"problems": "hf:open-r1/OpenR1-Math-220k:train"}) == ["open-r1/OpenR1-Math-220k"]
    assert _source_datasets({"problems": "problems.jsonl"}) is None


def test_train_sft_reads_an_export_folder_and_a_datasets_folder(run: Path, tmp_path: Path):
    export_run(run, tmp_path / "ds")
    examples = load_sft_examples(str(tmp_path / "ds"))
    assert examples and examples[0][0]["role"] == "system" and examples[0][-1]["role"] == "assistant"
    load(tmp_path / "ds").save_to_disk(str(tmp_path / "saved"))
    assert load_sft_examples(str(tmp_path / "saved")) == examples
