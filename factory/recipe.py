"""`factory run RECIPE.yaml`: every stage a recipe names, into one run folder, safe to repeat.

A recipe is YAML with a run name and stages: `generate` (the settings of `factory
generate`; `template` may list several), `filter` (the settings of `factory filter`: a chain,
optional `decontaminate` benchmark files and `dedup` settings), `train` (`sft` and/or `grpo`
settings, optional) and `export` (a folder, optional). `--set generate.model=PATH` overrides any setting; `--set
train=null` drops a stage. Each stage is idempotent and resumable, so a scheduler can start the
same recipe again and again: after success it does nothing and says so; after a crash it
resumes. The whole recipe holds the run's lock, and logs go to RUN/logs/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.files import parse_yaml_value, read_yaml_file
from factory.core.sample import stable_hash
from factory.core.settings import Flat, check, check_flat, flatten, from_flat, validated
from factory.executors import check_executor, check_ray_options
from factory.filter.chain import run_chain
from factory.filter.config import FilterConfig, configured_chain
from factory.generate.runner import GenerateConfig, plan_run, run_generation

STAGES = ("generate", "filter", "train", "export")
# The stages whose settings are one config class; where they run is the recipe's own `executor` and `ray`.
CONFIGS: dict[str, type] = {"generate": GenerateConfig, "filter": FilterConfig}


def stage_settings(cls: type) -> list[Flat]:
    """A stage's recipe keys: every setting of its config (nested ones included) but where to run."""
    return [leaf for leaf in flatten(cls) if leaf.path[0] not in ("executor", "executor_options")]


def generate_settings() -> list[Flat]:
    return stage_settings(GenerateConfig)


def apply_overrides(recipe: dict[str, Any], overrides: list[str], where: Path) -> None:
    """`a.b=VALUE` sets recipe[a][b] (VALUE read as YAML); `STAGE=null` removes a stage."""
    for stage in STAGES:  # `filter:` with nothing under it is a stage with default settings
        if stage in recipe and recipe[stage] is None:
            recipe[stage] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FactoryError(f"bad --set '{item}': write KEY.PATH=VALUE, e.g. --set generate.model=data/tiny-model")
        *parents, leaf = key.split(".")
        node = recipe
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
            if node is None and part in STAGES:
                node = recipe[part] = {}
            if not isinstance(node, dict):
                raise FactoryError(f"bad --set '{item}': {where} has no mapping at '{part}'")
        node[leaf] = parse_yaml_value(value, f"--set {key}")
        if not parents and leaf in STAGES and node[leaf] is None:
            del node[leaf]


