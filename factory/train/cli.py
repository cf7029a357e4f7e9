"""`factory train sft|grpo`: flags generated from the config dataclasses, plus YAML recipes.

Every field of SFTConfig / GRPOConfig is a flag with the field's own help string, so the
command line can never drift from the config; `--config recipe.yaml` supplies any of them
and flags given on the command line win.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Callable

import click
import yaml

from factory.errors import FactoryError


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is_flag) for a dataclass field annotation."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else str
    if annotation is bool:
        return bool, True
    return {int: int, float: float}.get(annotation, str), False


def read_recipe(path: str, section: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FactoryError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise FactoryError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FactoryError(f"{path}: a recipe is a mapping of settings")
    return data.get(section, data) if isinstance(data.get(section), dict) else data


def config_command(name: str, cls: type, run: Callable[[Any], Any], help: str, wrap: Callable) -> click.Command:
    hints = typing.get_type_hints(cls)
    params: list[click.Parameter] = [
        click.Option(["--config"], type=click.Path(), default=None, help="YAML recipe with any of the settings below.")
    ]
    for f in dataclasses.fields(cls):
        ctype, is_flag = _click_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{f.name.replace('_', '-')}"] if is_flag else [flag]
        default = f.default if f.default is not dataclasses.MISSING else None
        params.append(click.Option(decls, type=None if is_flag else ctype, default=None,
                                   help=f"{f.metadata.get('help', '')} [default: {default}]", show_default=False))

    @wrap
    def callback(config: str | None, **values: Any) -> Any:
        settings = read_recipe(config, name) if config else {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(settings) - known
        if unknown:
            raise FactoryError(f"{config}: unknown setting(s) {', '.join(sorted(unknown))}; see `factory train {name} --help`")
        settings.update({k: v for k, v in values.items() if v is not None})
        try:
            cfg = cls(**settings)
        except TypeError as e:
            raise FactoryError(f"bad settings for train {name}: {e}") from None
        return run(cfg)

    return click.Command(name, params=params, callback=callback, help=help)


class _TrainGroup(click.Group):
    """Builds `sft` and `grpo` only when asked for, so other commands never import torch."""

    def __init__(self, wrap: Callable, echo: Callable[[str], None]):
        super().__init__("train", help="Train on curated data: SFT (cold start, distillation) and GRPO.")
        self.wrap, self.echo = wrap, echo

    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["grpo", "sft"]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        echo = self.echo
        if name == "sft":
            from factory.train.sft import SFTConfig, run_sft

            def run(cfg: Any) -> None:
                echo(f"done: {run_sft(cfg, log=echo)}")

            return config_command("sft", SFTConfig, run, "Supervised fine-tuning on curated samples (loss on the assistant part only).", self.wrap)
        if name == "grpo":
            from factory.train.grpo import GRPOConfig, run_grpo

            def run(cfg: Any) -> None:
                summary = run_grpo(cfg, log=echo)
                last = summary["history"][-1] if summary["history"] else {}
                echo(f"done: {summary['steps']} steps -> {summary['out']}; last reward {last.get('reward', float('nan')):.3f}")

            return config_command("grpo", GRPOConfig, run, "GRPO with rule-based rewards from the shared verifiers.", self.wrap)
        return None


def train_group(wrap: Callable, echo: Callable[[str], None]) -> click.Group:
    return _TrainGroup(wrap, echo)
