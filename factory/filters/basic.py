"""Structural filters: the parser found the parts, the sample is complete, the format is exact, lengths."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from factory.filters.base import Filter, Reject, setting
from factory.parsers import _SPECIAL
from factory.sample import prefilled_completion


@dataclass
class Parsed(Filter):
    name = "parsed"
    description = "The template's parser found reasoning and a final answer; the request did not fail."
    reasons = ("generation_error", "unparsed")

    def check(self, s: dict[str, Any]) -> Reject | None:
        if s.get("error"):
            return Reject("generation_error", s["error"][:200])
        if s.get("parse_error") or s.get("final") is None:
            return Reject("unparsed", s.get("parse_error") or "no final answer")
        return None


_OPEN_TAGS = ("think", "answer")


@dataclass
class Complete(Filter):
    name = "complete"
    description = "Not cut off by max_tokens, and every <think>/<answer> tag that opens also closes."
    reasons = ("truncated", "unclosed_tag")

    def check(self, s: dict[str, Any]) -> Reject | None:
        if s.get("finish_reason") == "length":
            return Reject("truncated", f"hit max_tokens after {s.get('completion_tokens')} tokens")
        text = prefilled_completion(s).lower()  # a prefilled "<think>" opened the tag
        for tag in _OPEN_TAGS:
            if text.count(f"<{tag}>") != text.count(f"</{tag}>"):
                return Reject("unclosed_tag", f"<{tag}> opened {text.count(f'<{tag}>')}x, closed {text.count(f'</{tag}>')}x")
        return None


_THINK_ANSWER = re.compile(r"^\s*<think>(?P<r>.*?)</think>\s*<answer>(?P<a>.*?)</answer>\s*$", re.S)


@dataclass
class Format(Filter):
    name = "format"
    description = "Exactly the template's format: one <think>..</think> then one <answer>..</answer>, or | special_token | reasoning | special_token | summary; no empty part."
    reasons = ("bad_format", "empty_part")
    def check(self, s: dict[str, Any]) -> Reject | None:
        text = prefilled_completion(s)
        if "<think>" in text or "<answer>" in text or "</think>" in text:
            m = _THINK_ANSWER.match(text)
            if m is None or text.count("<think>") != 1 or text.count("<answer>") != 1:
                return Reject("bad_format", "needs exactly one <think>…</think> then one <answer>…</answer>")
            if not m.group("r").strip() or not m.group("a").strip():
                return Reject("empty_part", "empty reasoning or answer")
            return None
        parts = _SPECIAL.split(text)
        if len(parts) != 3 or parts[0].strip():
            return Reject("bad_format", "needs | special_token | reasoning | special_token | summary")
        if not parts[1].strip() or not parts[2].strip():
            return Reject("empty_part", "empty reasoning or summary")
        return None


@dataclass
class Length(Filter):
    name = "length"
    description = "Bounds on completion tokens and on the reasoning's length."
    reasons = ("too_short", "too_long")
    min_completion_tokens: int = setting(1, "fewest completion tokens")
    max_completion_tokens: int = setting(32768, "most completion tokens")
    min_reasoning_chars: int = setting(1, "shortest reasoning, in characters")
    max_reasoning_chars: int = setting(200_000, "longest reasoning, in characters")

    def validate(self) -> str | None:
        if self.min_completion_tokens > self.max_completion_tokens or self.min_reasoning_chars > self.max_reasoning_chars:
            return "a min is larger than its max"
        return None

    def check(self, s: dict[str, Any]) -> Reject | None:
        tokens = s.get("completion_tokens") or 0
        chars = len(s.get("reasoning") or "")
        if tokens < self.min_completion_tokens or chars < self.min_reasoning_chars:
            return Reject("too_short", f"{tokens} tokens, {chars} reasoning chars")
        if tokens > self.max_completion_tokens or chars > self.max_reasoning_chars:
            return Reject("too_long", f"{tokens} tokens, {chars} reasoning chars")
        return None
