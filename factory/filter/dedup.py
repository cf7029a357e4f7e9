"""Global dedup and benchmark decontamination over the candidate samples of a run.

Every step takes a DuckDB connection and the name of a view/table of candidates (columns at
least `id`, plus the text/hash column it looks at) and returns an Arrow table (id, reason)
of the rows to reject. Reasons read "code: detail"; the funnel groups by the code.

- `exact_duplicates`: equal `completion_hash` (normalized text), an SQL aggregate + window.
- `near_duplicates`: MinHash signatures in numpy, LSH band buckets joined in DuckDB,
  candidate pairs verified by estimated Jaccard, clusters by connected components.
- `decontaminate`: word n-grams of benchmark questions joined against the samples in DuckDB.

Rows with a null or empty text are never duplicates of each other: they are skipped. Row
order in the results carries no meaning.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash  # no fallback on purpose: another token hash would silently give other signatures

from factory.core.errors import FactoryError
from factory.core.textnorm import text_hash

REJECT_SCHEMA = pa.schema([("id", pa.string()), ("reason", pa.string())])
BENCHMARK_COLUMNS = ("problem", "question", "prompt", "text")

# Scripts written without spaces: every character is a token, so Chinese, Japanese or Thai
# texts get character n-grams while Latin words in the same text stay whole words.
_NOSPACE = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_NOSPACE}]|[^\W{_NOSPACE}]+")
# The same "word" in DuckDB's RE2, whose \w is ASCII only: letters, digits, marks, underscore.
_SQL_WORD = r"[\p{L}\p{N}\p{M}_]+"

_M64 = np.uint64(0x9E3779B97F4A7C15)
_EMPTY_SIGNATURE = np.uint32(0xFFFFFFFF)


def _q(name: str) -> str:  # a quoted column name
    return '"' + name.replace('"', '""') + '"'


def _rel(view: str) -> str:  # a quoted view name, part by part so "schema.view" works too
    return ".".join(map(_q, view.split(".")))


def _arrow(rel: duckdb.DuckDBPyRelation) -> pa.Table:
    return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()


def _require_columns(con: duckdb.DuckDBPyConnection, view: str, *columns: str) -> None:
    """One clear line instead of a DuckDB binder error when the view lacks a column."""
    try:
        have = con.sql(f"select * from {_rel(view)} limit 0").columns
    except duckdb.Error as e:
        raise FactoryError(f"no table or view '{view}' in the DuckDB connection: register it first") from e
    missing = [c for c in columns if c not in have]
    if missing:
        raise FactoryError(f"'{view}' has no column {', '.join(missing)} (columns: {', '.join(have)})")


# --------------------------------------------------------------------------- exact


def exact_duplicates(
    con: duckdb.DuckDBPyConnection, view: str, hash_column: str = "completion_hash", order_by: str = "id"
) -> pa.Table:
    """Reject all but the first row (by `order_by`, then id) of every group of equal hashes.

    A GROUP BY on the BIGINT hash alone (no strings) finds groups of 2+; only their rows (semi
    join) are ranked by a window. Null hashes and the empty text's hash (blank texts) are skipped.
    """
    _require_columns(con, view, "id", hash_column, order_by)
    h = _q(hash_column)
    sql = f"""
        with d as (select {h} as h from {_rel(view)} where {h} <> {text_hash("")} group by 1 having count(*) > 1)
        select id::varchar as id, 'exact_duplicate: of ' || first_value(id::varchar) over w as reason
        from {_rel(view)} v semi join d on v.{h} = d.h
        window w as (partition by v.{h} order by v.{_q(order_by)}, id)
        qualify row_number() over w > 1
    """
    return _arrow(con.sql(sql)).cast(REJECT_SCHEMA)


# --------------------------------------------------------------------------- minhash


def _within(lengths: np.ndarray) -> np.ndarray:
    """0, 1, .., n-1 for each segment length n, concatenated: positions inside segments."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _token_stream(texts: pa.Array, cache: dict[str, tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every token of every text, and per-text offsets into them.

    Arrow splits on whitespace and dictionary-encodes the pieces in C++; only distinct pieces go
    through Python (lowercase, \\w+ runs, no-space scripts cut into characters, xxhash), memoized
    across chunks. A piece gives 0 ("="), 1 or more ("2+3", Chinese) tokens, gathered in numpy.
    """
    pieces = pc.ascii_split_whitespace(texts)
    counts = pc.fill_null(pc.list_value_length(pieces), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    enc = pc.dictionary_encode(pc.list_flatten(pieces))
    vocab = []
    for p in enc.dictionary.to_pylist():
        hashes = cache.get(p)
        if hashes is None:
            hashes = cache[p] = tuple(xxhash.xxh64_intdigest(t.encode()) for t in _TOKEN.findall(p.lower()))
        vocab.append(hashes)
    v_len = np.fromiter(map(len, vocab), np.int64, len(vocab))
    v_flat = np.fromiter(chain.from_iterable(vocab), np.uint64, int(v_len.sum()))
    ids, piece_off = enc.indices.to_numpy(), np.concatenate([[0], np.cumsum(counts)])
    if len(vocab) and v_len.min() == v_len.max() == 1:  # the common case: one gather
        return v_flat[ids], piece_off
    n_tok = v_len[ids]
    tok_cum = np.concatenate([[0], np.cumsum(n_tok)])
    tokens = np.empty(int(tok_cum[-1]), np.uint64)
    v_start = np.cumsum(v_len) - v_len
    one = n_tok == 1
    tokens[tok_cum[:-1][one]] = v_flat[v_start[ids[one]]]
    multi = np.nonzero(n_tok > 1)[0]  # token k of piece j: vocab token v_start + k, output tok_cum + k
    m_len, k = n_tok[multi], _within(n_tok[multi])
    tokens[np.repeat(tok_cum[multi], m_len) + k] = v_flat[np.repeat(v_start[ids[multi]], m_len) + k]
    return tokens, tok_cum[piece_off]


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, in place: spreads every input bit over the high 32 bits we keep."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _shingles(tokens: np.ndarray, offsets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the k-token shingles of each text, and per-text shingle offsets.

    Windows at every position are combined with whole-array slices (no per-text work); those
    crossing a text's end are masked out. A text shorter than k tokens gives one shingle of all
    its tokens, put in its (otherwise invalid) first window's slot.
    """
    n, lengths = len(tokens), np.diff(offsets)
    padded = np.concatenate([tokens, np.zeros(k - 1, np.uint64)])  # windows near the end stay in bounds
    h = padded[:n].copy()
    for j in range(1, k):
        h *= _M64
        h += padded[j : n + j]
        h ^= np.uint64(j)
    valid = np.ones(n, bool)
    tail = np.minimum(lengths, k - 1)  # the last k-1 starts of each text run past its end
    valid[np.repeat(offsets[1:] - tail, tail) + _within(tail)] = False
    short = np.nonzero((lengths > 0) & (lengths < k))[0]
    if len(short):
        s, ln = offsets[short], lengths[short]
        hs = padded[s].copy()
        for j in range(1, k):  # a short text's window takes only the tokens it has
            hs = np.where(ln > j, ((hs * _M64) + padded[s + j]) ^ np.uint64(j), hs)
        h[s] = hs
        valid[s] = True
    n_sh = np.where(lengths >= k, lengths - k + 1, np.minimum(lengths, 1))
    return (_mix(h[valid]) >> np.uint64(32)).astype(np.uint32), np.concatenate([[0], np.cumsum(n_sh)])