def load_recipe(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The recipe, every stage's settings checked by its own settings class."""
    if not path.is_file():
        raise FactoryError(f"{path}: no such recipe; the shipped ones are in recipes/")
    recipe = read_yaml_file(path) or {}
    if isinstance(recipe, dict):
        apply_overrides(recipe, overrides or [], path)
    if not isinstance(recipe, dict) or not recipe.get("run"):
        raise FactoryError(f"{path}: a recipe needs `run: NAME` and stages among {', '.join(STAGES)}")
    if not shards.RUN_NAME.fullmatch(str(recipe["run"])):  # a shared recipe must not write outside the runs folder
        raise FactoryError(f"{path}: run {str(recipe['run'])!r} is not a run name (letters, digits, '.', '_', '-'); "
                           "choose where runs live with FACTORY_RUNS_DIR")
    unknown = set(recipe) - {"run", "name", "description", "executor", "ray", *STAGES}
    if unknown:
        raise FactoryError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; stages are {', '.join(STAGES)}")
    if not any(stage in recipe for stage in STAGES):
        raise FactoryError(f"{path}: the recipe names no stage; add one of {', '.join(STAGES)}")
    try:
        check_executor(recipe.get("executor", "local"))
    except FactoryError as e:
        raise FactoryError(f"{path}: {e}") from None
    if recipe.get("ray") is not None:
        # Checked even when the recipe runs locally (a typo is caught early); only the given ones are kept:
        # Ray picks the rest.
        recipe["ray"] = check_ray_options(recipe["ray"], f"{path}: ray")
    for stage in STAGES:
        if stage in recipe and not isinstance(recipe[stage], dict):
            raise FactoryError(f"{path}: `{stage}` must be a mapping of settings, not {recipe[stage]!r}")
    template = recipe.get("generate", {}).get("template")
    if isinstance(template, list) and all(isinstance(t, str) for t in template):  # several templates, as a list
        recipe["generate"]["template"] = ",".join(template)
    for stage, cls in CONFIGS.items():
        if stage in recipe:  # checked like every other setting (YAML reads 1e-5 as a string)
            where = f"{path}: {stage}"
            recipe[stage] = check_flat(stage_settings(cls), recipe[stage], where)
            validated(stage_config(recipe, stage, where), where)
    _check_train(recipe.get("train"), path)
    if "export" in recipe and not isinstance(recipe["export"].get("to"), str):
        raise FactoryError(f"{path}: `export` needs `to: FOLDER`")
    return recipe


def _check_train(train: dict[str, Any] | None, path: Path) -> None:
    from factory.train.config import GRPOConfig, SFTConfig

    train = train or {}
    if set(train) - {"sft", "grpo"}:
        raise FactoryError(f"{path}: `train` holds `sft` and/or `grpo` settings")
    for kind, cls in (("sft", SFTConfig), ("grpo", GRPOConfig)):
        if train.get(kind) is not None and not isinstance(train[kind], dict):
            raise FactoryError(f"{path}: `train.{kind}` must be a mapping of settings, not {train[kind]!r}")
        if kind in train:
            train[kind] = check(cls, train[kind] or {}, f"{path}: train.{kind} (see `factory train {kind} --help`)")


def stage_config(recipe: dict[str, Any], stage: str, where: str | None = None) -> Any:
    """The stage's config from its recipe settings, run where the recipe says."""
    cls = CONFIGS[stage]
    config = from_flat(cls, recipe[stage], where or stage, stage_settings(cls))
    config.executor = recipe.get("executor", "local")
    config.executor_options = dict(recipe.get("ray") or {})
    return config


def generate_config(recipe: dict[str, Any]) -> GenerateConfig:
    return stage_config(recipe, "generate")


def plan(recipe: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """What each stage would do now, without doing it (for --dry-run)."""
    steps = []
    if "generate" in recipe:
        config = generate_config(recipe)
        p = plan_run(config)
        done = sum(shards.is_done(shards.shard_path(run_dir, "generated", k)) for k in range(p.num_shards))
        steps.append({"stage": "generate", "problems": len(p.problems), "templates": [t.name for t in p.templates],
                      "samples": len(p.items) * config.sampling.n,
                      "shards": p.num_shards, "shards_done": done, "executor": config.executor})
    if "filter" in recipe:
        gen = len(shards.done_shards(run_dir, "generated"))
        cur = len(shards.done_shards(run_dir, "curated"))
        steps.append({"stage": "filter", "chain": stage_config(recipe, "filter").chain,
                      "shards_done": cur, "shards": gen, "funnel": (run_dir / "funnel.json").exists(),
                      "executor": recipe.get("executor", "local")})
    for kind in ("sft", "grpo"):
        if kind in (recipe.get("train") or {}):
            out = Path((recipe["train"][kind] or {}).get("out", run_dir / kind))
            done = (run_dir / "logs" / f"train-{kind}.done").exists() and (out / "config.json").exists()
            steps.append({"stage": f"train {kind}", "out": str(out), "done": done})
    if "export" in recipe:
        steps.append({"stage": "export", "to": str(recipe["export"].get("to")),
                      "done": (run_dir / "logs" / "export.done").exists()})
    return steps


def _inputs_identity(settings: dict[str, Any]) -> dict[str, Any]:
    """What a stage reads besides its settings: a retrained model or an edited data file is new work."""
    from factory.core.sample import model_digest

    out: dict[str, Any] = {"model": model_digest(str(settings.get("model", "")))}
    for key in ("data", "secondary_data"):  # data files; a run's curated data is keyed by its funnel
        value = settings.get(key)
        if isinstance(value, str) and Path(value).is_file():
            stat = Path(value).stat()
            out[key] = (stat.st_size, stat.st_mtime_ns)
    return out


def _once(
    run_dir: Path, stage: str, settings: dict[str, Any], output: Path, log: Callable[[str], None],
    work: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Run a stage unless it already made `output` from these settings, inputs and curated data."""
    funnel = run_dir / "funnel.json"
    key = stable_hash({"settings": settings, "inputs": _inputs_identity(settings),
                       "funnel": funnel.read_text() if funnel.exists() else None})
    marker = run_dir / "logs" / f"{stage.replace(' ', '-')}.done"
    if output.exists() and marker.exists() and json.loads(marker.read_text()).get("key") == key:
        log(f"{stage}: already done with these settings and inputs; nothing to do")
        return {"stage": stage, "already_done": True}
    result = {k: v for k, v in work().items()
              if k in ("steps", "out", "resumed_from", "examples", "rows", "files", "path")}
    shards.atomic_write_json(marker, {"key": key, **result})
    return {"stage": stage, **result, "already_done": False}


def _train(kind: str, settings: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from factory.train.config import GRPOConfig, SFTConfig

    if kind == "sft":
        from factory.train.sft import run_sft

        return run_sft(SFTConfig(**settings), log=log)
    from factory.train.grpo import run_grpo

    return run_grpo(GRPOConfig(**settings), log=log)


def run_recipe(recipe: dict[str, Any], log: Callable[[str], None], redo_filter: bool = False) -> dict[str, Any]:
    from factory.core.lock import run_lock

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
            r = run_generation(generate_config(recipe), run_dir, log=both)
            summary["stages"].append({"stage": "generate", "written": r.shards_written, "samples": r.samples,
                                      "errors": r.errors, "already_done": r.shards_written == 0})
        if "filter" in recipe:
            filtered = (run_dir / "funnel.json").exists() and len(shards.done_shards(run_dir, "curated")) == len(
                shards.done_shards(run_dir, "generated"))
            config = stage_config(recipe, "filter")
            funnel = run_chain(run_dir, configured_chain(config, run_dir), workers=config.workers, log=both,
                               redo=redo_filter, executor=config.executor, executor_options=config.executor_options)
            from factory.inspect.report import write_report

            report = write_report(run_dir)  # cheap (DuckDB aggregates), so always current
            summary["stages"].append({"stage": "filter", "kept": funnel["kept"], "rejected": funnel["rejected"],
                                      "report": str(report), "already_done": filtered})
        for kind in ("sft", "grpo"):
            if kind not in (recipe.get("train") or {}):
                continue
            settings = dict(recipe["train"][kind] or {})
            settings.setdefault("out", str(run_dir / kind))
            if kind == "sft":
                settings.setdefault("data", str(run_dir))
            output = Path(settings["out"]) / "config.json"  # written with the final model only
            summary["stages"].append(_once(run_dir, f"train {kind}", settings, output, both,
                                           lambda kind=kind, settings=settings: _train(kind, settings, both)))
        if "export" in recipe:
            from factory.hub import export_run

            to = Path(str(recipe["export"]["to"]))
            summary["stages"].append(_once(run_dir, "export", {"to": str(to)}, to / "README.md", both,
                                           lambda: export_run(run_dir, to)))
        summary["errors"] = sum(s.get("errors", 0) for s in summary["stages"])
        summary["already_done"] = all(s.get("already_done") for s in summary["stages"])
        if summary["already_done"]:
            both(f"nothing to do: every stage of {recipe.get('name') or recipe['run']} is already done")
        (run_dir / "logs" / "last-summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
