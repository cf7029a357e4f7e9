"""`factory report`: one self-contained HTML page that shows a filtered run at a glance.

Every number is aggregated in DuckDB over the run's shards (only counts and a few example rows
reach Python), so a run with millions of samples reports in seconds. The charts are inline SVG
drawn by `report_svg`; the page loads nothing from the network and opens from a file anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import prefilled_completion
from factory.filter.funnel import compute_funnel
from factory.inspect import report_svg as svg
from factory.inspect.sql import connect

TEMPLATE = "report.html.j2"
MAX_BINS = 30
MAX_GROUPS = 20  # sources or templates shown in the pass-rate charts, largest first
EXAMPLES = 5  # rejected samples shown, one per (step, reason), most common first

# Only the narrow columns the charts need, kept and rejected in one view: the wide text columns
# (prompt, completion) are never scanned except for the few examples.
SAMPLES_VIEW = """
CREATE TEMP VIEW samples AS
SELECT problem_id, source, template, completion_tokens, length(reasoning) AS reasoning_chars,
       NULL::VARCHAR AS rejected_by, true AS kept FROM curated
UNION ALL
SELECT problem_id, source, template, completion_tokens, length(reasoning) AS reasoning_chars,
       rejected_by, false AS kept FROM rejected
"""


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of a filtered run (default RUN/report.html) and return its path."""
    data = collect(run_dir)
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["j2", "html"]))
    html = env.get_template(TEMPLATE).render(**data)
    out = out or run_dir / "report.html"
    shards.atomic_write_bytes(out, html.encode("utf-8"))
    return out


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the page shows: header facts, chart SVGs and example pairs."""
    manifest = shards.read_manifest(run_dir)  # a folder that is no run fails here, with the usual message
    if not shards.done_shards(run_dir, "curated"):
        raise FactoryError(f"{run_dir}: not filtered yet, nothing to report; "
                           f"run `factory filter {run_dir} --chain NAME` first")
    funnel = compute_funnel(run_dir)
    con = connect(run_dir)
    con.execute(SAMPLES_VIEW)
    labels = [s["step"] for s in funnel["steps"]]
    correct_upto = _steps_through_correct(labels)
    reasons = _reasons_by_size(funnel)
    colours = svg.reason_colours(reasons)
    rows = [svg.FunnelRow(s["step"], s["in"], s["kept"], s["rejected"]) for s in funnel["steps"]]
    tokens = histogram(con, "completion_tokens")
    chars = histogram(con, "reasoning_chars")
    by_source = pass_rates(con, "source", correct_upto)
    by_template = pass_rates(con, "template", correct_upto)
    per_problem = kept_per_problem(con)
    return {
        "header": header(con, run_dir, manifest, funnel, per_problem),
        "funnel_svg": Markup(svg.funnel_chart("funnel-chart", rows, colours)),
        "tokens_svg": Markup(svg.histogram_chart("tokens-chart", tokens["edges"], tokens["kept"], tokens["rejected"],
                                                 "completion length (tokens)", tokens["notes"])),
        "chars_svg": Markup(svg.histogram_chart("chars-chart", chars["edges"], chars["kept"], chars["rejected"],
                                                "reasoning length (characters)", chars["notes"])),
        "source_svg": Markup(svg.rate_chart("source-chart", by_source["groups"], correct_upto is not None)),
        "source_note": by_source["note"],
        "template_svg": Markup(svg.rate_chart("template-chart", by_template["groups"], correct_upto is not None)),
        "template_note": by_template["note"],
        "per_problem_svg": Markup(svg.count_chart("per-problem-chart", per_problem, "kept samples per problem")),
        "examples": examples(con),
        "has_correct": correct_upto is not None,
    }


def header(con: duckdb.DuckDBPyConnection, run_dir: Path, manifest: dict[str, Any], funnel: dict[str, Any],
           per_problem: list[tuple[int, int]]) -> dict[str, Any]:
    config = manifest.get("config", {})
    # What made the samples, read from the samples themselves: right even for runs whose config
    # does not name a single model or template (e.g. a run refined from another run).
    made = con.execute(
        "SELECT model, template, sampling, count(*) AS n FROM generated GROUP BY ALL ORDER BY n DESC LIMIT 6"
    ).fetchall()
    filter_manifest = run_dir / "filter.json"
    chain = json.loads(filter_manifest.read_text()).get("chain") if filter_manifest.exists() else None
    problems = sum(c for _, c in per_problem)
    solved = sum(c for k, c in per_problem if k > 0)
    complete = funnel["generated"] == funnel["kept"] + funnel["rejected"]
    return {
        "run": run_dir.name,
        "path": str(run_dir.resolve()),
        "models": _distinct(m for m, _, _, _ in made),
        "templates": _distinct(t for _, t, _, _ in made),
        "sampling": _distinct(_sampling_text(s) for _, _, s, _ in made),
        "problems_source": config.get("problems"),
        "chain": chain,
        "generated": funnel["generated"],
        "kept": funnel["kept"],
        "rejected": funnel["rejected"],
        "kept_share": svg.pct(funnel["kept"], funnel["generated"]),
        "problems": problems,
        "solved": solved,
        "solved_share": svg.pct(solved, problems),
        "warning": None if complete else (
            f"generated {svg.fmt(funnel['generated'])} ≠ kept {svg.fmt(funnel['kept'])} + rejected "
            f"{svg.fmt(funnel['rejected'])}: the run is still being written or filtered; rerun `factory filter`"
        ),
    }


def histogram(con: duckdb.DuckDBPyConnection, column: str) -> dict[str, Any]:
    """Counts of kept and rejected samples in the same bins of `column` (null values counted apart)."""
    lo, hi, missing_kept, missing_rej = con.execute(
        f"SELECT min({column}), max({column}), count(*) FILTER (kept AND {column} IS NULL), "
        f"count(*) FILTER (NOT kept AND {column} IS NULL) FROM samples"
    ).fetchone()
    notes = []
    if missing_kept or missing_rej:
        notes.append(f"not shown, no value: {svg.fmt(missing_kept)} kept, {svg.fmt(missing_rej)} rejected")
    if lo is None:
        return {"edges": [0, 1], "kept": [0], "rejected": [0], "notes": notes}
    step = int(max(svg.nice_step(hi - lo, MAX_BINS), 1))  # lengths are integers: no bin narrower than 1
    start = (lo // step) * step
    bins = int((hi - start) // step) + 1  # the last bin holds the maximum
    kept, rejected = [0] * bins, [0] * bins
    for is_kept, index, count in con.execute(
        f"SELECT kept, CAST(floor(({column} - ?) / ?) AS BIGINT) AS b, count(*) FROM samples "
        f"WHERE {column} IS NOT NULL GROUP BY ALL", [start, step]
    ).fetchall():
        (kept if is_kept else rejected)[index] += count
    edges = [start + i * step for i in range(bins + 1)]
    medians = con.execute(
        f"SELECT median({column}) FILTER (kept), median({column}) FILTER (NOT kept) FROM samples"
    ).fetchone()
    notes.insert(0, "median: kept " + " · rejected ".join("–" if m is None else svg.fmt(m) for m in medians))
    return {"edges": edges, "kept": kept, "rejected": rejected, "notes": notes}


def pass_rates(con: duckdb.DuckDBPyConnection, column: str, correct_upto: list[str] | None) -> dict[str, Any]:
    """Per source (or template): samples generated, kept, and through the `correct` step."""
    correct = "count(*) FILTER (kept OR NOT list_contains(?, rejected_by))" if correct_upto else "NULL"
    params = [correct_upto] if correct_upto else []
    rows = con.execute(
        f"SELECT coalesce({column}, '(none)') AS name, count(*) AS total, count(*) FILTER (kept) AS kept, "
        f"{correct} AS correct FROM samples GROUP BY 1 ORDER BY total DESC, name", params
    ).fetchall()
    groups = [{"name": n, "total": t, "kept": k, "correct": c} for n, t, k, c in rows[:MAX_GROUPS]]
    note = f"the {MAX_GROUPS} largest of {len(rows)} shown" if len(rows) > MAX_GROUPS else ""
    return {"groups": groups, "note": note}


def kept_per_problem(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """(k, number of problems with exactly k kept samples), k from 0 to the most kept, gaps as 0."""
    counts = dict(con.execute(
        "SELECT k, count(*) FROM (SELECT problem_id, count(*) FILTER (kept) AS k FROM samples GROUP BY problem_id) "
        "GROUP BY k"
    ).fetchall())
    return [(k, counts.get(k, 0)) for k in range(max(counts, default=0) + 1)]


def examples(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """One rejected sample per common (step, reason), next to a kept sample of the same problem.

    Ids are chosen by aggregates over narrow columns first; only the chosen rows' text is read.
    """
    picks = con.execute(f"""
        WITH kept_problems AS (SELECT problem_id, min(id) AS kept_id FROM curated GROUP BY problem_id)
        SELECT r.rejected_by, split_part(r.reason, ':', 1) AS code, count(*) AS n,
               coalesce(min(r.id) FILTER (WHERE k.kept_id IS NOT NULL), min(r.id)) AS rejected_id
        FROM rejected r LEFT JOIN kept_problems k USING (problem_id)
        GROUP BY ALL ORDER BY n DESC, r.rejected_by, code LIMIT {EXAMPLES}
    """).fetchall()
    rejected = _rows(con, "rejected", [p[3] for p in picks])
    problems = [rejected[p[3]]["problem_id"] for p in picks]
    kept_ids = dict(con.execute(
        "SELECT problem_id, min(id) FROM curated WHERE list_contains(?, problem_id) GROUP BY 1", [problems]
    ).fetchall()) if problems else {}
    kept = _rows(con, "curated", list(kept_ids.values()))
    if not picks:  # nothing rejected: show a few kept samples alone
        first = [i for (i,) in con.execute(f"SELECT id FROM curated ORDER BY id LIMIT {EXAMPLES}").fetchall()]
        kept = _rows(con, "curated", first)
        return [{"problem": _clip(s["problem"], 600), "answer": s["answer"], "kept": s, "rejected": None, "count": 0}
                for s in kept.values()]
    out = []
    for step, code, n, rejected_id in picks:
        r = rejected[rejected_id]
        k = kept.get(kept_ids.get(r["problem_id"], ""))
        out.append({"problem": _clip(r["problem"], 600), "answer": r["answer"], "kept": k, "rejected": r,
                    "step": step, "code": code, "count": n})
    return out


def _rows(con: duckdb.DuckDBPyConnection, view: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    cur = con.execute(
        f"SELECT id, problem_id, sample_index, problem, answer, completion, final, finish_reason, "
        f"completion_tokens, rejected_by, reason, metadata FROM {view} WHERE list_contains(?, id)", [ids]
    )
    names = [d[0] for d in cur.description]
    out = {}
    for values in cur.fetchall():
        row = dict(zip(names, values))
        row["shown"] = _clip(prefilled_completion(row), 1400, tail=500)
        out[row["id"]] = row
    return out


def _clip(text: str | None, head: int, tail: int = 0) -> str:
    """Head and tail of a long text: the answer is at the end of a completion, so keep both."""
    text = text or ""
    if len(text) <= head + tail + 200:
        return text
    omitted = len(text) - head - tail
    return text[:head] + f"\n\n[… {omitted:,} characters omitted …]\n\n" + (text[-tail:] if tail else "")


def _steps_through_correct(labels: list[str]) -> list[str] | None:
    """Step labels up to and including the first `correct` step: a sample rejected by none of
    them was parsed, complete and right. None when the chain does not check answers."""
    for i, label in enumerate(labels):
        if label.split("#", 1)[0] == "correct":
            return labels[: i + 1]
    return None


def _reasons_by_size(funnel: dict[str, Any]) -> list[str]:
    totals: dict[str, int] = {}
    for s in funnel["steps"]:
        for reason, count in s["rejected"].items():
            totals[reason] = totals.get(reason, 0) + count
    return [r for r, c in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])) if c]


def _sampling_text(s: dict[str, Any] | None) -> str:
    if not s:
        return "–"
    # :g drops float noise (0.7000000000000001) that a struct read back through Arrow can carry.
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in s.items()
                     if v is not None and k != "seed")


def _distinct(values) -> list[str]:
    out: list[str] = []
    for v in values:
        if v is not None and str(v) not in out:
            out.append(str(v))
    return out
