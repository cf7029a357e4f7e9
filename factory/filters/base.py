"""A filter is one small object: settings from YAML, one method over one sample.

`screen(sample)` returns None to keep the sample, or a Reject with a snake_case reason
(and optionally scores). The chain runner, not the filter, counts in / kept / rejected
per step and reason, and writes the rejects. A filter that needs to see a whole shard's
samples first (majority vote) overrides `prepare`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from factory.errors import FactoryError


@dataclass(frozen=True)
class Reject:
    reason: str
    detail: str | None = None


@dataclass
class Outcome:
    """What a step says of one sample: rejected or not, plus scores to keep either way."""

    reject: Reject | None = None
    scores: dict[str, float] = field(default_factory=dict)


def setting(default: Any, help: str) -> Any:
    """A filter setting with its help string (shown in errors and `factory chains`)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


class Filter:
    """Base of per-sample filters; subclasses are dataclasses of their settings."""

    name: ClassVar[str]
    description: ClassVar[str]
    reasons: ClassVar[tuple[str, ...]] = ()

    def prepare(self, samples: list[dict[str, Any]]) -> None:
        """Called once per shard with the samples that enter this step."""

    def screen(self, sample: dict[str, Any]) -> Outcome | Reject | None:
        raise NotImplementedError


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (inner,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(inner is Any or _type_ok(v, inner) for v in value)
    if annotation is Any:
        return True
    return isinstance(value, annotation)


def describe_settings(cls: type) -> str:
    hints = typing.get_type_hints(cls)
    return "; ".join(
        f"{f.name} ({_type_name(hints[f.name])}): {f.metadata.get('help', '')}" for f in dataclasses.fields(cls)
    ) or "no settings"


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def build(cls: type, settings: dict[str, Any] | None, where: str) -> Any:
    """Instantiate a step from YAML settings, refusing unknown names and wrong types."""
    settings = settings or {}
    if not isinstance(settings, dict):
        raise FactoryError(f"{where}: settings must be a mapping, got {type(settings).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in settings.items():
        if key not in names:
            raise FactoryError(
                f"{where}: unknown setting '{key}' for step '{cls.name}'; its settings are: {describe_settings(cls)}"
            )
        if not _type_ok(value, hints[key]):
            raise FactoryError(
                f"{where}: setting '{key}' of step '{cls.name}' must be {_type_name(hints[key])}, got {value!r}"
            )
    obj = cls(**settings)
    validate = getattr(obj, "validate", None)
    if validate:
        problem = validate()
        if problem:
            raise FactoryError(f"{where}: step '{cls.name}': {problem}")
    return obj
