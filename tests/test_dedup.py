"""Global dedup and decontamination: exact and near duplicates, MinHash, benchmark overlap."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.core.errors import FactoryError
from factory.core.textnorm import text_hash
from factory.filter.dedup import decontaminate, exact_duplicates, minhash_signatures, near_duplicates

REPO = Path(__file__).resolve().parent.parent
WORDS = [f"word{i}" for i in range(5000)]
QUESTION = (
    "Let x and y be positive real numbers such that x plus y equals ten and the product xy "
    "is as large as possible. Find the value of that product."
)


def words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(n)]


def changed(ws: list[str], positions: list[int], seed: int) -> str:
    out = list(ws)
    for p in positions:
        out[p] = f"changed{seed}x{p}"
    return " ".join(out)


def candidates(rows: list[tuple[str, str | None]]) -> duckdb.DuckDBPyConnection:
    """A connection with the rows (id, text) registered as view 'kept', hashes as in shards."""
    ids, texts = zip(*rows, strict=True)
    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "problem_id": pa.array([f"p{i}" for i in range(len(rows))], pa.string()),
            "problem": pa.array(texts, pa.string()),
            "completion": pa.array(texts, pa.string()),
            "completion_hash": pa.array([text_hash(t) for t in texts], pa.int64()),
            "sample_index": pa.array(range(len(rows), 0, -1), pa.int32()),
        }
    )
    con = duckdb.connect()
    con.register("kept", table)
    return con


def rejected(table: pa.Table) -> dict[str, str]:
    assert table.schema.names == ["id", "reason"]
    return dict(zip(table["id"].to_pylist(), table["reason"].to_pylist(), strict=True))


# --------------------------------------------------------------------------- exact


def test_exact_duplicates_keep_first_by_id_across_whitespace_and_case() -> None:
    con = candidates(
        [
            ("c", "The answer is 42."),
            ("a", "the  answer is 42.\n"),
            ("b", "THE ANSWER\tIS 42."),
            ("e", "Another text"),
            ("d", "another   TEXT"),
            ("f", "unique"),
        ]
    )
    assert rejected(exact_duplicates(con, "kept")) == {
        "b": "exact_duplicate: of a",
        "c": "exact_duplicate: of a",
        "e": "exact_duplicate: of d",
    }


def test_exact_duplicates_order_by_another_column() -> None:
    con = candidates([("a", "same"), ("b", "same"), ("c", "same")])  # sample_index 3, 2, 1
    assert rejected(exact_duplicates(con, "kept", order_by="sample_index")) == {
        "a": "exact_duplicate: of c",
        "b": "exact_duplicate: of c",
    }


def test_empty_and_null_texts_are_never_duplicates() -> None:
    con = candidates([("a", None), ("b", None), ("c", ""), ("d", "   "), ("e", "\n")])
    assert exact_duplicates(con, "kept").num_rows == 0
    assert near_duplicates(con, "kept").num_rows == 0


def test_missing_column_is_a_factory_error() -> None:
    con = candidates([("a", "x")])
    with pytest.raises(FactoryError, match="no column nope"):
        exact_duplicates(con, "kept", hash_column="nope")


# --------------------------------------------------------------------------- near


def test_near_duplicate_found_and_distinct_text_not() -> None:
    base = words(200, seed=1)
    con = candidates(
        [
            ("a", " ".join(base)),
            ("b", changed(base, [20, 100, 180], seed=1)),  # 3 of 200 words changed
            ("c", " ".join(words(200, seed=2))),
        ]
    )
    out = rejected(near_duplicates(con, "kept"))
    assert list(out) == ["b"]
    assert out["b"].startswith("near_duplicate: of a (jaccard 0.")


def test_cluster_of_three_keeps_exactly_the_first() -> None:
    base = words(200, seed=3)
    con = candidates(
        [
            ("m2", changed(base, [10, 90], seed=2)),
            ("m1", " ".join(base)),
            ("m3", changed(base, [50, 150], seed=3)),
            ("other", " ".join(words(200, seed=4))),
        ]
    )
    out = rejected(near_duplicates(con, "kept"))
    assert sorted(out) == ["m2", "m3"]
    assert all(r.startswith("near_duplicate: of m1 ") for r in out.values())


def test_big_bucket_links_copies_to_its_first_row() -> None:
    text = " ".join(words(80, seed=5))
    con = candidates([(f"r{i}", text) for i in range(6)] + [("z", " ".join(words(80, seed=6)))])
    out = rejected(near_duplicates(con, "kept", max_bucket=3))  # 6 copies: a star, not all pairs
    assert out == {f"r{i}": "near_duplicate: of r0 (jaccard 1.00)" for i in range(1, 6)}


def test_short_texts_compare_as_one_shingle() -> None:
    con = candidates([("a", "x = 4"), ("b", "X = 4!"), ("c", "x = 5")])
    assert rejected(near_duplicates(con, "kept")) == {"b": "near_duplicate: of a (jaccard 1.00)"}


# --------------------------------------------------------------------------- minhash


def test_signatures_shape_dtype_and_determinism() -> None:
    texts = [" ".join(words(120, seed=s)) for s in range(5)] + [None, ""]
    sig = minhash_signatures(texts, num_perm=64)
    assert sig.shape == (7, 64) and sig.dtype == np.uint32
    assert np.array_equal(sig, minhash_signatures(texts, num_perm=64))
    assert not np.array_equal(sig, minhash_signatures(texts, num_perm=64, seed=1))
    assert (sig[5:] == np.iinfo(np.uint32).max).all()  # no tokens: the empty signature


def test_signatures_identical_texts_have_jaccard_one() -> None:
    text = " ".join(words(150, seed=7))
    sig = minhash_signatures([text, text.upper().replace(" ", "  "), " ".join(words(150, seed=8))])
    assert (sig[0] == sig[1]).mean() == 1.0
    assert (sig[0] == sig[2]).mean() < 0.1


def test_signatures_are_the_same_in_another_process() -> None:
    texts = [" ".join(words(60, seed=s)) for s in range(3)] + ["数学题目没有空格的句子"]
    code = (
        "import json, sys; from factory.filter.dedup import minhash_signatures; "
        "print(json.dumps(minhash_signatures(json.loads(sys.argv[1])).tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(texts)], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert np.array_equal(np.array(json.loads(out.stdout), np.uint32), minhash_signatures(texts))


def test_texts_without_spaces_use_character_shingles() -> None:
    a = "已知正整数满足方程求所有可能的取值之和并说明理由这是一道关于数论的题目需要仔细思考每一步的推导过程"
    b = a.replace("求", "问")  # one character of 48 changed
    sig = minhash_signatures([a, b, "完全不同的另外一段文字内容讲的是几何里面三角形面积的计算方法"])
    assert (sig[0] == sig[1]).mean() > 0.7
    assert (sig[0] == sig[2]).mean() < 0.1


# --------------------------------------------------------------------------- decontamination


@pytest.fixture
def bench_files(tmp_path: Path) -> dict[str, Path]:
    jsonl = tmp_path / "aime24.jsonl"
    jsonl.write_text(json.dumps({"id": 1, "question": QUESTION}) + "\n" + json.dumps({"question": "Short one"}) + "\n")
    parquet = tmp_path / "math500.parquet"
    pq.write_table(pa.table({"problem": [QUESTION], "answer": ["25"]}), parquet)
    txt = tmp_path / "gsm.txt"
    txt.write_text("\n" + QUESTION + "\n\n")
    return {"jsonl": jsonl, "parquet": parquet, "txt": txt}


def test_decontaminate_rejects_13_gram_in_each_format(bench_files: dict[str, Path]) -> None:
    q = QUESTION.split()
    con = candidates(
        [
            ("hit", "Warm-up. " + " ".join(q[3:16]).upper().replace(" ", ", ") + " Then more."),  # 13 words
            ("miss", "Warm-up. " + " ".join(q[3:15]) + " but something else entirely."),  # 12 words
            ("clean", "An unrelated problem about triangles."),
            ("none", None),
        ]
    )
    for kind, path in bench_files.items():
        out = rejected(decontaminate(con, "kept", [path]))
        assert list(out) == ["hit"], kind
        assert out["hit"] == f"benchmark_overlap: {path.stem}: '{' '.join(q[3:16]).lower().rstrip('.')}'", kind


def test_decontaminate_short_question_is_one_ngram(bench_files: dict[str, Path]) -> None:
    con = candidates([("a", "Here is a SHORT one, indeed."), ("b", "short and one")])
    out = rejected(decontaminate(con, "kept", [bench_files["jsonl"]]))
    assert out == {"a": "benchmark_overlap: aime24: 'short one'"}


def test_decontaminate_benchmark_column(tmp_path: Path) -> None:
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"body": QUESTION}) + "\n")
    con = candidates([("a", QUESTION)])
    assert list(rejected(decontaminate(con, "kept", [path], benchmark_column="body"))) == ["a"]
    with pytest.raises(FactoryError, match="custom.jsonl has no column problem / question / prompt / text"):
        decontaminate(con, "kept", [path])


def test_decontaminate_bad_files(tmp_path: Path) -> None:
    con = candidates([("a", QUESTION)])
    with pytest.raises(FactoryError, match="missing.jsonl not found"):
        decontaminate(con, "kept", [tmp_path / "missing.jsonl"])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(FactoryError, match="empty.txt holds no questions"):
        decontaminate(con, "kept", [tmp_path / "empty.txt"])
    pq.write_table(pa.table({"answer": ["1"]}), tmp_path / "noq.parquet")
    with pytest.raises(FactoryError, match="noq.parquet has no column"):
        decontaminate(con, "kept", [tmp_path / "noq.parquet"])
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\nnot json\n')
    with pytest.raises(FactoryError, match="bad.jsonl:2: not valid JSON"):
        decontaminate(con, "kept", [tmp_path / "bad.jsonl"])
