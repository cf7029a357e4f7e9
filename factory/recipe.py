"""`factory run RECIPE.yaml`: every stage a recipe names, into one run folder, safe to repeat.

A recipe is YAML with a run name and stages: `generate` (the settings of `factory
generate`), `filter` (a chain), `train` (`sft` and/or `grpo` settings, optional) and `export`
(a folder, optional). Each stage is idempotent and resumable, so a scheduler can start the
same recipe again and again: after success it does nothing and says so; after a crash it
resumes. The whole recipe holds the run's lock, and logs go to RUN/logs/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from factory import shards
from factory.errors import FactoryError

STAGES = ("generate", "filter", "train", "export")
GENERATE_KEYS = {"problems", "model", "template", "backend", "n", "temperature", "top_p", "top_k", "max_tokens",
                 "seed", "seed_mode", "prompt_mode", "map", "limit", "shard_size", "engine_args", "base_url",
                 "concurrency"}


def load_recipe(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FactoryError(f"{path}: no such recipe; the shipped ones are in recipes/")
    try:
        recipe = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise FactoryError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(recipe, dict) or not recipe.get("run"):
        raise FactoryError(f"{path}: a recipe needs `run: NAME` and stages among {', '.join(STAGES)}")
    unknown = set(recipe) - {"run", "name", "description", *STAGES}
    if unknown:
        raise FactoryError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; stages are {', '.join(STAGES)}")
    bad = set(recipe.get("generate") or {}) - GENERATE_KEYS
    if bad:
        raise FactoryError(f"{path}: unknown generate setting(s) {', '.join(sorted(bad))}; settings are {', '.join(sorted(GENERATE_KEYS))}")
    return recipe


def generate_config(recipe: dict[str, Any]) -> Any:
    from factory.generate.runner import GenerateConfig
    from factory.sample import Sampling

    g = dict(recipe["generate"])
    sampling = Sampling(**{f.name: g.pop(f.name) for f in fields(Sampling) if f.name in g})
    return GenerateConfig(
        problems=g.pop("problems", "builtin:arithmetic"), model=str(g.pop("model", "")), sampling=sampling,
        mapping=g.pop("map", {}), backend_options={k: g.pop(k) for k in ("base_url", "concurrency") if k in g}
        | ({"engine_args": g.pop("engine_args")} if "engine_args" in g else {}),
        **g,
    )


def plan(recipe: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """What each stage would do now, without doing it (for --dry-run)."""
    from factory.generate.runner import plan_run

    steps = []
    if "generate" in recipe:
        config = generate_config(recipe)
        p = plan_run(config)
        done = sum(shards.is_done(shards.shard_path(run_dir, "generated", k)) for k in range(p.num_shards))
        steps.append({"stage": "generate", "problems": len(p.problems), "samples": len(p.problems) * config.sampling.n,
                      "shards": p.num_shards, "shards_done": done})
    if "filter" in recipe:
        gen = len(shards.done_shards(run_dir, "generated"))
        cur = len(shards.done_shards(run_dir, "curated"))
        steps.append({"stage": "filter", "chain": recipe["filter"].get("chain", "cold_start"),
                      "shards_done": cur, "shards": gen, "funnel": (run_dir / "funnel.json").exists()})
    for kind in ("sft", "grpo"):
        if kind in (recipe.get("train") or {}):
            out = Path(recipe["train"][kind].get("out", run_dir / kind))
            steps.append({"stage": f"train {kind}", "out": str(out), "done": (out / "model.safetensors").exists()})
    if "export" in recipe:
        steps.append({"stage": "export", "to": str(recipe["export"].get("to")),
                      "done": (Path(str(recipe["export"].get("to"))) / "README.md").exists()})
    return steps


def run_recipe(recipe: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from factory.lock import run_lock

    run_dir = shards.resolve_run(str(recipe["run"]))
    summary: dict[str, Any] = {"run": str(run_dir), "stages": []}
    with run_lock(run_dir):
        logfile = run_dir / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)

        def both(message: str) -> None:
            with logfile.open("a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {message}\n")
            log(message)

        if "generate" in recipe:
            from factory.generate.runner import run_generation

            r = run_generation(generate_config(recipe), run_dir, log=both)
            summary["stages"].append({"stage": "generate", "written": r.shards_written, "samples": r.samples,
                                      "errors": r.errors, "already_done": r.shards_written == 0})
        if "filter" in recipe:
            from factory.chain import load_chain, run_chain

            funnel = run_chain(run_dir, load_chain(recipe["filter"].get("chain", "cold_start")), log=both)
            summary["stages"].append({"stage": "filter", "kept": funnel["kept"], "rejected": funnel["rejected"]})
        for kind in ("sft", "grpo"):
            settings = dict((recipe.get("train") or {}).get(kind) or {})
            if not settings and kind not in (recipe.get("train") or {}):
                continue
            from factory.train.config import GRPOConfig, SFTConfig

            settings.setdefault("out", str(run_dir / kind))
            if kind == "sft":
                from factory.train.sft import run_sft

                settings.setdefault("data", str(run_dir))
                result = run_sft(SFTConfig(**settings), log=both)
            else:
                from factory.train.grpo import run_grpo

                result = {k: v for k, v in run_grpo(GRPOConfig(**settings), log=both).items() if k != "history"}
            summary["stages"].append({"stage": f"train {kind}", **{k: v for k, v in result.items() if k in ("steps", "out")}})
        if "export" in recipe:
            from factory.hub import export_run

            result = export_run(run_dir, Path(str(recipe["export"]["to"])))
            summary["stages"].append({"stage": "export", **result})
        summary["errors"] = sum(s.get("errors", 0) for s in summary["stages"])
        (run_dir / "logs" / "last-summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