def _signatures(texts: pa.Array | pa.ChunkedArray, num_perm: int, ngram: int, seed: int) -> tuple[np.ndarray, ...]:
    """(signatures, has_tokens) of an Arrow string array; rows without tokens get all-max.

    Permutations are (a*x + b) mod 2**32: x is already a mixed 32-bit hash and a is odd, so each
    (a, b) permutes the 32-bit values, and uint32 arithmetic wraps (no modulo pass). Row chunks
    run on threads (Arrow compute and numpy release the GIL); blocks of ~8k shingles keep the
    (num_perm, m) product in cache, minima per text by reduceat over its shingle range.
    """
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    rng = np.random.default_rng(seed)  # PCG64 with a seed: the same a, b on every machine
    a = (rng.integers(0, 2**32, (num_perm, 1), dtype=np.uint64) | 1).astype(np.uint32)
    b = rng.integers(0, 2**32, (num_perm, 1), dtype=np.uint64).astype(np.uint32)
    sig = np.full((len(texts), num_perm), _EMPTY_SIGNATURE, np.uint32)
    has = np.zeros(len(texts), bool)
    cache: dict[str, tuple[int, ...]] = {}
    step = 4096

    def work(first: int) -> None:
        x, sh_off = _shingles(*_token_stream(texts.slice(first, step), cache), ngram)
        rows = np.nonzero(np.diff(sh_off) > 0)[0]
        has[first + rows] = True
        ends, start = sh_off[rows + 1], 0
        while start < len(rows):
            stop = max(start + 1, int(np.searchsorted(ends, sh_off[rows[start]] + 8192, "right")))
            r = rows[start:stop]
            block = np.multiply(a, x[sh_off[r[0]] : sh_off[r[-1] + 1]])
            block += b
            sig[first + r] = np.minimum.reduceat(block, sh_off[r] - sh_off[r[0]], axis=1).T
            start = stop

    with ThreadPoolExecutor(min(8, os.cpu_count() or 2)) as pool:
        list(pool.map(work, range(0, len(texts), step)))
    return sig, has


