"""`factory train sft|grpo`: flags generated from the config dataclasses, plus YAML recipes.

Every field of SFTConfig / GRPOConfig becomes a flag carrying the field's own help string and
flag names (factory.cli.flags), so the command line cannot drift from the config; `--config recipe.yaml`
supplies any of them (top level, or under an `sft:` / `grpo:` key) and flags given on the command line win.
The configs are torch-free; the runners load only when a command runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from factory.cli.flags import given, parameters
from factory.core.errors import FactoryError
from factory.core.settings import check, flatten


def read_recipe(path: Path, section: str) -> dict[str, Any]:
    if not path.is_file():
        raise FactoryError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise FactoryError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FactoryError(f"{path}: a recipe is a mapping of settings")
    return dict(data[section]) if isinstance(data.get(section), dict) else data


def add_config_command(app: typer.Typer, name: str, cls: type, run: Callable[[Any], None], help: str,
                       wrap: Callable) -> None:
    leaves = flatten(cls)
    params = [inspect.Parameter(
        "config", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Path | None, typer.Option("--config", help="YAML recipe with any of the settings below.")],
    ), *parameters(leaves)]

    def command(config: Path | None = None, **values: Any) -> None:
        settings = (check(cls, read_recipe(config, name), f"{config} (see `factory train {name} --help`)")
                    if config else {})
        settings.update(given(leaves, values))
        try:
            cfg = cls(**settings)
        except TypeError as e:
            raise FactoryError(f"bad settings for `factory train {name}`: {e}") from None
        run(cfg)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help
    app.command(name, help=help)(wrap(command))


def train_app(wrap: Callable, echo: Callable[[str], None]) -> typer.Typer:
    from factory.train.config import GRPOConfig, SFTConfig

    app = typer.Typer(help="Train on curated data: SFT (cold start, distillation) and GRPO.", no_args_is_help=True,
                      context_settings={"help_option_names": ["-h", "--help"]})

    def run_sft(cfg: Any) -> None:
        from factory.train.sft import run_sft as _run

        echo(f"done: {_run(cfg, log=echo)}")

    def run_grpo(cfg: Any) -> None:
        from factory.train.grpo import run_grpo as _run

        summary = _run(cfg, log=echo)
        last = summary["history"][-1] if summary["history"] else {}
        echo(f"done: {summary['steps']} steps -> {summary['out']}; last reward {last.get('reward', float('nan')):.3f}")
        evals = [r for r in summary["history"] if "eval/pass@1" in r]
        if len(evals) > 1:
            first, end = evals[0], evals[-1]
            echo(f"held-out pass@1 {first['eval/pass@1']:.3f} (step {first['step']}) -> {end['eval/pass@1']:.3f} "
                 f"(step {end['step']}), standard error {end['eval/pass@1_se']:.3f}")

    add_config_command(app, "sft", SFTConfig, run_sft,
                       "Supervised fine-tuning on curated samples (loss on the assistant part only).", wrap)
    add_config_command(app, "grpo", GRPOConfig, run_grpo,
                       "GRPO with rule-based rewards from the shared verifiers.", wrap)
    return app
