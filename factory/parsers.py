"""One parser per output format: pull `reasoning` and `final` out of a completion.

Each returns a Parsed with an `error` saying why it could not, instead of guessing. The
parsers are lenient only where the format is unambiguous (whitespace, the case of tags);
strict format checks (exactly one block each, nothing outside) belong to the filters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Parsed:
    reasoning: str | None
    final: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_THINK = re.compile(r"<think>(.*?)</think>", re.S | re.I)
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)  # also read by the GRPO rewards


def parse_think_answer(text: str) -> Parsed:
    """`<think> reasoning </think> <answer> final </answer>` (the R1-Zero format)."""
    think = _THINK.search(text)
    if think is None:
        # A prompt may prefill `<think>`; then only the closing tag is in the completion.
        if "</think>" in text.lower() and "<think>" not in text.lower():
            reasoning = text[: text.lower().index("</think>")]
            rest = text[text.lower().index("</think>") + len("</think>") :]
        else:
            reason = "unclosed_think" if "<think>" in text.lower() else "no_think"
            return Parsed(None, _answer_only(text), reason)
    else:
        reasoning, rest = think.group(1), text[think.end() :]
    answers = ANSWER_TAG.findall(rest)
    if not answers:
        reason = "unclosed_answer" if "<answer>" in rest.lower() else "no_answer"
        return Parsed(reasoning.strip(), None, reason)
    return Parsed(reasoning.strip(), answers[-1].strip())


def _answer_only(text: str) -> str | None:
    answers = ANSWER_TAG.findall(text)
    return answers[-1].strip() if answers else None


_SPECIAL = re.compile(r"\|\s*special_token\s*\|", re.I)
_SUMMARY_ANSWER = re.compile(
    r"(?:final answer|answer)\s*(?:is|:|=)\s*(.+?)\s*(?:\.\s*)?$", re.I | re.S
)
_BOXED = re.compile(r"\\boxed\{")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`, with nested braces balanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def answer_from_summary(summary: str) -> str:
    """The answer a summary states: `\\boxed{}` first, then "the answer is X", else the summary."""
    boxed = last_boxed(summary)
    if boxed is not None:
        return boxed
    body = summary.strip()
    body = re.sub(r"^summary\s*:\s*", "", body, flags=re.I)
    m = _SUMMARY_ANSWER.search(body.splitlines()[-1] if body else body)
    return m.group(1).strip() if m else body


def parse_special_token(text: str) -> Parsed:
    """`| special_token | reasoning | special_token | summary` (the R1 cold-start format)."""
    parts = _SPECIAL.split(text)
    if len(parts) < 3:
        reason = "no_special_token" if len(parts) == 1 else "no_summary"
        return Parsed(parts[1].strip() if len(parts) == 2 else None, None, reason)
    reasoning, summary = parts[1].strip(), parts[2].strip()
    if not reasoning:
        return Parsed(None, None, "empty_reasoning")
    if not summary:
        return Parsed(reasoning, None, "empty_summary")
    return Parsed(reasoning, answer_from_summary(summary))


_SCORE = re.compile(r"score\s*[:=]\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?", re.I)


def parse_score(text: str) -> Parsed:
    """A judge's `Score: N` (optionally `N/10`); reasoning is the judge's explanation."""
    matches = list(_SCORE.finditer(text))
    if not matches:
        return Parsed(text.strip() or None, None, "no_score")
    m = matches[-1]
    return Parsed(text[: m.start()].strip(), m.group(1))


PARSERS = {
    "think_answer": parse_think_answer,
    "special_token": parse_special_token,
    "score": parse_score,
}
