"""Output formats: one registry that generation, filters, rewards, evaluation and export all read.

A format is a parser (text -> reasoning, final answer, or an error saying why not) plus what the
filters need to judge it: the tags that must open and close in pairs, and an exactness check.
`auto` picks, per sample, the registered format a completion is written in, and records it.

A user adds a format without editing the factory: name a function `module:function` that takes
the completion and returns a `Parsed` (or a `(reasoning, final)` pair) as a template's `format:`
or `--format`, or publish it under the Python entry-point group `reasoning_factory.formats`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any

from factory.core.errors import FactoryError
from factory.core.registry import Registry
from factory.core.sample import prefilled_completion, row_meta
from factory.prompting.parsers import (
    _SPECIAL,
    Parsed,
    parse_boxed,
    parse_score,
    parse_special_token,
    parse_think_answer,
    parse_think_boxed,
    parse_thought_solution,
)

ENTRY_POINT_GROUP = "reasoning_factory.formats"
AUTO = "auto"


@dataclass(frozen=True)
class OutputFormat:
    name: str
    description: str
    parse: Callable[[str], Parsed]
    # Does a completion look like this format (for `auto`)? None: auto never picks it.
    detect: Callable[[str], bool] | None = None
    # Why the text is not exactly in this format (None: it is). strict=False is the GRPO format
    # reward's looser reading; None here: exact means the parser found reasoning and an answer.
    shape: Callable[[str, bool], str | None] | None = None

    def check_shape(self, text: str, strict: bool = True) -> str | None:
        if self.shape is not None:
            return self.shape(text, strict)
        p = self.parse(text)
        return p.error if p.error else (None if (p.reasoning or "").strip() and p.final else "empty_part")


# ------------------------------------------------------------------ exactness of each format

_THINK_ANSWER = re.compile(r"^\s*<think>(?P<r>.*?)</think>\s*<answer>(?P<a>.*?)</answer>\s*$", re.S)
# The reward's reading: the closing </answer> is not demanded and text may follow the answer, so
# "<think>…</think> <answer> 7<answer>" earns it; the filter keeps the strict version.
_THINK_THEN_ANSWER = re.compile(r"\s*<think>(?P<r>.*?)</think>\s*<answer>(?P<a>)", re.S | re.I)


def _think_answer_shape(text: str, strict: bool) -> str | None:
    if not strict:
        m = _THINK_THEN_ANSWER.match(text)
        ok = m is not None and m.group("r").strip() and text.lower().count("<think>") == 1
        return None if ok else "bad_format"
    m = _THINK_ANSWER.match(text)
    if m is None or text.count("<think>") != 1 or text.count("<answer>") != 1:
        return "bad_format"
    return None if m.group("r").strip() and m.group("a").strip() else "empty_part"


def _special_token_shape(text: str, strict: bool) -> str | None:
    parts = _SPECIAL.split(text)
    if len(parts) != 3 or parts[0].strip():
        return "bad_format"
    return None if parts[1].strip() and parts[2].strip() else "empty_part"


def _think_boxed_shape(text: str, strict: bool) -> str | None:
    low = text.lower()
    if not low.lstrip().startswith("<think>") or low.count("<think>") != 1 or low.count("</think>") != 1:
        return "bad_format"
    p = parse_think_boxed(text)
    if p.error == "no_answer":
        return "bad_format"
    return None if p.ok and p.reasoning else "empty_part"


_MARKERS = ("<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>")
_THOUGHT_SOLUTION = re.compile(
    r"^\s*<\|begin_of_thought\|>(?P<r>.*?)<\|end_of_thought\|>\s*<\|begin_of_solution\|>(?P<s>.*?)<\|end_of_solution\|>\s*$",
    re.S,
)


def _thought_solution_shape(text: str, strict: bool) -> str | None:
    m = _THOUGHT_SOLUTION.match(text)
    if m is None or any(text.count(marker) != 1 for marker in _MARKERS):
        return "bad_format"
    return None if m.group("r").strip() and m.group("s").strip() else "empty_part"


_REASONING_TAGS = re.compile(r"</?think>|<\|(?:begin|end)_of_(?:thought|solution)\|>|\|\s*special_token\s*\|", re.I)


def _boxed_shape(text: str, strict: bool) -> str | None:
    if _REASONING_TAGS.search(text):
        return "bad_format"
    p = parse_boxed(text)
    return None if p.ok and p.reasoning else "empty_part"


def _has(*needles: str) -> Callable[[str], bool]:
    return lambda text: any(n in text.lower() for n in needles)


# Registration order is auto's order: the most specific markers first.
FORMATS: Registry[OutputFormat] = Registry(
    "format",
    hint=f"; or {AUTO} to detect it per sample, or name your own parser as module:function, "
    f"or publish it under the entry-point group '{ENTRY_POINT_GROUP}'",
)
_BUILTIN = [
    OutputFormat("thought_solution", "<|begin_of_thought|> reasoning <|end_of_thought|> <|begin_of_solution|> "
                 "solution with \\boxed{} <|end_of_solution|> (Sky-T1, Bespoke-Stratos, OpenThoughts)",
                 parse_thought_solution, _has("<|begin_of_thought|>", "<|end_of_thought|>"), _thought_solution_shape),
    OutputFormat("special_token", "| special_token | reasoning | special_token | summary (R1 cold-start data)",
                 parse_special_token, lambda t: _SPECIAL.search(t) is not None, _special_token_shape),
    OutputFormat("think_answer", "<think> reasoning </think> <answer> answer </answer> (the R1-Zero template)",
                 parse_think_answer, _has("<answer>"), _think_answer_shape),
    OutputFormat("think_boxed", "<think> reasoning </think> then a summary with \\boxed{} or 'the answer is' "
                 "(R1, R1-Distill, QwQ, Qwen3)", parse_think_boxed, _has("</think>", "<think>"), _think_boxed_shape),
    OutputFormat("boxed", "no reasoning tags; the answer is the last \\boxed{}, the reasoning the text before it",
                 parse_boxed, _has("\\boxed", "\\fbox"), _boxed_shape),
    OutputFormat("score", "a judge's 'Score: N' after its explanation", parse_score),
]


def register_format(fmt: OutputFormat) -> OutputFormat:
    """Add a format to this process's registry (entry points and module paths reach worker processes too)."""
    return FORMATS.register(fmt.name, fmt, help=fmt.description)


