"""`factory report`: the page is rendered in a real headless browser and its charts are read back.

Every number a chart draws is checked against DuckDB over the shards themselves, and the
screenshot must show the kept/rejected colours in quantity, so a page that renders blank,
draws empty bars or shows wrong counts fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from factory.core import shards
from factory.core.sample import to_table
from factory.filter.chain import load_chain, run_chain
from factory.inspect import report_svg
from factory.inspect.report import write_report
from tests.test_chain import make_run

HOSTILE = " <img src=x onerror=alert(1)> & <b>bold</b>"  # must show as text, never as markup
SOURCES = ("alpha", "beta", "gamma")


class Dom(HTMLParser):
    """The rendered DOM: tag counts, every <rect> with its chart, and the text inside each chart."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.rects: list[dict[str, str]] = []
        self.chart_text: dict[str, list[str]] = defaultdict(list)
        self.text: list[str] = []
        self._chart: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self._chart = a.get("id")
        elif tag == "rect" and self._chart:
            self.rects.append({**a, "chart": self._chart})

    def handle_endtag(self, tag):
        if tag == "svg":
            self._chart = None

    def handle_data(self, data):
        self.text.append(data)
        if self._chart:
            self.chart_text[self._chart].append(data)

    def bars(self, chart: str, cls: str) -> list[dict[str, str]]:
        return [r for r in self.rects if r["chart"] == chart and cls in r.get("class", "").split()]


