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
    assert summary["stages"][0]["report"] == str(runs_dir / "r" / "report.html")
    assert "<svg" in (runs_dir / "r" / "report.html").read_text()
    before = {p: p.stat().st_mtime_ns for p in (runs_dir / "r" / "curated").glob("*.parquet")}
    again = cli("run", str(recipe), "--json")
    assert again.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (runs_dir / "r" / "curated").glob("*.parquet")} == before
    assert not (runs_dir / "r" / ".lock").exists()


def test_bad_recipes_are_one_line_errors(tmp_path: Path, cli):
    cases = {
        "norun.yaml": ("filter: {chain: distill}\n", "needs `run: NAME`"),
        "stage.yaml": ("run: r\nbake: {}\n", "unknown key(s) bake"),
        "gen.yaml": ("run: r\ngenerate: {temprature: 1}\n", "generate: unknown setting 'temprature'"),
    }
    for name, (body, message) in cases.items():
        (tmp_path / name).write_text(body)
        result = cli("run", str(tmp_path / name))
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    missing = cli("run", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "no such recipe" in missing.output


def test_shipped_recipes_plan_with_overrides(tmp_path: Path, runs_dir: Path, cli):
    small = ["--set", "generate.problems=builtin:arithmetic?n=10", "--set", "generate.limit=null"]
    cold = cli("run", "recipes/cold_start.yaml", "--dry-run", "--json", *small, "--set", "generate.n=3",
               "--executor", "ray")
    assert cold.exit_code == 0, cold.output
    plan = {s["stage"]: s for s in json.loads(cold.output)}
    assert plan["generate"]["templates"] == ["few_shot_long_cot", "reflect_verify"]
    assert plan["generate"]["samples"] == 10 * 2 * 3 and plan["generate"]["executor"] == "ray"
    distill = cli("run", "recipes/distill.yaml", "--dry-run", "--json", *small, "--set", "train=null")
    assert distill.exit_code == 0
    assert [s["stage"] for s in json.loads(distill.output)] == ["generate", "filter", "export"]
    refine = cli("run", "recipes/refine_r1_zero.yaml", "--dry-run")
    assert refine.exit_code == 2 and "run the recipe or `factory generate` that makes it first" in refine.output
    for bad, message in [("generate", "bad --set 'generate'"),
                         ("train.sft.lr=fast", "lr='fast' is not valid: expected a number"),
                         ("executor=slurm", "executor 'slurm' is not local or ray"),
                         ("ray.replica=2", "ray: unknown setting 'replica'")]:
        result = cli("run", "recipes/distill.yaml", "--dry-run", "--set", bad)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


def test_recipe_adds_decontamination_and_replaces_dedup(tmp_path: Path, runs_dir: Path, cli):
    make_run(runs_dir / "r")
    bench = tmp_path / "bench.jsonl"
    from factory.core.shards import read_samples

    leaked = read_samples(runs_dir / "r", "generated")[0]["problem"]
    bench.write_text(json.dumps({"problem": leaked}) + "\n" + json.dumps({"problem": "unrelated " * 20}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"run: r\nfilter: {{chain: cold_start, decontaminate: ['{bench}'], dedup: false}}\n")
    result = cli("run", str(recipe), "--json")
    assert result.exit_code == 0, result.output
    import yaml

    steps = [s if isinstance(s, str) else next(iter(s))
             for s in yaml.safe_load((runs_dir / "r" / "chain.yaml").read_text())["steps"]]
    assert "dedup" not in steps and steps.index("decontaminate") < steps.index("select")
    funnel = json.loads((runs_dir / "r" / "funnel.json").read_text())
    decon = next(s for s in funnel["steps"] if s["step"] == "decontaminate")
    assert decon["rejected"] == {"benchmark_overlap": sum(1 for r in read_samples(runs_dir / "r", "rejected")
                                                          if r["rejected_by"] == "decontaminate")}
    assert decon["rejected"]["benchmark_overlap"] > 0


def test_filter_flags_change_the_chain_as_a_recipe_does(tmp_path: Path, runs_dir: Path, cli):
    for run in ("a", "b"):
        make_run(runs_dir / run)
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"problem": "unrelated " * 20}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"run: a\nfilter: {{chain: cold_start, decontaminate: '{bench}', dedup: false}}\n")
    assert cli("run", str(recipe)).exit_code == 0
    flags = cli("filter", "b", "--decontaminate", str(bench), "--no-dedup")
    assert flags.exit_code == 0, flags.output
    assert (runs_dir / "a" / "chain.yaml").read_bytes() == (runs_dir / "b" / "chain.yaml").read_bytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: a\nfilter: {dedup: maybe}\n")
    result = cli("run", str(bad))
    assert result.exit_code == 2 and "filter: dedup='maybe' is not valid" in result.output, result.output
