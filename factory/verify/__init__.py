"""Answer checkers shared by the `correct` filter, GRPO rewards and evaluation.

Every checker returns a Verdict, so the three never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None  # snake_case reason when not ok (e.g. "wrong_answer", "timeout")
    detail: str | None = None  # free text for people: the failing test, the parsed values...
