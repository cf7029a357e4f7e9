"""One entry point for every checker: `verify_sample(sample)` picks the verifier by the sample's task.

Tasks: "arithmetic" (the built-in procedural task, exact integers), "math" (math-verify),
"code" (the model's program against the problem's tests in the sandbox), and
"gym:<name>" (reasoning-gym's scorer for that dataset, an optional extra).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from factory.core.registry import Registry
from factory.problems import arithmetic
from factory.verify import Verdict

Verifier = Callable[[dict[str, Any], float], Verdict]
VERIFIERS: Registry[Verifier] = Registry("verifier")


@VERIFIERS.register("arithmetic", help="the built-in procedural task: exact integer match with the gold answer")
def _arithmetic(sample: dict[str, Any], timeout_s: float) -> Verdict:
    final, gold = sample.get("final"), sample.get("answer")
    if final is None or not str(final).strip():
        return Verdict(False, "no_answer")
    if arithmetic.integers_equal(final, gold):
        return Verdict(True)
    return Verdict(False, "wrong_answer", f"{final.strip()[:40]!r} != {gold!r}")


@functools.cache
def _verify_math() -> Callable[..., Verdict]:
    # Imported on first use (math-verify pulls in sympy), then kept: an import statement per
    # sample costs more than a cached answer check.
    from factory.verify.math import verify_math

    return verify_math


@VERIFIERS.register("math", help="math-verify: the final answer equals the gold answer symbolically")
def _math(sample: dict[str, Any], timeout_s: float) -> Verdict:
    return _verify_math()(sample.get("final"), sample.get("answer"), timeout_s=max(1, int(timeout_s)))


@VERIFIERS.register("code", help="the model's program against the problem's tests in the sandbox")
def _code(sample: dict[str, Any], timeout_s: float) -> Verdict:
    from factory.verify.code import verify_code

    if not sample.get("tests"):
        return Verdict(False, "no_tests")
    # The program is in the final answer when the template puts it there, else in the completion.
    text = sample.get("final") or sample.get("completion") or ""
    if "```" not in text:
        text = sample.get("completion") or ""
    return verify_code(text, sample["tests"], timeout_s=timeout_s)


@VERIFIERS.register("gym", help="reasoning-gym's scorer for gym:<name> tasks (optional extra)")
def _gym(sample: dict[str, Any], timeout_s: float) -> Verdict:
    from factory.core.sample import row_meta
    from factory.problems import gym

    try:
        import reasoning_gym  # noqa: F401
    except ImportError:
        return Verdict(False, "verifier_missing", f"gym:* tasks need reasoning-gym: {gym.INSTALL}")
    final = sample.get("final")
    if final is None:
        return Verdict(False, "no_answer")
    try:  # the dataset lookup, the metadata and the scorer may all fail; the sample records why
        context = row_meta(sample).get("context") or {}
        score = gym.score(str(sample.get("task")), final, sample.get("problem"), sample.get("answer"), context)
    except Exception as e:
        return Verdict(False, "verifier_error", f"{type(e).__name__}: {e}"[:200])
    return Verdict(True) if score >= 1.0 else Verdict(False, "wrong_answer", f"score {score:.3g}")


def verifier_for(task: str | None) -> Verifier:
    """The verifier for a task's prefix ("gym:leg_counting" -> gym); math for any other task."""
    kind = (task or "math").split(":", 1)[0]
    return VERIFIERS.get(kind if kind in VERIFIERS else "math")


def verify_sample(sample: dict[str, Any], timeout_s: float = 5) -> Verdict:
    """Verify one sample's final answer against its gold answer or tests."""
    return verifier_for(sample.get("task"))(sample, timeout_s)