def chromium_flags(profile: Path) -> list[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed, so the report cannot be rendered: run `make system-deps`")
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--window-size=1280,3000"]


def browse(flags: list[str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([*flags, *args], check=False, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A filtered run with three sources, two templates, unsolvable problems and hostile text,
    its report, a screenshot of it and its DOM after rendering."""
    base = tmp_path_factory.mktemp("report")
    run = base / "mixed-run"
    rows = make_run(run, problems=30, per_shard=10)
    for i, row in enumerate(rows):
        k = i // 4  # make_run writes 4 samples per problem, problem by problem
        row["source"] = SOURCES[min(k // 12, 2)]  # 12, 12 and 6 problems
        row["template"] = "reflect_verify" if k % 3 == 0 else "r1_zero"
        row["problem"] += HOSTILE
        if k % 4 == 1:
            row["answer"] = "123456789"  # no sample can be right: the problem ends with 0 kept
    for s in range(3):
        shards.write_shard(shards.shard_path(run, "generated", s), to_table(rows[s * 40 : (s + 1) * 40]), {})
    run_chain(run, load_chain("cold_start"), workers=1)
    page = write_report(run)
    flags = chromium_flags(base / "profile")
    png = base / "report.png"
    browse(flags, f"--screenshot={png}", page.as_uri())
    dom = browse(flags, "--dump-dom", page.as_uri()).stdout
    con = duckdb.connect()
    for stage in ("generated", "curated", "rejected"):
        con.execute(f"CREATE VIEW {stage} AS SELECT * FROM '{run}/{stage}/*.parquet'")
    return {"run": run, "page": page, "png": png, "dom": Dom(dom), "html": page.read_text(), "con": con}


def count(con: duckdb.DuckDBPyConnection, sql: str, *params) -> int:
    return con.execute(sql, list(params)).fetchone()[0]


def test_funnel_shows_the_counts_in_the_shards(rendered):
    dom, con, run = rendered["dom"], rendered["con"], rendered["run"]
    steps = [s["step"] for s in json.loads((run / "funnel.json").read_text())["steps"]]
    kept_total = count(con, "SELECT count(*) FROM curated")
    rejected = {(s, r): n for s, r, n in con.execute(
        "SELECT rejected_by, split_part(reason, ':', 1), count(*) FROM rejected GROUP BY ALL").fetchall()}
    drawn_rejected = {(b["data-step"], b["data-reason"]): int(b["data-count"])
                      for b in dom.bars("funnel-chart", "rejected")}
    assert drawn_rejected == rejected
    drawn_kept = {b["data-step"]: int(b["data-count"]) for b in dom.bars("funnel-chart", "kept")}
    text = " ".join(dom.chart_text["funnel-chart"])
    for i, step in enumerate(steps):
        # What reached step i is what was finally kept plus what step i or a later step rejected.
        later = sum(n for (s, _), n in rejected.items() if s in steps[i:])
        here = sum(n for (s, _), n in rejected.items() if s == step)
        assert drawn_kept[step] == kept_total + later - here
        assert f"{kept_total + later:,} in · {kept_total + later - here:,} kept · {here:,} rejected" in text
    widths = {b["data-step"]: float(b["width"]) for b in dom.bars("funnel-chart", "kept")}
    assert all(float(b["width"]) > 0 for b in dom.bars("funnel-chart", "seg"))
    first = steps[0]
    for step in steps:  # one scale for all steps: widths are proportional to counts
        assert widths[step] / widths[first] == pytest.approx(drawn_kept[step] / drawn_kept[first], rel=1e-3)
    for name, stage in (("generated", "generated"), ("kept", "curated"), ("rejected", "rejected")):
        shown = re.search(rf'id="count-{name}">([\d,]+)<', rendered["html"]).group(1)
        assert int(shown.replace(",", "")) == count(con, f"SELECT count(*) FROM {stage}")


@pytest.mark.parametrize("chart, column", [("tokens-chart", "completion_tokens"), ("chars-chart", "length(reasoning)")])
def test_histograms_share_bins_and_sum_to_each_group(rendered, chart, column):
    dom, con = rendered["dom"], rendered["con"]
    for series, stage in (("kept", "curated"), ("rejected", "rejected")):
        bars = dom.bars(chart, series)
        assert bars and all(float(b["height"]) > 0 for b in bars)
        assert sum(int(b["data-count"]) for b in bars) == count(con, f"SELECT count({column}) FROM {stage}")
        for b in bars:
            lo, hi = float(b["data-lo"]), float(b["data-hi"])
            assert int(b["data-count"]) == count(
                con, f"SELECT count(*) FROM {stage} WHERE {column} >= ? AND {column} < ?", lo, hi)
    all_bars = dom.bars(chart, "bar")
    assert len({float(b["data-hi"]) - float(b["data-lo"]) for b in all_bars}) == 1  # the same bins for both groups
    if column.startswith("length"):  # unparsed samples have no reasoning: said, not silently dropped
        missing = count(con, "SELECT count(*) FROM rejected WHERE reasoning IS NULL")
        assert missing > 0 and f"0 kept, {missing} rejected" in " ".join(dom.chart_text[chart])


@pytest.mark.parametrize("chart, column", [("source-chart", "source"), ("template-chart", "template")])
def test_pass_rates_match_duckdb(rendered, chart, column):
    dom, con = rendered["dom"], rendered["con"]
    through_correct = ["parsed", "complete", "format", "correct"]  # cold_start's steps up to correct
    expected = {name: (total, kept, correct) for name, total, kept, correct in con.execute(f"""
        SELECT g.{column}, count(*), count(c.id),
               count(*) FILTER (WHERE NOT list_contains(?, r.rejected_by) OR c.id IS NOT NULL)
        FROM generated g LEFT JOIN curated c USING (id) LEFT JOIN rejected r USING (id) GROUP BY 1""", [through_correct]
    ).fetchall()}
    assert len(expected) > 1
    drawn = {(b["data-group"], b["data-series"]): (int(b["data-count"]), int(b["data-total"]))
             for b in dom.bars(chart, "rate")}
    text = " ".join(dom.chart_text[chart])
    for name, (total, kept, correct) in expected.items():
        assert drawn[(name, "kept")] == (kept, total)
        assert drawn[(name, "correct")] == (correct, total)
        assert f"{report_svg.pct(kept, total)}  ({kept}/{total})" in text
    rates = {kept / total for total, kept, _ in expected.values()}
    assert len(rates) > 1  # the groups differ, so a chart that mixed them up would fail


def test_samples_per_problem_counts_problems_with_none_kept(rendered):
    dom, con = rendered["dom"], rendered["con"]
    drawn = {int(b["data-kept-samples"]): int(b["data-problems"]) for b in dom.bars("per-problem-chart", "problems")}
    expected = dict(con.execute(
        "SELECT k, count(*) FROM (SELECT g.problem_id, count(DISTINCT c.id) AS k FROM generated g "
        "LEFT JOIN curated c USING (problem_id) GROUP BY 1) GROUP BY 1").fetchall())
    assert expected[0] == 8  # every fourth of the 30 problems has an impossible gold answer
    assert {k: n for k, n in drawn.items() if n} == expected


def test_examples_pair_kept_and_rejected_and_escape_text(rendered):
    dom, html = rendered["dom"], rendered["html"]
    assert dom.tags["img"] == 0 and dom.tags["script"] == 0 and dom.tags["b"] == 0 and dom.tags["link"] == 0
    assert HOSTILE.strip() in "".join(dom.text)  # shown as text
    assert html.count('class="sample kept"') >= 3 and html.count('class="sample rejected"') >= 3
    for reason in ("wrong_answer", "exact_duplicate", "truncated"):
        assert f": {reason}" in html
    assert not re.search(r"(src|href)=\"?https?:", html)  # self-contained: nothing fetched


def test_screenshot_shows_the_charts(rendered):
    image = Image.open(rendered["png"]).convert("RGB")
    assert image.size == (1280, 3000)
    colours = image.getcolors(maxcolors=1 << 24)  # (pixel count, (r, g, b)) for every colour present

    def pixels(hex_colour: str) -> int:
        target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        return sum(n for n, c in colours if all(abs(a - b) <= 12 for a, b in zip(c, target)))

    # Thousands of pixels each: bars were laid out and painted, not just present in the markup.
    assert pixels(report_svg.KEPT) > 20_000
    assert pixels(report_svg.REJECTED) > 5_000
    assert pixels(report_svg.CORRECT) > 2_000


def test_cli_writes_the_report_where_asked(rendered, cli, tmp_path):
    out = tmp_path / "page.html"
    result = cli("report", str(rendered["run"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and out.read_text().startswith("<!doctype html>")


def test_unfiltered_run_is_a_one_line_error(cli, tmp_path, runs_dir):
    make_run(runs_dir / "raw", problems=4)
    for target in ("raw", str(tmp_path / "nowhere")):
        result = cli("report", target)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    assert "not a run folder" in lines[0]
    first = cli("report", "raw").output
    assert "not filtered yet" in first and "factory filter" in first and "--chain NAME" in first
