"""`factory run RECIPE.yaml`: every stage a recipe names, into one run folder, safe to repeat.

A recipe is YAML with a run name and stages: `generate` (the settings of `factory
generate`; `template` may list several), `filter` (a chain, plus optional `decontaminate`
benchmark files and `dedup` settings), `train` (`sft` and/or `grpo` settings, optional) and
`export` (a folder, optional). `--set generate.model=PATH` overrides any setting; `--set
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

import yaml

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.files import parse_yaml_value, read_yaml_file
from factory.core.sample import stable_hash
from factory.core.settings import check
from factory.executors import check_executor, check_ray_options

STAGES = ("generate", "filter", "train", "export")


def generate_settings() -> list[Any]:
    """A recipe's `generate:` keys: every GenerateConfig setting (sampling and backend options
    included) but where to run, which are the recipe's own `executor` and `ray`."""
    from factory.core.settings import flatten
    from factory.generate.runner import GenerateConfig

    return [leaf for leaf in flatten(GenerateConfig) if leaf.path[0] not in ("executor", "executor_options")]


FILTER_KEYS = {"chain", "decontaminate", "dedup"}


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


def _check_generate(g: dict[str, Any], path: Path) -> dict[str, Any]:
    """The generate settings, checked like every other setting (YAML reads 1e-5 as a string)."""
    from factory.core.settings import check_flat, from_flat
    from factory.generate.runner import GenerateConfig

    g = dict(g)
    template = g.get("template")
    if isinstance(template, list) and all(isinstance(t, str) for t in template):  # several templates, as a list
        g["template"] = ",".join(template)
    checked = check_flat(generate_settings(), g, f"{path}: generate")
    from_flat(GenerateConfig, checked, f"{path}: generate", generate_settings())  # backend options' own checks
    return checked


def load_recipe(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
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
    for kind in ("sft", "grpo"):
        if (recipe.get("train") or {}).get(kind) is not None and not isinstance(recipe["train"][kind], dict):
            raise FactoryError(f"{path}: `train.{kind}` must be a mapping of settings, not {recipe['train'][kind]!r}")
    if "generate" in recipe:
        recipe["generate"] = _check_generate(recipe["generate"], path)
    from factory.train.config import GRPOConfig, SFTConfig

    train = recipe.get("train") or {}
    if set(train) - {"sft", "grpo"}:
        raise FactoryError(f"{path}: `train` holds `sft` and/or `grpo` settings")
    for kind, cls in (("sft", SFTConfig), ("grpo", GRPOConfig)):
        if kind in train:
            train[kind] = check(cls, train[kind] or {}, f"{path}: train.{kind} (see `factory train {kind} --help`)")
    if "export" in recipe and not isinstance(recipe["export"].get("to"), str):
        raise FactoryError(f"{path}: `export` needs `to: FOLDER`")
    settings = recipe.get("filter") or {}
    bad = set(settings) - FILTER_KEYS
    if bad:
        raise FactoryError(f"{path}: unknown filter setting(s) {', '.join(sorted(bad))}; "
                           f"settings are {', '.join(sorted(FILTER_KEYS))}")
    decontaminate = settings.get("decontaminate")
    if decontaminate is not None and not isinstance(decontaminate, (str, list)):
        raise FactoryError(f"{path}: filter.decontaminate is a benchmark file or a list of them, not {decontaminate!r}")
    if not isinstance(settings.get("dedup", {}), (bool, dict)):
        raise FactoryError(f"{path}: filter.dedup is false or a mapping of dedup settings, not {settings['dedup']!r}")
    return recipe


def _first_global(steps: list[Any], name: Callable[[Any], str]) -> int:
    from factory.filter.steps import GLOBAL

    return next((i for i, s in enumerate(steps) if name(s) in GLOBAL), len(steps))


def recipe_chain(recipe: dict[str, Any], run_dir: Path) -> Any:
    """The recipe's chain; with `decontaminate` or `dedup` set, a copy of it written to RUN/chain.yaml."""
    from factory.filter.chain import load_chain

    settings = recipe["filter"] or {}
    base = load_chain(str(settings.get("chain", "cold_start")))
    if "decontaminate" not in settings and "dedup" not in settings:
        return base
    data = read_yaml_file(base.path)

    def name(step: Any) -> str:
        return step if isinstance(step, str) else next(iter(step))

    steps = data["steps"]
    if "dedup" in settings:  # replace the chain's dedup (false: no dedup)
        at = next((i for i, s in enumerate(steps) if name(s) == "dedup"), None)
        steps = [s for s in steps if name(s) != "dedup"]
        if settings["dedup"] is not False:
            dedup = {"dedup": settings["dedup"] if isinstance(settings["dedup"], dict) else {}}
            steps.insert(at if at is not None else _first_global(steps, name), dedup)
    if settings.get("decontaminate"):
        benchmarks = settings["decontaminate"]
        steps.insert(_first_global(steps, name), {"decontaminate": {
            "benchmarks": [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)}})
    data["steps"] = steps
    data["name"] = f"{base.name}+recipe"
    path = run_dir / "chain.yaml"
    shards.atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False).encode())
    return load_chain(str(path))


def generate_config(recipe: dict[str, Any]) -> Any:
    from factory.core.settings import from_flat
    from factory.generate.runner import GenerateConfig

    config = from_flat(GenerateConfig, recipe["generate"], "generate", generate_settings())
    config.executor = recipe.get("executor", "local")
    config.executor_options = dict(recipe.get("ray") or {})
    return config


def plan(recipe: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """What each stage would do now, without doing it (for --dry-run)."""
    from factory.generate.runner import plan_run

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
        steps.append({"stage": "filter", "chain": (recipe["filter"] or {}).get("chain", "cold_start"),
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
            from factory.generate.runner import run_generation

            r = run_generation(generate_config(recipe), run_dir, log=both)
            summary["stages"].append({"stage": "generate", "written": r.shards_written, "samples": r.samples,
                                      "errors": r.errors, "already_done": r.shards_written == 0})
        if "filter" in recipe:
            from factory.filter.chain import run_chain

            filtered = (run_dir / "funnel.json").exists() and len(shards.done_shards(run_dir, "curated")) == len(
                shards.done_shards(run_dir, "generated"))
            funnel = run_chain(run_dir, recipe_chain(recipe, run_dir), log=both, redo=redo_filter,
                               executor=recipe.get("executor", "local"), executor_options=dict(recipe.get("ray") or {}))
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
