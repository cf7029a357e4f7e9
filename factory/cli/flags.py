"""Command-line flags made from settings dataclasses, so a flag cannot drift from its setting.

Each leaf of `settings.flatten(cls)` becomes an option with the field's flags (or one named after
it), help and type; its default is None, so an absent flag leaves the recipe's value or the field's
default, and the help shows that default. A dict setting is a repeated KEY=VALUE flag (values read
as YAML unless the dict holds text). `with_settings` adds such options to a typer command and hands
the command the flags that were given, as one dict keyed like a recipe.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape  # help is rich markup: a bare '[default: X]' would vanish as a tag

from factory.core.errors import FactoryError
from factory.core.settings import Flat, default_of, help_of, is_union


def _present(annotation: Any) -> Any:
    """`int | None` -> int: on the command line, an absent flag is the None."""
    if is_union(annotation):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _flag_type(annotation: Any) -> Any:
    """The setting's type as the flag parses it, made optional (None: the flag was not given)."""
    annotation = _present(annotation)
    if typing.get_origin(annotation) is dict:
        return Optional[list[str]]  # noqa: UP045  (types built at run time stay typing.Union objects)
    return Optional[annotation]  # noqa: UP045


def flags_of(leaf: Flat) -> tuple[str, ...]:
    return leaf.field.metadata.get("flags") or ("--" + leaf.key.replace("_", "-"),)


def _option_names(leaf: Flat) -> tuple[str, ...]:
    """The flags as typer takes them: a true-or-false setting gets its --no- form, or it could only be turned on."""
    first, *rest = flags_of(leaf)
    if _present(leaf.hint) is bool:
        first = f"{first}/--no-{first.removeprefix('--')}"
    return (first, *rest)


def parameters(leaves: Iterable[Flat], defaults: dict[str, Any] | None = None,
               helps: dict[str, str] | None = None) -> list[inspect.Parameter]:
    """Keyword parameters for typer; `defaults` and `helps` override a leaf's, for a command whose
    defaults differ on purpose (`factory eval` samples like GRPO, not like `generate`)."""
    defaults, helps = defaults or {}, helps or {}
    params = []
    for leaf in leaves:
        default = defaults.get(leaf.key, default_of(leaf.field))
        text = f"{helps.get(leaf.key, help_of(leaf.field))} " + escape(f"[default: {default}]")
        params.append(inspect.Parameter(
            leaf.key, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[_flag_type(leaf.hint), typer.Option(
                *_option_names(leaf), help=text, show_default=False,
                metavar="KEY=VALUE" if typing.get_origin(_present(leaf.hint)) is dict else None)],
        ))
    return params


def _assignments(items: list[str], leaf: Flat) -> dict[str, Any]:
    from factory.core.files import parse_yaml_value

    flag = flags_of(leaf)[0]
    text = typing.get_args(_present(leaf.hint))[1:] == (str,)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            example = "problem=question" if text else "max_model_len=4096"
            raise FactoryError(f"bad {flag} '{item}': write KEY=VALUE, e.g. {flag} {example}")
        out[key.replace("-", "_") if not text else key] = value if text else parse_yaml_value(value, f"{flag} {key}")
    return out


def given(leaves: Iterable[Flat], values: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flags given on the command line (plus the command's own defaults), dicts parsed from KEY=VALUE."""
    out = dict(defaults or {})
    for leaf in leaves:
        value = values.get(leaf.key)
        if value is None:
            continue
        out[leaf.key] = _assignments(value, leaf) if typing.get_origin(_present(leaf.hint)) is dict else value
    return out


def with_settings(leaves: list[Flat], defaults: dict[str, Any] | None = None,
                  helps: dict[str, str] | None = None) -> Callable[[Callable], Callable]:
    """Add the leaves' flags to a command: its own parameters stay, and its `settings` parameter
    receives the given flags as a dict keyed like a recipe's settings."""

    def decorate(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "settings"]
        names = {leaf.key for leaf in leaves}

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            mine = {k: v for k, v in values.items() if k not in names}
            return fn(**mine, settings=given(leaves, values, defaults))

        signature = inspect.Signature([*own, *parameters(leaves, defaults, helps)])
        command.__signature__ = signature  # type: ignore[attr-defined]
        return command

    return decorate
