"""`factory import`: existing generations in the shapes datasets keep them become a run that the
filter, show, report, export and SFT stages read like a generated one; bad input gets one line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.cli import EXIT_BAD_INPUT
from factory.core import shards

R1 = "Okay, 6 times 7.\n6*7 = 42.\n</think>\n\nThe product is $\\boxed{42}$."  # R1-Distill: <think> was prefilled
SKY = ("<|begin_of_thought|>\n\nSo 6*7, which is 42.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
       "The answer is $\\boxed{42}$.\n\n<|end_of_solution|>")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def rows_of(runs: Path, run: str, stage: str = "generated") -> list[dict]:
    return shards.read_table(runs / run, stage).to_pylist()


def test_openr1_style_list_columns(cli, runs_dir: Path, tmp_path: Path):
    """One row per problem, a list of generations with parallel finish reasons (OpenR1-Math-220k)."""
    src = tmp_path / "openr1.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"problem": "What is 6*7?", "answer": "42", "generations": [R1, "<think>6*7=43</think> So \\boxed{43}.", SKY],
         "finish_reasons": ["stop", "stop", "stop"], "uuid": "a"},
        {"problem": "What is 2+2?", "answer": "4", "generations": ["<think>Let me add 2 and 2 and then"],
         "finish_reasons": ["length"], "uuid": "b"},
    ]), src)
    res = cli("import", src, "or1", "--model", "deepseek-ai/DeepSeek-R1", "--map", "id=uuid")
    assert res.exit_code == 0, res.output
    assert "4 samples" in res.output and "think_boxed 3, thought_solution 1" in res.output
    rows = rows_of(runs_dir, "or1")
    assert [r["sample_index"] for r in rows] == [0, 1, 2, 0] and {r["problem_id"] for r in rows} == {"a", "b"}
    first = rows[0]
    assert json.loads(first["metadata"])["prefill"] == "<think>\n"  # a closing tag never opened: the prompt opened it
    assert (first["reasoning"], first["final"], first["model"]) == ("Okay, 6 times 7.\n6*7 = 42.", "42",
                                                                    "deepseek-ai/DeepSeek-R1")
    assert json.loads(rows[2]["metadata"])["format"] == "thought_solution" and rows[2]["final"] == "42"
    assert rows[3]["finish_reason"] == "length"
    assert "generations" not in json.loads(first["metadata"])["context"]  # completions are not copied into metadata

    res = cli("filter", "or1", "--chain", "distill")
    assert res.exit_code == 0, res.output
    kept = {r["completion"] for r in rows_of(runs_dir, "or1", "curated")}
    rejected = {r["completion"]: r["reason"].split(":")[0] for r in rows_of(runs_dir, "or1", "rejected")}
    assert kept == {R1, SKY}
    assert sorted(rejected.values()) == ["truncated", "wrong_answer"]

    again = cli("import", src, "or1", "--model", "deepseek-ai/DeepSeek-R1", "--map", "id=uuid")
    assert again.exit_code == 0 and "already done" in again.output


def test_messages_and_sharegpt_conversations(cli, runs_dir: Path, tmp_path: Path):
    chat = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6*7?"},
                      {"role": "assistant", "content": "<think>6*7=42</think>\n\n\\boxed{42}"}], "answer": "42"},
    ])
    assert cli("import", chat, "chat").exit_code == 0
    row = rows_of(runs_dir, "chat")[0]
    assert (row["problem"], row["final"], row["reasoning"]) == ("What is 6*7?", "42", "6*7=42")
    assert json.loads(row["metadata"])["messages"] == [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "What is 6*7?"}]

    sharegpt = write_jsonl(tmp_path / "stratos.jsonl", [
        {"system": "Think first.", "conversations": [{"from": "user", "value": "What is 6*7?"},
                                                     {"from": "assistant", "value": SKY}], "answer": "42"},
    ])
    assert cli("import", sharegpt, "stratos", "--format", "thought_solution").exit_code == 0
    row = rows_of(runs_dir, "stratos")[0]
    assert (row["problem"], row["final"], row["parse_error"]) == ("What is 6*7?", "42", None)


def test_separate_reasoning_column_is_joined_back(cli, runs_dir: Path, tmp_path: Path):
    src = write_jsonl(tmp_path / "r.jsonl", [
        {"question": "What is 6*7?", "gold": "42", "reasoning_content": "6*7 is 42.", "response": "So $\\boxed{42}$.",
         "completion_tokens": 12},
    ])
    assert cli("import", src, "r", "--map", "problem=question", "--map", "answer=gold").exit_code == 0
    row = rows_of(runs_dir, "r")[0]
    assert row["completion"] == "<think>\n6*7 is 42.\n</think>\n\nSo $\\boxed{42}$."
    assert (row["final"], row["completion_tokens"], row["answer"]) == ("42", 12, "42")


@pytest.mark.parametrize("rows, args, message", [
    ([{"problem": "p", "text": "x"}], [], "no completions found"),
    ([{"problem": "p", "completion": "  "}], [], "row 1: completion 1 is empty"),
    ([{"problem": "p", "completion": "x"}], ["--format", "nope"], "unknown format 'nope'"),
    ([{"problem": "p", "completion": "x"}], ["--map", "completion=missing"], "mapped column 'missing'"),
    ([{"completion": "x"}], [], "no column 'problem'"),
    ([{"problem": "p", "completion": 3}], [], "not text"),
    ([{"messages": [{"role": "user", "content": "p"}]}], [], "no assistant turn"),
    ([{"problem": "p", "completion": "x"}], ["--map", "colour=red"], "bad --map 'colour=red'"),
])
def test_bad_input_is_one_line(cli, runs_dir: Path, tmp_path: Path, rows, args, message):
    res = cli("import", write_jsonl(tmp_path / "bad.jsonl", rows), "bad", *args)
    assert res.exit_code == EXIT_BAD_INPUT, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (runs_dir / "bad" / "generated").exists()  # nothing half-written


def test_allow_empty_keeps_them_as_failed_samples(cli, runs_dir: Path, tmp_path: Path):
    src = write_jsonl(tmp_path / "e.jsonl", [{"problem": "p", "answer": "1", "completion": ""},
                                             {"problem": "q", "answer": "1", "completion": "One it is: \\boxed{1}"}])
    res = cli("import", src, "e", "--allow-empty")
    assert res.exit_code == 0 and "1 empty" in res.output
    assert cli("filter", "e", "--chain", "distill").exit_code == 3  # finished, with failed samples
    assert [r["reason"].split(":")[0] for r in rows_of(runs_dir, "e", "rejected")] == ["generation_error"]