def minhash_signatures(texts: Sequence[str | None], num_perm: int = 128, ngram: int = 5, seed: int = 0) -> np.ndarray:
    """MinHash signatures, shape (n, num_perm) uint32, of word `ngram`-shingles (characters
    for scripts without spaces). Stable across processes and machines: xxhash of tokens and
    seeded permutations. Texts without a word token (null, empty, "= +") get all 0xFFFFFFFF."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.large_string())
    return _signatures(arr, num_perm, ngram, seed)[0]


def _band_hashes(sig: np.ndarray, bands: int) -> np.ndarray:
    """One int64 per (row, band): the band's minhash values folded and mixed."""
    r = sig.shape[1] // bands
    s = sig.reshape(len(sig), bands, r).astype(np.uint64)
    h = np.zeros((len(sig), bands), np.uint64)
    for j in range(r):
        h = (h ^ s[:, :, j]) * _M64
    return _mix(h).view(np.int64)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components over edges (a, b): label = smallest member (min-label propagation
    with pointer jumping, all numpy, so millions of edges stay fast)."""
    labels = np.arange(n)
    while True:
        before = labels.copy()
        m = np.minimum(labels[a], labels[b])
        np.minimum.at(labels, a, m)
        np.minimum.at(labels, b, m)
        labels = labels[labels]
        if np.array_equal(labels, before):
            return labels


def near_duplicates(
    con: duckdb.DuckDBPyConnection,
    view: str,
    text_column: str = "completion",
    num_perm: int = 128,
    bands: int = 16,
    ngram: int = 5,
    threshold: float = 0.8,
    order_by: str = "id",
    max_bucket: int = 64,
) -> pa.Table:
    """Reject all but the first row (by `order_by`, then id) of every cluster of near-duplicates.

    Pairs sharing any LSH band are candidates; a candidate is an edge when its estimated
    Jaccard (share of equal minhash values) is >= threshold; clusters are the connected
    components. Buckets larger than `max_bucket` link members to the bucket's first row only,
    so thousands of copies of one text cost a star, not all pairs. The Jaccard in a reason is
    to the kept row (below the threshold only for rows linked through a chain).
    """
    if num_perm % bands:
        raise FactoryError(f"num_perm {num_perm} is not a multiple of bands {bands}: pick e.g. bands=16 for 128")
    _require_columns(con, view, "id", text_column, order_by)
    # Row number = rank by order_by, so the smallest row of a cluster is the one to keep.
    t, o = _q(text_column), _q(order_by)
    data = _arrow(con.sql(f"select id::varchar as id, {t} as t from {_rel(view)} order by {o}, id"))
    if data.num_rows < 2:
        return REJECT_SCHEMA.empty_table()
    sig, has = _signatures(data["t"], num_perm, ngram, 0)
    rows = np.nonzero(has)[0]
    band = np.tile(np.arange(bands, dtype=np.int16), len(rows))
    bh = _band_hashes(sig[rows], bands).reshape(-1)
    name = f"_bands_{uuid.uuid4().hex}"
    con.register(name, pa.table({"row": np.repeat(rows.astype(np.int32), bands), "band": band, "bh": bh}))
    try:  # only buckets with 2+ rows join; big buckets give a star to their first row
        pairs = _arrow(
            con.sql(f"""
            with k as (select band, bh, min(row) as first, count(*) as size from {name} group by all having size > 1),
            m as (select b.row, b.band, b.bh, k.first, k.size from {name} b join k using (band, bh))
            select x.row as r1, y.row as r2 from m x join m y
                on x.band = y.band and x.bh = y.bh and x.row < y.row where x.size <= {int(max_bucket)}
            union
            select first as r1, row as r2 from m where size > {int(max_bucket)} and row <> first
        """)
        )
    finally:
        con.unregister(name)
    if pairs.num_rows == 0:
        return REJECT_SCHEMA.empty_table()
    r1, r2 = pairs["r1"].to_numpy(), pairs["r2"].to_numpy()
    keep = np.empty(len(r1), bool)
    for s in range(0, len(r1), 1 << 18):  # bounded memory for many candidates
        e = slice(s, s + (1 << 18))
        keep[e] = (sig[r1[e]] == sig[r2[e]]).mean(axis=1) >= threshold
    labels = _components(len(sig), r1[keep], r2[keep])
    dup = np.nonzero(labels != np.arange(len(sig)))[0]
    root, jac = labels[dup], (sig[dup] == sig[labels[dup]]).mean(axis=1)
    ids = data["id"].to_numpy(zero_copy_only=False)
    reasons = [f"near_duplicate: of {ids[k]} (jaccard {j:.2f})" for k, j in zip(root, jac, strict=True)]
    out = pa.table({"id": pa.array(ids[dup], pa.string()), "reason": pa.array(reasons, pa.string())})
    return out.sort_by("id")


# --------------------------------------------------------------------------- decontamination


def _question_text(value: object) -> str | None:
    """A benchmark cell as text: strings as is, chat message lists as their contents."""
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n".join(str(m.get("content", "")) for m in value)
    return value if value is None or isinstance(value, str) else str(value)


def _load_benchmark(path: str | Path, column: str | None) -> list[str]:
    """The questions of one benchmark file; every bad input is one FactoryError line."""
    p = Path(path)
    if not p.is_file():
        raise FactoryError(f"benchmark file {p} not found: check the path (JSONL, Parquet or .txt)")
    suffix = p.suffix.lower()
    if suffix not in (".txt", ".jsonl", ".json", ".parquet"):
        raise FactoryError(f"benchmark file {p}: unsupported type '{suffix}': use .jsonl, .parquet or .txt")
    if suffix == ".txt":
        questions: list[str | None] = p.read_text(encoding="utf-8").splitlines()
    else:
        if suffix == ".parquet":
            try:
                table = pq.read_table(p)
            except (pa.ArrowInvalid, OSError) as e:
                raise FactoryError(f"benchmark file {p} is not readable Parquet ({e}): rewrite it") from e
            rows, names = table.to_pylist(), table.column_names
        else:
            text, rows = p.read_text(encoding="utf-8"), []
            # JSONL, or a .json file holding one array of objects
            lines = [text] if suffix == ".json" and text.lstrip().startswith("[") else text.splitlines()
            for lineno, line in enumerate(lines, 1):
                try:
                    rows += [json.loads(line)] if line.strip() else []
                except json.JSONDecodeError as e:
                    where = f"{p}:{e.lineno if len(lines) == 1 else lineno}"
                    raise FactoryError(f"{where}: not valid JSON ({e.msg}): fix the file") from e
            rows = rows[0] if len(lines) == 1 and rows and isinstance(rows[0], list) else rows
            if not all(isinstance(r, dict) for r in rows):
                raise FactoryError(f"benchmark file {p} holds JSON values that are not objects: one object per line")
            names = list(dict.fromkeys(k for r in rows for k in r))
        wanted = [column] if column else list(BENCHMARK_COLUMNS)
        found = next((c for c in wanted if c in names), None)
        if found is None and names:
            raise FactoryError(
                f"benchmark file {p} has no column {' / '.join(wanted)} (columns: {', '.join(map(str, names))}): "
                "pass benchmark_column=NAME"
            )
        questions = [_question_text(r.get(found)) for r in rows] if found else []
    questions = [q for q in questions if q and q.strip()]
    if not questions:
        raise FactoryError(f"benchmark file {p} holds no questions: give a file with at least one non-empty question")
    return questions  # type: ignore[return-value]


def decontaminate(
    con: duckdb.DuckDBPyConnection,
    view: str,
    benchmarks: Sequence[str | Path],
    n: int = 13,
    column: str = "problem",
    benchmark_column: str | None = None,
) -> pa.Table:
    """Reject every sample whose `column` contains a word n-gram of a benchmark question.

    Both sides are normalized by the same SQL (lowercase, Unicode word tokens): case and
    punctuation do not matter. A question shorter than n words is one n-gram of its own length.
    Distinct texts are cut once (samples share problems); n-grams match by a hash join.
    """
    if n < 1:
        raise FactoryError(f"n-gram size must be at least 1, got {n}")
    _require_columns(con, view, "id", column)
    src, qs = [], []
    for path in benchmarks:
        questions = _load_benchmark(path, benchmark_column)
        src += [Path(path).stem] * len(questions)
        qs += questions
    if not qs:
        return REJECT_SCHEMA.empty_table()
    name = f"_bench_{uuid.uuid4().hex}"
    con.register(name, pa.table({"qi": np.arange(len(qs)), "src": pa.array(src, pa.string()), "q": pa.array(qs)}))
    c = _q(column)
    try:
        sql = f"""
            with bw as (select qi, src, regexp_extract_all(lower(q), '{_SQL_WORD}') as w from {name}),
            bk as (select qi, src, w, least(len(w), {n}) as k from bw where len(w) > 0),
            bg as (select k, array_to_string(w[i : i + k - 1], ' ') as g, arg_min(src, qi) as src
                   from bk, unnest(range(1, len(w) - k + 2)) u(i) group by all),
            lens as (select distinct k from bg),
            texts as (select distinct {c} as t from {_rel(view)} where {c} is not null),
            tw as (select t, regexp_extract_all(lower(t), '{_SQL_WORD}') as w from texts),
            tg as (select t, i, k, array_to_string(w[i : i + k - 1], ' ') as g
                   from tw, lens, unnest(range(1, len(w) - k + 2)) u(i)),
            hit as (select t, arg_min({{'src': bg.src, 'g': g}}, (i, k)) as m from tg join bg using (k, g) group by t)
            select s.id::varchar as id, 'benchmark_overlap: ' || hit.m.src || ': ''' || hit.m.g || '''' as reason
            from {_rel(view)} s join hit on s.{c} = hit.t order by s.id
        """
        return _arrow(con.sql(sql)).cast(REJECT_SCHEMA)
    finally:
        con.unregister(name)