for _f in _BUILTIN:
    register_format(_f)


def _wrap_function(name: str, fn: Callable[[str], Any]) -> OutputFormat:
    """A user's parser function -> a format; it may return a Parsed or a (reasoning, final) pair."""

    def parse(text: str) -> Parsed:
        out = fn(text)
        if isinstance(out, Parsed):
            return out
        if isinstance(out, tuple) and len(out) == 2:
            reasoning, final = out
            return Parsed(reasoning, final, None if final is not None else "no_answer")
        raise FactoryError(f"format '{name}' returned {type(out).__name__}; return a Parsed or (reasoning, final)")

    return OutputFormat(name, (fn.__doc__ or f"user format {name}").strip().splitlines()[0], parse)


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in FORMATS:
            obj = ep.load()
            register_format(replace(obj, name=ep.name) if isinstance(obj, OutputFormat)
                            else _wrap_function(ep.name, obj))


def _import_path(path: str) -> OutputFormat:
    module, _, attr = path.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise FactoryError(f"format '{path}': cannot import it ({e}); write module:function, importable here") from None
    if isinstance(obj, OutputFormat):
        return register_format(replace(obj, name=path))
    if not callable(obj):
        raise FactoryError(f"format '{path}' is not a function; it must take the completion and return a Parsed")
    return register_format(_wrap_function(path, obj))


def format_names() -> list[str]:
    _load_entry_points()
    return [*FORMATS, AUTO]


def get_format(name: str) -> OutputFormat:
    """A registered format, `auto`, a `module:function` path, or an entry point; else one clear error."""
    if name not in FORMATS:
        if name == AUTO:
            return AUTO_FORMAT
        if ":" in name:
            return _import_path(name)
        _load_entry_points()
    return FORMATS.get(name)


def detect_format(text: str) -> OutputFormat | None:
    """The registered format a completion is written in: the first whose markers it carries."""
    for name in FORMATS:
        fmt = FORMATS.get(name)
        if fmt.detect is not None and fmt.detect(text):
            return fmt
    return None


def _parse_auto(text: str) -> Parsed:
    fmt = detect_format(text)
    if fmt is None:
        return Parsed(None, None, "unknown_format", AUTO)
    return replace(fmt.parse(text), format=fmt.name)


AUTO_FORMAT = OutputFormat(AUTO, "detects, per sample, which registered format a completion is in", _parse_auto)


def parse_output(text: str, name: str) -> Parsed:
    """Parse a model's whole turn (prefill included) in a format; `format` says which one did."""
    parsed = get_format(name).parse(text)
    return parsed if parsed.format else replace(parsed, format=name)


# ------------------------------------------------------------------ prefill and samples

_OPENING_TAIL = re.compile(r"(?:<think>|<\|begin_of_thought\|>)[ \t\r\n]*$", re.I)


def prompt_prefill(prompt: str, template_prefill: str = "") -> str:
    """The part of the model's turn already in the prompt: the template's own prefill, and before
    it an opening reasoning tag that ends the chat template's generation prompt (R1-Distill's,
    QwQ's and Qwen3's end it with "<think>\\n")."""
    head = (prompt[: len(prompt) - len(template_prefill)] if template_prefill and prompt.endswith(template_prefill)
            else prompt)
    m = _OPENING_TAIL.search(head)
    return (head[m.start() :] if m else "") + (template_prefill if head is not prompt else "")


def with_prefill(chat_prompt: str, prefill: str) -> str:
    """A chat template's generation prompt with the template's prefill after it, unless the chat
    template already ends with it (R1-Distill's "<think>\\n"): the model must not see it twice."""
    if prefill.strip() and chat_prompt.rstrip().endswith(prefill.strip()):
        return chat_prompt
    return chat_prompt + prefill


def implied_prefill(completion: str) -> str:
    """"<think>\\n" when a completion closes a reasoning block it never opened: the prompt opened it
    (a chat template seen only by the server, or generations stored without their prefill)."""
    low = completion.lower()
    close = low.find("</think>")
    return "<think>\n" if close >= 0 and "<think>" not in low[:close] else ""


def row_format(row: dict[str, Any]) -> str:
    """The format a sample is in: recorded at generation or import (what auto detected), else auto."""
    return row.get("format") or row_meta(row).get("format") or AUTO


def parse_row(row: dict[str, Any]) -> Parsed:
    """The one answer path: a sample's whole turn (prefill + completion) through its format's parser."""
    return parse_output(prefilled_completion(row), row_format(row))


def sample_format(row: dict[str, Any], text: str) -> OutputFormat | None:
    """The format a sample is held to: the one it records, else the one its whole turn `text` is written in."""
    name = row_format(row)
    return detect_format(text) if name == AUTO else get_format(name)
