"""Loading problems from files, datasets folders and the built-in task; every bad input is a FactoryError."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from factory.core.errors import FactoryError
from factory.problems.sources import Problem, load_problems, parse_mapping

ROWS = [
    {"question": "What is 2 + 3 * 4?", "solution": "14", "level": 1},
    {"question": "What is 7 - 2?", "solution": "5", "level": 2},
    {"question": "What is 6 * 7?", "solution": "42", "level": 3},
]
MAP = ["problem=question", "answer=solution"]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def check_rows(problems: list[Problem], level_type=int) -> None:
    assert [p.problem for p in problems] == [r["question"] for r in ROWS]
    assert [p.answer for p in problems] == ["14", "5", "42"]
    assert all(p.task == "math" and p.tests is None for p in problems)
    assert [p.context for p in problems] == [{"level": level_type(r["level"])} for r in ROWS]
    assert len({p.problem_id for p in problems}) == 3


def test_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    problems = load_problems(str(path), parse_mapping(MAP))
    check_rows(problems)
    assert all(p.source == str(path) for p in problems)


def test_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "a"}\n\n   \n{"problem": "b"}\n')
    assert [p.problem for p in load_problems(str(path))] == ["a", "b"]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    check_rows(load_problems(str(path), parse_mapping(MAP)))


def test_csv(tmp_path):
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["question", "solution", "level"])
        w.writeheader()
        w.writerows(ROWS)
    check_rows(load_problems(str(path), parse_mapping(MAP)), level_type=str)


def test_datasets_folder(tmp_path):
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(folder))
    check_rows(load_problems(str(folder), parse_mapping(MAP)))


def test_builtin_arithmetic():
    problems = load_problems("builtin:arithmetic?n=5&seed=1")
    assert len(problems) == 5
    assert all(p.task == "arithmetic" and p.source == "builtin:arithmetic" for p in problems)
    for p in problems:
        assert p.problem.startswith("What is ") and p.problem.endswith("?")
        assert p.answer == str(eval(p.problem.removeprefix("What is ").removesuffix("?")))  # noqa: S307
        assert p.context["solution"].splitlines()[-1].endswith(f"= {p.answer}")
    again = load_problems("builtin:arithmetic?n=5&seed=1")
    assert [p.problem_id for p in again] == [p.problem_id for p in problems]
    other = load_problems("builtin:arithmetic?n=5&seed=2")
    assert [p.problem for p in other] != [p.problem for p in problems]


def test_tests_list_is_json_encoded_and_task_becomes_code(tmp_path):
    tests = [{"input": "1 2", "output": "3"}, {"input": "2 2", "output": "4"}]
    path = write_jsonl(tmp_path / "code.jsonl", [{"problem": "Add two numbers.", "tests": tests}])
    (p,) = load_problems(str(path))
    assert p.task == "code"
    assert isinstance(p.tests, str)
    assert json.loads(p.tests) == tests


def test_explicit_task_column_wins(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"problem": "x", "tests": ["t"], "task": "puzzle"}])
    assert load_problems(str(path))[0].task == "puzzle"


def test_limit(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    problems = load_problems(str(path), parse_mapping(MAP), limit=2)
    assert [p.answer for p in problems] == ["14", "5"]
    assert len(load_problems("builtin:arithmetic?n=10", limit=3)) == 3


def test_ids_are_stable_across_loads_and_copies(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS)
    b = write_jsonl(tmp_path / "b.jsonl", ROWS)
    ids = [p.problem_id for p in load_problems(str(a), parse_mapping(MAP))]
    assert ids == [p.problem_id for p in load_problems(str(a), parse_mapping(MAP))]
    assert ids == [p.problem_id for p in load_problems(str(b), parse_mapping(MAP))]


def test_id_column_is_used(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "q-1", "problem": "a"}, {"id": 2, "problem": "b"}])
    assert [p.problem_id for p in load_problems(str(path))] == ["q-1", "2"]


def test_parse_mapping():
    assert parse_mapping(MAP) == {"problem": "question", "answer": "solution"}
    assert parse_mapping(None) == {}
    assert parse_mapping(["id=uid"]) == {"id": "uid"}


@pytest.mark.parametrize("item", ["problem", "problem=", "=question"])
def test_bad_map_syntax(item):
    with pytest.raises(FactoryError, match="FIELD=COLUMN|not one of"):
        parse_mapping([item])


def test_unknown_field_in_map():
    with pytest.raises(FactoryError, match="'question'.*not one of problem, answer, tests, task, id"):
        parse_mapping(["question=problem"])


# --- bad input ------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(FactoryError, match="no such file") as e:
        load_problems(str(path))
    assert str(path) in str(e.value)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "empty.parquet"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("")
    with pytest.raises(FactoryError, match="empty") as e:
        load_problems(str(path))
    assert str(path) in str(e.value)


def test_file_with_only_blank_lines(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n\n")
    with pytest.raises(FactoryError, match="no problems found") as e:
        load_problems(str(path))
    assert str(path) in str(e.value)


def test_malformed_jsonl_line_names_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "a"}\n{"problem": "b"}\n{"problem": "c"\n{"problem": "d"}\n')
    with pytest.raises(FactoryError) as e:
        load_problems(str(path))
    assert f"{path}:3" in str(e.value)
    assert "JSON" in str(e.value)


def test_json_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "a"}\n["b"]\n')
    with pytest.raises(FactoryError, match="expected a JSON object, got list") as e:
        load_problems(str(path))
    assert f"{path}:2" in str(e.value)


def test_missing_problem_column_lists_columns_and_mentions_map(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    with pytest.raises(FactoryError) as e:
        load_problems(str(path))
    msg = str(e.value)
    assert str(path) in msg
    assert "question, solution, level" in msg
    assert "--map" in msg


def test_mapped_column_that_does_not_exist(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    with pytest.raises(FactoryError, match="'gold'.*does not exist") as e:
        load_problems(str(path), parse_mapping(["problem=question", "answer=gold"]))
    assert str(path) in str(e.value) and "question, solution, level" in str(e.value)
    with pytest.raises(FactoryError, match="'quest'"):
        load_problems(str(path), parse_mapping(["problem=quest"]))


@pytest.mark.parametrize("value", ["", "   ", None])
def test_empty_problem_text(tmp_path, value):
    path = write_jsonl(tmp_path / "p.jsonl", [{"problem": "a"}, {"problem": value}])
    with pytest.raises(FactoryError, match="row 2 has an empty 'problem'") as e:
        load_problems(str(path))
    assert str(path) in str(e.value)


def test_duplicate_ids(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": 1, "problem": "a"}, {"id": 1, "problem": "b"}])
    with pytest.raises(FactoryError, match="duplicate problem id '1'") as e:
        load_problems(str(path))
    assert str(path) in str(e.value)


def test_duplicate_problem_texts_without_id(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"problem": "a"}, {"problem": "a"}])
    with pytest.raises(FactoryError, match="duplicate"):
        load_problems(str(path))


def test_unknown_builtin():
    with pytest.raises(FactoryError, match="unknown built-in source 'algebra'.*arithmetic"):
        load_problems("builtin:algebra")


def test_unknown_builtin_parameter():
    with pytest.raises(FactoryError, match="unknown parameter.*'count'.*n, seed, max_operand"):
        load_problems("builtin:arithmetic?count=5")


def test_bad_builtin_number():
    with pytest.raises(FactoryError, match="bad number"):
        load_problems("builtin:arithmetic?n=five")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "problems.txt"
    path.write_text("What is 1 + 1?\n")
    with pytest.raises(FactoryError, match="unsupported file type '.txt'") as e:
        load_problems(str(path))
    assert str(path) in str(e.value) and ".jsonl" in str(e.value)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(FactoryError, match="not a readable Parquet file") as e:
        load_problems(str(path))
    assert str(path) in str(e.value)


def test_run_source_refuses_a_run_that_is_being_written_or_not_filtered(tmp_path, runs_dir):
    import socket
    import subprocess
    import sys

    import psutil

    from tests.test_chain import make_run

    make_run(runs_dir / "src")
    with pytest.raises(FactoryError, match="not filtered to the end"):
        load_problems("run:src?stage=curated")
    assert len(load_problems("run:src")) == 96  # its generated samples: one input each
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {"pid": holder.pid, "host": socket.gethostname(),
                 "started": psutil.Process(holder.pid).create_time(), "command": "factory generate src"}
        (runs_dir / "src" / ".lock").write_text(json.dumps(owner))
        with pytest.raises(FactoryError, match=f"being written by pid {holder.pid}"):
            load_problems("run:src")
    finally:
        holder.kill()
        holder.wait()
    assert len(load_problems("run:src")) == 96  # the owner is gone: its lock is stale
    with pytest.raises(FactoryError, match="stage=S with S one of"):
        load_problems("run:src?stage=kept")
