"""`factory show`: counts and a few samples of a run, rendered for a person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from factory.core import shards
from factory.core.errors import FactoryError

STAGES = ("generated", "curated", "rejected")


def run_summary(run_dir: Path, stage: str, n: int) -> dict[str, Any]:
    """Counts for one stage of a run and its first `n` samples (by id), as plain data."""
    manifest = shards.read_manifest(run_dir)
    if stage not in STAGES:
        raise FactoryError(f"unknown stage '{stage}': use {', '.join(STAGES)}")
    files = shards.readable_shards(run_dir, stage)
    config = manifest.get("config", {})
    summary: dict[str, Any] = {"run": str(run_dir), "stage": stage, "template": config.get("template"),
                               "model": config.get("model"), "shards": len(files)}
    if not files:
        return summary | {"samples": 0, "examples": []}
    con = duckdb.connect()
    con.execute(f"CREATE VIEW s AS SELECT * FROM read_parquet({[str(f) for f in files]!r})")
    (samples, problems, tokens, parsed, errors) = con.execute(
        "SELECT count(*), count(DISTINCT problem_id), sum(completion_tokens), "
        "count(*) FILTER (WHERE parse_error IS NULL AND error IS NULL), count(error) FROM s"
    ).fetchall()[0]
    reasons = con.execute("SELECT finish_reason, count(*) FROM s GROUP BY 1 ORDER BY 2 DESC").fetchall()
    columns = ["id", "problem", "answer", "reasoning", "final", "parse_error", "completion", "finish_reason", "error",
               "reason"]
    rows = con.execute(f"SELECT {', '.join(columns)} FROM s ORDER BY id LIMIT ?", [n]).fetchall()
    return summary | {
        "samples": samples, "problems": problems, "completion_tokens": int(tokens or 0), "parsed": parsed,
        "errors": errors, "finish_reasons": {r or "none": c for r, c in reasons},
        "examples": [dict(zip(columns, row)) for row in rows],
    }


def show_run(run_dir: Path, stage: str, n: int, console: Console) -> None:
    s = run_summary(run_dir, stage, n)
    console.print(
        f"[bold]{run_dir}[/]  template [cyan]{s['template']}[/]  model [cyan]{s['model']}[/]  "
        f"{s['shards']} finished {stage} shards"
    )
    if not s["shards"]:
        return
    table = Table("samples", "problems", "completion tokens", "parsed", "errors")
    table.add_row(str(s["samples"]), str(s["problems"]), str(s["completion_tokens"]),
                  f"{s['parsed']} ({s['parsed'] / s['samples']:.0%})", str(s["errors"]))
    console.print(table)
    console.print("finish reasons: " + ", ".join(f"{r} {c}" for r, c in s["finish_reasons"].items()))
    for ex in s["examples"]:
        body = [Text("Problem: ", style="bold") + Text(ex["problem"] or "")]
        if ex["error"]:
            body.append(Text(f"error: {ex['error']}", style="red"))
        elif ex["parse_error"]:
            body.append(Text(f"could not parse ({ex['parse_error']}); completion:", style="yellow"))
            body.append(Text(_clip(ex["completion"])))
        else:
            body.append(Text("Reasoning:", style="bold"))
            body.append(Text(_clip(ex["reasoning"])))
            body.append(Text("Final: ", style="bold") + Text(ex["final"] or ""))
        if ex["reason"]:
            body.append(Text(f"rejected: {ex['reason']}", style="yellow"))
        body.append(Text(f"gold: {ex['answer']}   finish: {ex['finish_reason']}", style="dim"))
        console.print(Panel(Group(*body)))


def _clip(text: str | None, limit: int = 1200) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit} more characters)"
