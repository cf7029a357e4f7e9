"""`readability`: no walls of text, no code blocks in non-code reasoning, no rambling loops."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from factory.core.settings import setting
from factory.filter.steps.base import Filter, Reject

_WORD = re.compile(r"\w+", re.U)


def repeated_ngram_share(text: str, n: int) -> float:
    """Share of word n-gram occurrences that repeat an earlier one: high for looping text."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


@dataclass
class Readability(Filter):
    name = "readability"
    description = ("No over-long paragraphs, no code blocks in the reasoning of non-code tasks, "
                   "bounded repeated n-grams.")
    reasons = ("long_paragraph", "code_block", "repetitive")
    max_paragraph_chars: int = setting(2000, "longest paragraph (text between blank lines), in characters")
    allow_code_blocks: bool = setting(False, "allow ``` code blocks in the reasoning of non-code tasks")
    ngram: int = setting(8, "n of the word n-grams counted for repetition")
    max_repeated_ngram_share: float = setting(0.3, "largest share of n-grams that repeat an earlier one")

    def screen(self, s: dict[str, Any]) -> Reject | None:
        reasoning = s.get("reasoning") or ""
        longest = max((len(p) for p in re.split(r"\n\s*\n", reasoning)), default=0)
        if longest > self.max_paragraph_chars:
            return Reject("long_paragraph", f"a paragraph of {longest} characters")
        if not self.allow_code_blocks and "```" in reasoning and not str(s.get("task") or "").startswith("code"):
            return Reject("code_block", "a ``` block in the reasoning of a non-code task")
        share = repeated_ngram_share(reasoning, self.ngram)
        if share > self.max_repeated_ngram_share:
            return Reject("repetitive", f"{share:.0%} of {self.ngram}-grams repeat")
        return None
