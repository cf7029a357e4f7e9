"""The shipped recipes, run for real (vLLM on CPU, the shipped tiny model) with `--set` overrides
that shrink them; and a whole recipe killed mid-way, then resumed by a plain rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from factory.core.shards import done_shards, read_samples
from tests.helpers import FACTORY, REPO, factory_env, run_factory

pytestmark = pytest.mark.slow

TINY = ["--set", "generate.model=data/tiny-model", "--set", "generate.limit=null", "--set", "generate.engine_args={}"]


def run_recipe(name: str, runs: Path, *sets: str) -> tuple[dict, subprocess.CompletedProcess]:
    overrides = [x for s in sets for x in ("--set", s)]
    result = run_factory(["run", f"recipes/{name}.yaml", "--json", *TINY, *overrides], runs, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result


def stages(summary: dict) -> dict[str, dict]:
    return {s["stage"]: s for s in summary["stages"]}


def test_r1_zero_rollouts_then_refine_their_kept_outputs(tmp_path: Path):
    runs = tmp_path / "runs"
    rollouts, _ = run_recipe(
        "r1_zero_rollouts", runs, "generate.problems=builtin:arithmetic?n=12&seed=5", "generate.template=arithmetic_r1",
        "generate.n=4", "generate.max_tokens=128", "generate.prompt_mode=auto", f"export.to={tmp_path / 'r1'}",
    )
    s = stages(rollouts)
    assert s["generate"]["samples"] == 48 and s["filter"]["kept"] + s["filter"]["rejected"] == 48
    kept = read_samples(runs / "r1_zero_rollouts", "curated")
    assert 0 < len(kept) == s["filter"]["kept"] and s["export"]["rows"] == len(kept)

    refined, _ = run_recipe("refine_r1_zero", runs, "generate.max_tokens=64", f"export.to={tmp_path / 'refined'}")
    inputs = read_samples(runs / "refine_r1_zero", "generated")
    # One refinement per kept rollout (n: 1), each prompt carrying that rollout's messy completion.
    assert sorted(r["problem_id"] for r in inputs) == sorted(r["id"] for r in kept)
    by_id = {r["id"]: r for r in kept}
    for r in inputs:
        assert r["template"] == "refine" and r["source"] == "run:r1_zero_rollouts"
        assert by_id[r["problem_id"]]["completion"].strip() in r["prompt"]
        assert json.loads(r["metadata"])["context"]["origin_problem_id"] == by_id[r["problem_id"]]["problem_id"]
    assert stages(refined)["filter"]["kept"] + stages(refined)["filter"]["rejected"] == len(inputs)


def test_cold_start_prompts_every_problem_with_both_templates(tmp_path: Path):
    runs = tmp_path / "runs"
    summary, _ = run_recipe(
        "cold_start", runs, "generate.problems=builtin:arithmetic?n=6&seed=8", "generate.n=2", "generate.max_tokens=48",
        "export=null",
    )
    s = stages(summary)
    rows = read_samples(runs / "cold_start", "generated")
    assert s["generate"]["samples"] == len(rows) == 6 * 2 * 2
    per = {}
    for r in rows:
        per.setdefault((r["problem_id"], r["template"]), []).append(r["sample_index"])
    assert {t for _, t in per} == {"few_shot_long_cot", "reflect_verify"} and len(per) == 12
    assert all(sorted(v) == [0, 1] for v in per.values())
    # The few-shot prompt carries its worked examples; the reflect prompt asks for verification.
    few = next(r["prompt"] for r in rows if r["template"] == "few_shot_long_cot")
    reflect = next(r["prompt"] for r in rows if r["template"] == "reflect_verify")
    assert few != reflect and len(few) > len(reflect)
    funnel = json.loads((runs / "cold_start" / "funnel.json").read_text())
    assert [st["step"] for st in funnel["steps"]][:4] == ["parsed", "complete", "format", "correct"]


def test_distill_recipe_killed_during_training_resumes_and_then_does_nothing(tmp_path: Path):
    runs = tmp_path / "runs"
    export_to = tmp_path / "distilled"
    sets = [
        "generate.problems=builtin:arithmetic?n=40&seed=11", "generate.template=arithmetic_r1", "generate.n=2",
        "generate.max_tokens=128", "train.sft.model=data/tiny-model", "train.sft.batch_size=8",
        "train.sft.grad_accum=1", "train.sft.max_len=256", "train.sft.max_steps=200", "train.sft.save_every=5",
        "train.sft.log_every=50",
        "train.sft.lr=1e-5", f"export.to={export_to}",
    ]
    args = ["run", "recipes/distill.yaml", "--json", *TINY, *[x for s in sets for x in ("--set", s)]]
    proc = subprocess.Popen([*FACTORY, *args], cwd=REPO, env=factory_env(runs), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    sft = runs / "distill" / "sft"
    deadline = time.time() + 420
    while time.time() < deadline and not list(sft.glob("checkpoint-*/trainer_state.pt")):
        if proc.poll() is not None:
            pytest.fail(f"the recipe exited with {proc.returncode} before its first checkpoint")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and every process it started
    proc.wait()
    assert not (sft / "model.safetensors").exists(), "the kill must land mid-training"
    assert (runs / "distill" / ".lock").exists()  # left behind by the killed run: stale, taken over below
    generated = len(done_shards(runs / "distill", "generated"))

    result = run_factory(args, runs, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    s = stages(json.loads(result.stdout.strip().splitlines()[-1]))
    assert s["generate"]["already_done"] and s["filter"]["already_done"] and generated == 1
    assert s["train sft"]["resumed_from"] and s["train sft"]["steps"] == 200
    assert (sft / "model.safetensors").exists() and s["export"]["rows"] == s["filter"]["kept"] > 0
    assert "resumed from" in "".join(p.read_text() for p in (runs / "distill" / "logs").glob("run-*.log"))
    # The student saw the non-reasoning data mixed in: a quarter of its examples.
    kept = s["filter"]["kept"]
    assert s["train sft"]["examples"] == kept + round(0.25 * kept / 0.75)

    again = run_factory(args, runs, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["already_done"] is True
