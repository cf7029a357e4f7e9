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
    format: str | None = None  # the format that parsed it (what `auto` detected)

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
        if "<answer>" in rest.lower():  # kept for rewards and diagnosis, flagged by the error
            return Parsed(reasoning.strip(), _opened_answer(rest), "unclosed_answer")
        return Parsed(reasoning.strip(), None, "no_answer")
    return Parsed(reasoning.strip(), answers[-1].strip())


def _answer_only(text: str) -> str | None:
    answers = ANSWER_TAG.findall(text)
    return answers[-1].strip() if answers else None


# An opened answer runs to the next tag or the end; "<" alone is not a tag ("x < 3").
_OPEN_ANSWER = re.compile(r"<answer>(.*?)(?=</?[A-Za-z][\w:-]*\s*/?>|$)", re.S | re.I)


def _opened_answer(text: str) -> str | None:
    """The last non-empty text after an <answer> tag: "<answer> 7<answer>" (a closing tag
    without its slash) reads "7"."""
    opened = [a.strip() for a in _OPEN_ANSWER.findall(text) if a.strip()]
    return opened[-1] if opened else None


_SPECIAL = re.compile(r"\|\s*special_token\s*\|", re.I)
_SUMMARY_ANSWER = re.compile(
    r"(?:final answer|answer)\s*(?:is|:|=)\s*(.+?)\s*(?:\.\s*)?$", re.I | re.S
)
_BOXED = re.compile(r"\\boxed\{")


def _closing_brace(text: str, i: int) -> int | None:
    """Index of the `}` that closes the brace opened just before `i`, nested braces balanced."""
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return j
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (None when it never closes)."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    end = _closing_brace(text, starts[-1]) if starts else None
    return text[starts[-1] : end].strip() if end is not None else None


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


_CLOSE_THINK = re.compile(r"</think>", re.I)


def parse_think_boxed(text: str) -> Parsed:
    """`<think> reasoning </think> summary with \\boxed{answer}` (R1, R1-Distill, QwQ, Qwen3).

    The answer is the summary's last `\\boxed{}`, else what "the answer is ..." states. A prompt
    whose chat template ends with `<think>` leaves only the closing tag in the completion.
    """
    closes = list(_CLOSE_THINK.finditer(text))
    if not closes:
        reason = "unclosed_think" if "<think>" in text.lower() else "no_think"
        return Parsed(None, None, reason)
    end = closes[-1]  # a model that re-opens its thinking ends it at the last </think>
    reasoning = re.sub(r"^\s*<think>", "", text[: end.start()], count=1, flags=re.I).strip()
    summary = text[end.end() :].strip()
    if not summary:
        return Parsed(reasoning, None, "no_summary")
    final = answer_in_text(summary)
    return Parsed(reasoning, final, None if final else "no_answer")


_THOUGHT = ("<|begin_of_thought|>", "<|end_of_thought|>")
_SOLUTION = ("<|begin_of_solution|>", "<|end_of_solution|>")


def parse_thought_solution(text: str) -> Parsed:
    """`<|begin_of_thought|> … <|end_of_thought|> <|begin_of_solution|> … <|end_of_solution|>`
    (Sky-T1, Bespoke-Stratos, OpenThoughts); the answer is the solution's last box or stated answer."""
    if _THOUGHT[1] not in text:
        return Parsed(None, None, "unclosed_thought" if _THOUGHT[0] in text else "no_thought")
    head, _, rest = text.rpartition(_THOUGHT[1])
    reasoning = head.split(_THOUGHT[0], 1)[-1].strip()
    if _SOLUTION[0] not in rest:
        return Parsed(reasoning, None, "no_solution")
    solution = rest.split(_SOLUTION[0], 1)[1]
    closed = _SOLUTION[1] in solution
    solution = solution.split(_SOLUTION[1], 1)[0].strip()
    final = answer_in_text(solution) if solution else None
    if final is None:
        return Parsed(reasoning, None, "no_answer")
    return Parsed(reasoning, final, None if closed else "unclosed_solution")


def parse_boxed(text: str) -> Parsed:
    """No reasoning tags: the answer is the last `\\boxed{}`, the reasoning everything before it."""
    start = text.rfind("\\boxed{")
    final = last_boxed(text)
    if final is None:
        return Parsed(None, None, "no_boxed" if start < 0 else "unclosed_boxed")
    return Parsed(text[:start].strip() or None, final)


_STATED = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*\**\s*(.+?)\s*\**\s*(?:\.(?:\s|$)|$)", re.I | re.M)
# Boxes on one line, a short phrase apart ("\\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}"), are one
# answer in parts (two roots, a pair).
_BOX_GAP_MAX = 60


def answer_in_text(text: str) -> str | None:
    """The answer a solution states: its last `\\boxed{}` or "the answer is X", whichever comes last.

    Boxes in a row on one line are one answer in parts (two roots, a pair): they are kept
    together, boxes and all, so math-verify reads them as it reads a set.
    """
    boxes = boxed_spans(text)
    stated = list(_STATED.finditer(text))
    if stated and (not boxes or stated[-1].start() > boxes[-1][1]):  # "The final answer is X" after the last box
        return stated[-1].group(1).strip()
    if boxes:
        first = len(boxes) - 1
        while first > 0 and _one_phrase(text[boxes[first - 1][1] : boxes[first][0]]):
            first -= 1
        if first == len(boxes) - 1:
            return boxes[-1][2]
        return text[boxes[first][0] : boxes[-1][1]]
    return None


def _one_phrase(gap: str) -> bool:
    return len(gap) <= _BOX_GAP_MAX and "\n" not in gap


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every `\\boxed{...}` (and `\\fbox{}`), nested braces balanced."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        end = _closing_brace(text, m.end())
        if end is not None:
            out.append((m.start(), end + 1, text[m.end() : end].strip()))
    return out
