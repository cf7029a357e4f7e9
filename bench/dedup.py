"""Dedup throughput of `factory.filter.dedup` against plain baselines, side by side, in one run.

(a) Exact dedup of --rows synthetic rows (~10% planted duplicates): `exact_duplicates` in
    DuckDB against a pure-Python loop with a dict over the same hash column (rows given to
    it sorted by id, so one pass keeps the first by id: its best case).
(b) Near dedup of --near-rows rows of 100-300 words, 2% of them planted near-duplicates
    (copies of another row with 1 word in 100 replaced, so 1-3 words): `near_duplicates`
    against datasketch MinHash + MinHashLSH (same num_perm and threshold, the same word
    5-gram shingles, its fast paths: one template MinHash copied, `update_batch`), each
    building signatures, indexing and querying, verifying candidates by estimated Jaccard.
    Recall: share of planted pairs whose later row (by id) is rejected.

Both sides start from the same Arrow table (DuckDB scans it; the baselines convert the
columns to Python, which is their own cost). Data generation is not timed.

    python bench/dedup.py                                   # 1,000,000 and 100,000 rows
    python bench/dedup.py --rows 100000 --near-rows 10000   # a quick run

(b) needs datasketch (dev extra); without it only our side of (b) runs.
"""

from __future__ import annotations

import argparse
import re
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from factory.core.textnorm import text_hash
from factory.filter.dedup import exact_duplicates, near_duplicates

NUM_PERM, THRESHOLD, NGRAM = 128, 0.8, 5


def exact_data(rows: int, seed: int = 0) -> pa.Table:
    """rows ids in order; ~10% of rows repeat an earlier text (same normalized hash)."""
    rng = np.random.default_rng(seed)
    n_unique = rows - rows // 10
    texts = [f"Step {k}: add {k % 97} and {k % 89}, so the answer is {k % 97 + k % 89}." for k in range(n_unique)]
    hashes = np.fromiter(map(text_hash, texts), np.int64, n_unique)
    pick = np.concatenate([np.arange(n_unique), rng.integers(0, n_unique, rows - n_unique)])
    rng.shuffle(pick)
    return pa.table(
        {
            "id": pa.array([f"s{i:09d}" for i in range(rows)]),
            "completion": pa.array(texts).take(pa.array(pick)),
            "completion_hash": pa.array(hashes[pick]),
        }
    )


def python_exact(table: pa.Table) -> dict[str, str]:
    """The baseline: one pass in id order, the first id of each hash kept."""
    empty = text_hash("")
    kept: dict[int, str] = {}
    rejected: dict[str, str] = {}
    for id_, h in zip(table.column("id").to_pylist(), table.column("completion_hash").to_pylist(), strict=True):
        if h is None or h == empty:
            continue
        first = kept.setdefault(h, id_)
        if first != id_:
            rejected[id_] = f"exact_duplicate: of {first}"
    return rejected


def near_data(rows: int, seed: int = 0) -> tuple[pa.Table, list[tuple[int, int]]]:
    """Texts of 100-300 words from a 30k-word Zipf-like vocabulary; 2% planted near copies."""
    rng = np.random.default_rng(seed)
    vocab_size = 30_000
    p = 1.0 / (np.arange(vocab_size) + 20.0)
    vocab = pa.array([f"w{i}" for i in rng.permutation(vocab_size)])
    lengths = rng.integers(100, 301, rows)
    words = np.split(rng.choice(vocab_size, int(lengths.sum()), p=p / p.sum()), np.cumsum(lengths)[:-1])
    copies = rng.choice(rows, 2 * (rows // 50), replace=False)
    pairs = []
    for src, dst in copies.reshape(-1, 2):
        w = words[src].copy()
        k = max(1, len(w) // 100)
        w[rng.choice(len(w), k, replace=False)] = rng.integers(0, vocab_size, k)
        words[dst] = w
        pairs.append((int(src), int(dst)))
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in words])]).astype(np.int64)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), vocab.take(pa.array(np.concatenate(words))))
    table = pa.table({"id": pa.array([f"n{i:08d}" for i in range(rows)]), "completion": pc.binary_join(lists, " ")})
    return table, pairs


