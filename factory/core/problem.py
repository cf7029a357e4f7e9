"""A problem to prompt for: what the sources make, the templates render and the scorers read.

Its own module so the problem sources (including the reasoning-gym one, which `sources` loads on
demand) can all build it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problem:
    problem_id: str
    problem: str
    answer: str | None = None
    tests: str | None = None  # JSON list
    task: str = "math"
    source: str = ""
    # Extra values the templates may use (e.g. `completion` for refine) and keep in metadata.
    context: dict[str, Any] = field(default_factory=dict)
