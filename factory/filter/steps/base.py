"""A filter is one small object: settings from YAML, one method over one sample.

`screen(sample)` returns None to keep the sample, or a Reject with a snake_case reason
(and optionally scores). The chain runner, not the filter, counts in / kept / rejected
per step and reason, and writes the rejects. A filter that needs to see a whole shard's
samples first (majority vote) overrides `prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from factory.core.settings import build as settings_build
from factory.core.settings import setting  # noqa: F401  (filter plugins declare their settings with it, from here)


@dataclass(frozen=True)
class Reject:
    reason: str
    detail: str | None = None


@dataclass
class Outcome:
    """What a step says of one sample: rejected or not, plus scores to keep either way."""

    reject: Reject | None = None
    scores: dict[str, float] = field(default_factory=dict)


class Filter:
    """Base of per-sample filters; subclasses are dataclasses of their settings."""

    name: ClassVar[str]
    description: ClassVar[str]
    reasons: ClassVar[tuple[str, ...]] = ()

    def prepare(self, samples: list[dict[str, Any]]) -> None:
        """Called once per shard with the samples that enter this step."""

    def screen(self, sample: dict[str, Any]) -> Outcome | Reject | None:
        raise NotImplementedError


def build(cls: type, settings: dict[str, Any] | None, where: str) -> Any:
    """A step from its YAML settings: unknown names, wrong types and its own `validate()` refused."""
    return settings_build(cls, settings, f"{where} ({cls.name})")
