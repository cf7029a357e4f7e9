"""`factory run`: a recipe's plan, its idempotent rerun, and bad recipes (engine-free stages)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_chain import make_run


def test_filter_and_export_recipe_runs_then_does_nothing(tmp_path: Path, runs_dir: Path, cli):
    make_run(runs_dir / "r")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"run: r\nfilter: {{chain: distill}}\nexport: {{to: '{tmp_path / 'ds'}'}}\n")
    plan = cli("run", str(recipe), "--dry-run", "--json")
    assert plan.exit_code == 0 and '"stage": "filter"' in plan.output and '"shards_done": 0' in plan.output
    first = cli("run", str(recipe), "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output.strip().splitlines()[-1])
    assert summary["errors"] == 0 and [s["stage"] for s in summary["stages"]] == ["filter", "export"]
    assert (tmp_path / "ds" / "README.md").exists() and list((runs_dir / "r" / "logs").glob("run-*.log"))
    assert summary["stages"][0]["report"] == str(runs_dir / "r" / "report.html") and "<svg" in (runs_dir / "r" / "report.html").read_text()
    before = {p: p.stat().st_mtime_ns for p in (runs_dir / "r" / "curated").glob("*.parquet")}
    again = cli("run", str(recipe), "--json")
    assert again.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (runs_dir / "r" / "curated").glob("*.parquet")} == before
    assert not (runs_dir / "r" / ".lock").exists()


def test_bad_recipes_are_one_line_errors(tmp_path: Path, cli):
    cases = {
        "norun.yaml": ("filter: {chain: distill}\n", "needs `run: NAME`"),
        "stage.yaml": ("run: r\nbake: {}\n", "unknown key(s) bake"),
        "gen.yaml": ("run: r\ngenerate: {temprature: 1}\n", "unknown generate setting(s) temprature"),
    }
    for name, (body, message) in cases.items():
        (tmp_path / name).write_text(body)
        result = cli("run", str(tmp_path / name))
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    missing = cli("run", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "no such recipe" in missing.output
