"""`factory show`: counts and a few samples of a run, rendered for a person."""

from __future__ import annotations

from pathlib import Path

import duckdb
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from factory import shards
from factory.errors import FactoryError

STAGES = ("generated", "curated", "rejected")


def show_run(run_dir: Path, stage: str, n: int, console: Console) -> None:
    manifest = shards.read_manifest(run_dir)
    if stage not in STAGES:
        raise FactoryError(f"unknown stage '{stage}': use {', '.join(STAGES)}")
    files = shards.readable_shards(run_dir, stage)
    config = manifest.get("config", {})
    console.print(
        f"[bold]{run_dir}[/]  template [cyan]{config.get('template')}[/]  model [cyan]{config.get('model')}[/]  "
        f"{len(files)} finished {stage} shards"
    )
    if not files:
        return
    con = duckdb.connect()
    con.execute(f"CREATE VIEW s AS SELECT * FROM read_parquet({[str(f) for f in files]!r})")
    (samples, problems, tokens, parsed, errors) = con.execute(
        "SELECT count(*), count(DISTINCT problem_id), sum(completion_tokens), "
        "count(*) FILTER (WHERE parse_error IS NULL AND error IS NULL), count(error) FROM s"
    ).fetchall()[0]
    table = Table("samples", "problems", "completion tokens", "parsed", "errors")
    table.add_row(str(samples), str(problems), str(tokens or 0), f"{parsed} ({parsed / samples:.0%})", str(errors))
    console.print(table)
    reasons = con.execute("SELECT finish_reason, count(*) FROM s GROUP BY 1 ORDER BY 2 DESC").fetchall()
    console.print("finish reasons: " + ", ".join(f"{r or 'none'} {c}" for r, c in reasons))
    rows = con.execute(
        "SELECT problem, answer, reasoning, final, parse_error, completion, finish_reason, error "
        "FROM s ORDER BY id LIMIT ?", [n]
    ).fetchall()
    for problem, answer, reasoning, final, parse_error, completion, finish, error in rows:
        body = [Text("Problem: ", style="bold") + Text(problem or "")]
        if error:
            body.append(Text(f"error: {error}", style="red"))
        elif parse_error:
            body.append(Text(f"could not parse ({parse_error}); completion:", style="yellow"))
            body.append(Text(_clip(completion)))
        else:
            body.append(Text("Reasoning:", style="bold"))
            body.append(Text(_clip(reasoning)))
            body.append(Text("Final: ", style="bold") + Text(final or ""))
        body.append(Text(f"gold: {answer}   finish: {finish}", style="dim"))
        console.print(Panel(Group(*body)))


def _clip(text: str | None, limit: int = 1200) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit} more characters)"
