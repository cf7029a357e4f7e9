"""`factory train sft|grpo`: flags generated from the config dataclasses, plus YAML recipes.

Every field of SFTConfig / GRPOConfig becomes a flag carrying the field's own help string,
so the command line cannot drift from the config; `--config recipe.yaml` supplies any of
them (top level, or under an `sft:` / `grpo:` key) and flags given on the command line win.
The configs are torch-free; the runners load only when a command runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
import yaml
from rich.markup import escape  # help is rich markup: a bare '[default: X]' would vanish as a tag

from factory.errors import FactoryError
from factory.train.config import coerce_settings


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


def _flag_type(annotation: Any) -> Any:
    """The field's type made optional: an absent flag (None) leaves the recipe or default."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return Optional[annotation]


# The same setting has the same flag in every command (`factory generate --n/--max-tokens/-m/-p/-t`);
# the field's own name stays as an alias, so earlier command lines keep working.
FLAGS = {
    "group_size": ("--n", "-n", "--group-size"),
    "max_new_tokens": ("--max-tokens", "--max-new-tokens"),
    "model": ("--model", "-m"),
    "problems": ("--problems", "-p"),
    "template": ("--template", "-t"),
    "out": ("--out", "-o"),
}


def _choices() -> dict[str, tuple[str, ...]]:
    """Settings with a fixed set of values: the help lists them and a typo is refused by the parser."""
    from factory.train.config import LOSS_TYPES, TRAINABLE

    return {"loss_type": tuple(LOSS_TYPES), "rollout_backend": ("auto", "vllm", "transformers"),
            "prompt_mode": ("auto", "chat", "base"), "train": TRAINABLE}


def add_config_command(app: typer.Typer, name: str, cls: type, run: Callable[[Any], None], help: str,
                       wrap: Callable) -> None:
    hints = typing.get_type_hints(cls)
    params = [inspect.Parameter(
        "config", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[Path], typer.Option("--config", help="YAML recipe with any of the settings below.")],
    )]
    choices = _choices()
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = Optional[typing.Literal[choices[f.name]]] if f.name in choices else _flag_type(hints[f.name])
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[kind,
                                 typer.Option(*FLAGS.get(f.name, ()), help=f"{f.metadata.get('help', '')} " + escape(f"[default: {default}]"),
                                              show_default=False)],
        ))

    def command(config: Path | None = None, **values: Any) -> None:
        settings = coerce_settings(cls, read_recipe(config, name), f"{config} (see `factory train {name} --help`)") if config else {}
        settings.update({k: v for k, v in values.items() if v is not None})
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
    add_config_command(app, "grpo", GRPOConfig, run_grpo, "GRPO with rule-based rewards from the shared verifiers.", wrap)
    return app
