"""Math answers through math-verify: gold parsed first, answer taken from its tag or box.

math-verify's timeouts use SIGALRM, which only works in a process's main thread: call
this from worker processes (the filter chain runs shards in a process pool), never from
threads. A timeout is a Verdict with reason "timeout", never a hang.
"""

from __future__ import annotations

import functools

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException  # a BaseException: `except Exception` misses it

from factory.parsers import last_boxed
from factory.verify import Verdict


_LATEX = [LatexExtractionConfig()]
_ANY = [LatexExtractionConfig(), ExprExtractionConfig()]


@functools.lru_cache(maxsize=4096)  # a problem's samples share one gold answer: parse it once
def _parse(text: str, timeout_s: int):
    # The answer is already cut out of its tag or box, so LaTeX-only extraction on "$answer$"
    # (3x cheaper than the default) finds it; plain text ("The answer is 14") falls back to
    # the default extractors.
    return (
        parse(f"${text}$", extraction_config=_LATEX, parsing_timeout=timeout_s)
        or parse(text, extraction_config=_ANY, parsing_timeout=timeout_s)
    )


def _same_text(a: str, b: str) -> bool:
    strip = lambda t: "".join(t.split()).strip("$").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return strip(a) == strip(b)


def answer_text(final: str) -> str:
    """The answer itself: the last \\boxed{} if there is one, else the whole final answer."""
    boxed = last_boxed(final)
    return boxed if boxed is not None else final.strip()


def verify_math(final: str | None, gold: str | None, timeout_s: int = 5) -> Verdict:

    if gold is None or not str(gold).strip():
        return Verdict(False, "no_gold_answer")
    if final is None or not final.strip():
        return Verdict(False, "no_answer")
    if _same_text(answer_text(final), answer_text(str(gold))):
        return Verdict(True)  # identical answers need no symbolic check (the common case, and 100x cheaper)
    try:
        gold_parsed = _parse(answer_text(str(gold)), timeout_s)
        if not gold_parsed:
            return Verdict(False, "unparsable_gold", f"gold {gold!r}")
        answer_parsed = _parse(answer_text(final), timeout_s)
        if not answer_parsed:
            return Verdict(False, "unparsable_answer", f"answer {final[:80]!r}")
        ok = verify(gold_parsed, answer_parsed, timeout_seconds=timeout_s, raise_on_error=True)
    except (TimeoutError, TimeoutException):
        return Verdict(False, "timeout", f"math-verify took over {timeout_s} s")
    except Exception as e:  # sympy raises many types on odd input; the sample records it
        return Verdict(False, "verifier_error", f"{type(e).__name__}: {e}"[:200])
    return Verdict(True) if ok else Verdict(False, "wrong_answer", f"{answer_text(final)[:60]!r} != {gold!r}")
