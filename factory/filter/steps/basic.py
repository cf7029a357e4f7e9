"""Structural filters: the parser found the parts, the sample is complete, the format is exact, lengths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from factory.core.errors import FactoryError
from factory.core.sample import prefilled_completion
from factory.core.settings import setting
from factory.filter.steps.base import Filter, Reject
from factory.prompting.formats import sample_format


@dataclass
class Parsed(Filter):
    name = "parsed"
    description = "The format's parser found reasoning and a final answer; the request did not fail or hit max_tokens."
    reasons = ("generation_error", "truncated", "unparsed")

    def screen(self, s: dict[str, Any]) -> Reject | None:
        if s.get("error"):
            return Reject("generation_error", s["error"][:200])
        if s.get("finish_reason") == "length":  # a cut-off text has no answer: say so, not "unparsed"
            return Reject("truncated", f"hit max_tokens after {s.get('completion_tokens')} tokens")
        if s.get("parse_error") or s.get("final") is None:
            return Reject("unparsed", s.get("parse_error") or "no final answer")
        return None


# Reasoning markers of every built-in format that open a block and must close it.
_PAIRS = (("<think>", "</think>"), ("<answer>", "</answer>"),
          ("<|begin_of_thought|>", "<|end_of_thought|>"), ("<|begin_of_solution|>", "<|end_of_solution|>"))


@dataclass
class Complete(Filter):
    name = "complete"
    description = "Not cut off by max_tokens, and every reasoning tag or marker that opens also closes."
    reasons = ("truncated", "unclosed_tag")

    def screen(self, s: dict[str, Any]) -> Reject | None:
        if s.get("finish_reason") == "length":
            return Reject("truncated", f"hit max_tokens after {s.get('completion_tokens')} tokens")
        text = prefilled_completion(s).lower()  # a prefilled "<think>" opened the tag
        for opening, closing in _PAIRS:
            if text.count(opening) != text.count(closing):
                return Reject("unclosed_tag", f"{opening} opened {text.count(opening)}x, closed {text.count(closing)}x")
        return None


@dataclass
class Format(Filter):
    name = "format"
    description = ("Exactly the sample's format (e.g. one <think>..</think> then one <answer>..</answer>; "
                   "<think>..</think> then a boxed summary; | special_token | reasoning | special_token | summary); "
                   "no empty part.")
    reasons = ("bad_format", "empty_part")

    def screen(self, s: dict[str, Any]) -> Reject | None:
        text = prefilled_completion(s)
        fmt = sample_format(s, text)
        if fmt is None:
            return Reject("bad_format", "written in none of the registered formats")
        why = fmt.check_shape(text)
        if why is None:
            return None
        reason = "empty_part" if why == "empty_part" else "bad_format"
        return Reject(reason, f"not exactly {fmt.name}: {fmt.description}" if reason == "bad_format"
                      else "empty reasoning or answer")


@dataclass
class Length(Filter):
    name = "length"
    description = "Bounds on completion tokens and on the reasoning's length."
    reasons = ("too_short", "too_long")
    min_completion_tokens: int = setting(1, "fewest completion tokens")
    max_completion_tokens: int = setting(32768, "most completion tokens")
    min_reasoning_chars: int = setting(1, "shortest reasoning, in characters")
    max_reasoning_chars: int = setting(200_000, "longest reasoning, in characters")

    def validate(self) -> None:
        if (self.min_completion_tokens > self.max_completion_tokens
                or self.min_reasoning_chars > self.max_reasoning_chars):
            raise FactoryError("a min is larger than its max")

    def screen(self, s: dict[str, Any]) -> Reject | None:
        # Imported generations may come without token counts: then only the characters are bounded.
        counted = s.get("completion_tokens")
        tokens = counted if counted is not None else "unknown"
        chars = len(s.get("reasoning") or "")
        if (counted is not None and counted < self.min_completion_tokens) or chars < self.min_reasoning_chars:
            return Reject("too_short", f"{tokens} tokens, {chars} reasoning chars")
        if (counted is not None and counted > self.max_completion_tokens) or chars > self.max_reasoning_chars:
            return Reject("too_long", f"{tokens} tokens, {chars} reasoning chars")
        return None
