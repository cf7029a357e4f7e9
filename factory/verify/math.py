"""Math answers through math-verify: gold parsed first, answer taken from its tag or box.

math-verify's timeouts use SIGALRM, which only works in a process's main thread: call
this from worker processes (the filter chain runs shards in a process pool), never from
threads. A timeout is a Verdict with reason "timeout", never a hang.
"""

from __future__ import annotations

import functools
import re

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException  # a BaseException: `except Exception` misses it

from factory.prompting.parsers import boxed_spans, last_boxed
from factory.verify import Verdict

# Math-Verify's own test suite reads gold and answer alike with these (boxes first); the answer is
# given whole, so several boxes ("\\boxed{-2} \\text{ and } \\boxed{1}") and prose ("The answer is
# 14") are read as the library reads them.
_DEFAULT = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
# A bare LaTeX answer cut out of its tag ("\\frac{1}{2}") that the default extraction misses.
_LATEX = [LatexExtractionConfig()]


# Two words in a row outside LaTeX commands: prose ("The answer is 14"), not a bare expression.
_PROSE = re.compile(r"(?<![\\\w])[A-Za-z]{2,}\s+[A-Za-z]{2,}\b")


_SCIENTIFIC = re.compile(r"\s*([-+]?\d+(?:\.\d+)?)\s*[eE]\s*([-+]?\d+)\s*")
# Math delimiters or a box: text math-verify's extraction finds the answer in ("\\$" is a dollar sign).
_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed")


@functools.lru_cache(maxsize=4096)  # a problem's samples share one gold answer: parse it once
def _parse(text: str, timeout_s: int):
    sci = _SCIENTIFIC.fullmatch(text)
    if sci:  # "1.07e16": math-verify reads it as 1.07 * e * 16
        text = f"{sci.group(1)} \\times 10^{{{sci.group(2)}}}"
    # A bare expression cut out of its tag or box ("x^2+1", "\\frac{1}{2}") is LaTeX without its
    # dollars: read it as such first (the default extraction takes "1+x^2" for the number 1).
    bare = not _DELIMITED.search(text) and not _PROSE.search(text)
    if bare:
        found = parse(f"${text}$", extraction_config=_LATEX, parsing_timeout=timeout_s)
        if found:
            return found
    return parse(text, extraction_config=_DEFAULT, parsing_timeout=timeout_s)


def _same_text(a: str, b: str) -> bool:
    def strip(t: str) -> str:
        return "".join(t.split()).strip("$").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")

    return strip(a) == strip(b)


def answer_text(final: str) -> str:
    """The answer itself for messages: the last \\boxed{} if there is one, else the whole final answer."""
    boxed = last_boxed(final)
    return boxed if boxed is not None else final.strip()


def verify_math(final: str | None, gold: str | None, timeout_s: int = 5) -> Verdict:

    if gold is None or not str(gold).strip():
        return Verdict(False, "no_gold_answer")
    if final is None or not final.strip():
        return Verdict(False, "no_answer")
    # One box at most on each side (several are a set, for math-verify to compare): identical answers
    # need no symbolic check (the common case, and 100x cheaper).
    if (len(boxed_spans(final)) <= 1 and len(boxed_spans(str(gold))) <= 1
            and _same_text(answer_text(final), answer_text(str(gold)))):
        return Verdict(True)  # identical answers need no symbolic check (the common case, and 100x cheaper)
    try:
        gold_parsed = _parse(str(gold).strip(), timeout_s)
        if not gold_parsed:
            return Verdict(False, "unparsable_gold", f"gold {gold!r}")
        answer_parsed = _parse(final.strip(), timeout_s)
        if not answer_parsed:
            return Verdict(False, "unparsable_answer", f"answer {final[:80]!r}")
        ok = verify(gold_parsed, answer_parsed, timeout_seconds=timeout_s, raise_on_error=True)
    except (TimeoutError, TimeoutException):
        return Verdict(False, "timeout", f"math-verify took over {timeout_s} s")
    except Exception as e:  # sympy raises many types on odd input; the sample records it
        return Verdict(False, "verifier_error", f"{type(e).__name__}: {e}"[:200])
    return Verdict(True) if ok else Verdict(False, "wrong_answer", f"{answer_text(final)[:60]!r} != {gold!r}")
