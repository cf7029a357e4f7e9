"""Real reasoning models' outputs (DeepSeek-R1, R1-Distill, Qwen3, Sky-T1), copied from public
repositories with their gold answers (fixtures/real_outputs.jsonl: each line keeps its repository,
path and commit), imported with `--format auto` and curated with the `distill` chain."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from factory.core import shards

FIXTURE = Path(__file__).parent / "fixtures" / "real_outputs.jsonl"
TRACES = {t["id"]: t for t in map(json.loads, FIXTURE.open(encoding="utf-8"))}
# Wrong traces whose answer the format cannot find, so `parsed` rejects them before `correct`:
# this one ends in a bold Bengali sentence, with no box and no "the answer is".
NO_ANSWER_FOUND = {"qwen3-1.7b-mgsm-bn-05"}


def test_fixture_covers_what_real_models_write():
    traces = list(TRACES.values())
    assert len(traces) >= 50
    formats = Counter(t["format"] for t in traces)
    assert sum(n >= 8 for n in formats.values()) >= 3, formats
    assert sum(t["finish_reason"] == "length" for t in traces) >= 5
    assert sum(not t["correct"] and t["finish_reason"] == "stop" for t in traces) >= 10
    assert sum(t["language"] != "en" for t in traces) >= 5
    assert sum(t["prefill"] == "<think>\n" for t in traces) >= 5  # the chat template opened <think>
    for t in traces:
        assert (t["source"]["repo"].count("/") == 1 and t["source"]["path"]
                and len(t["source"]["commit"] or "x" * 40) == 40)


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory):
    from typer.testing import CliRunner

    from factory.cli import app

    runs = tmp_path_factory.mktemp("runs")
    env = {"FACTORY_RUNS_DIR": str(runs)}
    runner = CliRunner()
    imported = runner.invoke(app, ["import", str(FIXTURE), "real", "--format", "auto", "--map", "model=model"], env=env)
    assert imported.exit_code == 0, imported.output
    filtered = runner.invoke(app, ["filter", "real", "--chain", "distill"], env=env)
    assert filtered.exit_code == 0, filtered.output
    run = runs / "real"
    return {stage: {r["problem_id"]: r for r in shards.read_table(run, stage).to_pylist()}
            for stage in ("generated", "curated", "rejected")}


def test_auto_detects_the_format_each_trace_is_written_in(curated):
    for tid, row in curated["generated"].items():
        detected = json.loads(row["metadata"])["format"]
        if detected != "auto":  # a trace cut off before any marker or box is in no format yet
            assert detected == TRACES[tid]["format"], tid
        else:
            assert TRACES[tid]["finish_reason"] == "length", tid


def test_every_complete_correct_consistent_trace_is_kept(curated):
    want = {tid for tid, t in TRACES.items()
            if t["correct"] and t["finish_reason"] == "stop" and not t["mixed_language"]}
    assert want <= set(curated["curated"]), {tid: curated["rejected"][tid]["reason"]
                                             for tid in want - set(curated["curated"])}
    assert all(TRACES[tid]["correct"] for tid in curated["curated"])


def test_wrong_and_truncated_traces_are_rejected_with_the_reason_that_fits(curated):
    rejected = curated["rejected"]
    for tid, t in TRACES.items():
        if t["finish_reason"] == "length":
            assert rejected[tid]["reason"].startswith("truncated"), (tid, rejected[tid]["reason"])
        elif not t["correct"]:
            expected = "unparsed" if tid in NO_ANSWER_FOUND else "wrong_answer"
            assert rejected[tid]["reason"].startswith(expected), (tid, rejected[tid]["reason"])
    assert len(curated["curated"]) + len(rejected) == len(TRACES)
