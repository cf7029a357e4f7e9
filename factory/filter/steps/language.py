"""`language`: R1's language consistency (share of the reasoning's words in the target
language) above a threshold, and no foreign-language stretch inside the text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from factory.core.errors import FactoryError
from factory.core.settings import setting
from factory.filter.lang import detect_language, language_stats
from factory.filter.steps.base import Filter, Outcome, Reject


@dataclass
class Language(Filter):
    name = "language"
    description = ("Share of the reasoning's words in the target language (the problem's, unless set) above a "
                   "threshold; no mixed-language sentences.")
    reasons = ("language_mismatch", "mixed_language")
    target: str | None = setting(None, "language code to require (en, zh, ru...); default: the problem's language")
    min_share: float = setting(0.95, "smallest share of words in the target language")
    reject_mixed: bool = setting(True, "reject texts with a sentence or run of words in another language")
    field: Literal["reasoning", "completion"] = setting("reasoning", "which column to check: reasoning or completion")

    def validate(self) -> None:
        if not 0 <= self.min_share <= 1:
            raise FactoryError("min_share must be in [0, 1]")

    def screen(self, s: dict[str, Any]) -> Outcome:
        target = self.target or detect_language(s.get("problem") or "") or "en"
        stats = language_stats(s.get(self.field) or "", target)
        scores = {"language_share": round(stats.share, 4)}
        if stats.share < self.min_share:
            return Outcome(Reject("language_mismatch", f"{stats.share:.0%} {target} (text is {stats.language})"),
                           scores)
        if self.reject_mixed and stats.mixed:
            return Outcome(Reject("mixed_language", stats.detail), scores)
        return Outcome(None, scores)
