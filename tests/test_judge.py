"""The judge step returns its scores with its rejections, and the runner writes both as it always
has: the rejected file, its marker holding the scores (so a resumed apply still has them), and
`scores.judge` merged into each kept sample."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

import factory.generate.base
from factory.core import shards
from factory.core.sample import stable_hash
from factory.filter.chain import load_chain, run_chain
from factory.filter.steps.global_steps import GlobalResult, _connect
from factory.filter.steps.judge import Judge
from factory.generate.base import Completion
from tests.synthetic_runs import write_run

# The judge's answer per problem: a good score, a low one, none, and a failed request.
ANSWERS = {"p0": "Clear. Score: 8", "p1": "Rambles. Score: 3", "p2": "I cannot tell.", "p3": None}


class FakeJudge:
    name, model, chat_prefill = "fake", "judge", False

    def __init__(self) -> None:
        self.requests: list = []

    def has_chat_template(self) -> bool:
        return False  # base mode: the template's plain text is the prompt

    def generate(self, requests, sampling, stop, progress):
        self.requests += requests
        by_id = {r["id"]: r["problem_id"] for r in ROWS}
        return [[Completion(ANSWERS[by_id[r.key]] or "", "stop", error=None if ANSWERS[by_id[r.key]] else "boom")]
                for r in requests]

    def close(self) -> None:
        pass


ROWS: list[dict] = []


def chain(folder: Path, steps: str):
    path = folder / "chain.yaml"
    path.write_text("name: j\ndescription: d\nsteps:\n  - parsed\n" + steps)
    return load_chain(str(path))


@pytest.fixture
def judged_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, FakeJudge]:
    backend = FakeJudge()
    monkeypatch.setattr(factory.generate.base, "open_backend", lambda *_a, **_k: backend)
    run = tmp_path / "r"
    samples = [dict(problem_id=pid, sample_index=0, problem=f"What is {k} + 1?", answer=str(k + 1),
                    completion=f"<think>{k} + 1</think> <answer>{k + 1}</answer>", scores=json.dumps({"correct": 1.0}))
               for k, pid in enumerate(ANSWERS)]
    ROWS[:] = write_run(run, samples, 2, config={"test": True}, fingerprint=stable_hash({"test": True}))
    return run, backend


def test_run_returns_rejections_and_scores(judged_run):
    run, backend = judged_run
    run_chain(run, chain(run.parent, ""), workers=1)
    result = Judge(model="judge", min_score=5).run(_connect(run))
    assert isinstance(result, GlobalResult)
    ids = {r["problem_id"]: r["id"] for r in ROWS}
    assert result.scores == {ids["p0"]: {"judge": 8.0}, ids["p1"]: {"judge": 3.0}}
    reasons = dict(zip(result.rejected["id"].to_pylist(), result.rejected["reason"].to_pylist()))
    assert reasons == {ids["p1"]: "low_judge_score: 3 < 5",
                       ids["p2"]: "judge_unparsed: no 'Score: N' in the judge's answer",
                       ids["p3"]: "judge_error: boom"}
    assert result.rejected.schema == pa.schema([("id", pa.string()), ("reason", pa.string())])
    # The judge template's base text, with the sample's completion in it.
    assert all(r.messages is None and "Solution:" in r.text for r in backend.requests)


def test_chain_writes_the_scores_where_runs_have_them(judged_run):
    run, _ = judged_run
    run_chain(run, chain(run.parent, "  - judge: {model: judge, min_score: 5}\n"), workers=1)
    ids = {r["problem_id"]: r["id"] for r in ROWS}
    kept = shards.read_table(run, "curated").to_pylist()
    assert [r["id"] for r in kept] == [ids["p0"]]
    assert kept[0]["scores"] == json.dumps({"correct": 1.0, "judge": 8.0})  # merged, in this key order
    path = run / "rejected" / "global-00-judge.parquet"
    marker = json.loads(shards.marker_path(path).read_text())
    assert marker["scores"] == {ids["p0"]: {"judge": 8.0}, ids["p1"]: {"judge": 3.0}}
    assert marker["steps"] == [{"step": "judge", "in": 4, "kept": 1,
                                "rejected": {"low_judge_score": 1, "judge_unparsed": 1, "judge_error": 1}}]
    assert list(marker) == ["rows", "steps", "scores"]


def test_an_empty_run_is_judged_without_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(factory.generate.base, "open_backend", lambda *_a, **_k: pytest.fail("no model is needed"))
    write_run(tmp_path / "r", [], 2, config={"test": True}, fingerprint=stable_hash({"test": True}))
    result = Judge(model="judge").run(_connect(tmp_path / "r"))
    assert result.rejected.num_rows == 0 and result.scores == {}