def datasketch_near(table: pa.Table) -> dict[str, str]:
    """datasketch doing the same job: signature, query, verify, insert the kept ones."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    template = MinHash(num_perm=NUM_PERM)
    kept: dict[str, MinHash] = {}
    rejected: dict[str, str] = {}
    word = re.compile(r"\w+")
    for id_, text in zip(table.column("id").to_pylist(), table.column("completion").to_pylist(), strict=True):
        tokens = word.findall((text or "").lower())
        if not tokens:
            continue
        m = template.copy()
        m.update_batch([" ".join(tokens[i : i + NGRAM]).encode() for i in range(max(1, len(tokens) - NGRAM + 1))])
        match = next((k for k in sorted(lsh.query(m)) if kept[k].jaccard(m) >= THRESHOLD), None)
        if match is None:
            lsh.insert(id_, m)
            kept[id_] = m
        else:
            rejected[id_] = match
    return rejected


def timed(fn, *args, repeat: int = 1):
    """Result and best wall time of `repeat` calls (the first call also pays warm-up)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return out, best


def recall(rejected_ids: set[str], ids: list[str], pairs: list[tuple[int, int]]) -> tuple[float, int]:
    later = {ids[max(a, b)] for a, b in pairs}
    planted = {ids[i] for pair in pairs for i in pair}
    return len(later & rejected_ids) / max(1, len(later)), len(rejected_ids - planted)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows for exact dedup")
    ap.add_argument("--near-rows", type=int, default=100_000, help="rows for near dedup")
    ap.add_argument("--repeat", type=int, default=3, help="exact dedup: best of this many runs per side")
    args = ap.parse_args()
    con = duckdb.connect()

    table = exact_data(args.rows)
    con.register("cand", table)
    ours, t_ours = timed(exact_duplicates, con, "cand", repeat=args.repeat)
    theirs, t_py = timed(python_exact, table, repeat=args.repeat)
    assert dict(zip(ours["id"].to_pylist(), ours["reason"].to_pylist(), strict=True)) == theirs, "results differ"
    print(f"(a) exact dedup, {args.rows:,} rows, {ours.num_rows:,} duplicates rejected (best of {args.repeat})")
    print(f"    factory exact_duplicates (DuckDB) {args.rows / t_ours:>12,.0f} rows/s  ({t_ours:.2f} s)")
    print(f"    pure-Python dict loop             {args.rows / t_py:>12,.0f} rows/s  ({t_py:.2f} s)")
    print(f"    ratio {t_py / t_ours:.1f}x")

    near, pairs = near_data(args.near_rows)
    ids = near["id"].to_pylist()
    con.register("near", near)
    ours, t_ours = timed(near_duplicates, con, "near", "completion", NUM_PERM, 16, NGRAM, THRESHOLD)
    r_ours, fp_ours = recall(set(ours["id"].to_pylist()), ids, pairs)
    print(f"(b) near dedup, {args.near_rows:,} rows, {len(pairs):,} planted near-duplicates")
    print(
        f"    factory near_duplicates           {args.near_rows / t_ours:>12,.0f} rows/s  ({t_ours:.2f} s)"
        f"  recall {r_ours:.2%}, {fp_ours} unplanted rejected"
    )
    try:
        import datasketch  # noqa: F401
    except ImportError:
        print("    datasketch not installed (pip install datasketch): no baseline")
        return
    theirs, t_ds = timed(datasketch_near, near)
    r_ds, fp_ds = recall(set(theirs), ids, pairs)
    print(
        f"    datasketch MinHash + MinHashLSH   {args.near_rows / t_ds:>12,.0f} rows/s  ({t_ds:.2f} s)"
        f"  recall {r_ds:.2%}, {fp_ds} unplanted rejected"
    )
    print(f"    ratio {t_ds / t_ours:.1f}x")


if __name__ == "__main__":
    main()
