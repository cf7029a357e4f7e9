"""The shared verifier registry: each checker accepts its own gold, math-verify edge cases, timeouts."""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from factory.problems import arithmetic
from factory.prompting.templates import load_template
from factory.verify.math import verify_math
from factory.verify.registry import verify_sample
from factory.verify.sandbox import sandbox_available


@pytest.mark.parametrize("gold, answer, ok", [
    ("0.5", "\\frac{1}{2}", True),
    ("14", "14.0", True),
    ("0.75", "\\boxed{\\dfrac{3}{4}}", True),
    ("\\frac{3}{4}", "0.75", True),
    ("x^2+1", "1+x^2", True),
    ("14", "The answer is $\\boxed{14}$.", True),
    ("14", "20", False),
    ("\\frac{1}{3}", "0.33", False),
])
def test_math_verify_edge_cases(gold, answer, ok):
    assert verify_math(answer, gold).ok is ok


def test_wrong_number_inside_the_reasoning_does_not_fool_the_check():
    completion = ("<think>First I thought 2 + 3 = 5 and 5 * 4 = 20, but multiplication comes first.</think>"
                  "<answer>14</answer>")
    parsed = load_template("r1_zero").parse(completion)
    assert verify_sample({"task": "math", "final": parsed.final, "answer": "14"}).ok
    assert not verify_sample({"task": "math", "final": parsed.final, "answer": "20"}).ok


def test_every_verifier_accepts_its_own_gold():
    for p in arithmetic.generate(20, seed=4):
        assert verify_sample({"task": "arithmetic", "final": str(p.answer), "answer": str(p.answer)}).ok
        assert verify_sample({"task": "math", "final": str(p.answer), "answer": str(p.answer)}).ok
    assert verify_sample({"task": "math", "final": "\\frac{\\sqrt{2}}{2}", "answer": "\\frac{\\sqrt{2}}{2}"}).ok


@pytest.mark.skipif(not sandbox_available(), reason="bubblewrap is not installed")
def test_code_verifier_accepts_a_correct_program_and_its_tests():
    program = "```python\nn = int(input())\nprint(sorted([42] + [n, 1])[::-1][0])\n```"
    tests = json.dumps([{"input": "5\n", "output": "42\n"}, {"input": "100\n", "output": "100\n"}])
    assert verify_sample({"task": "code", "final": None, "completion": program, "tests": tests}).ok
    bad = verify_sample({"task": "code", "completion": "```python\nprint(0)\n```", "tests": tests})
    assert not bad.ok and bad.reason == "wrong_output"


def test_arithmetic_rejects_near_misses():
    v = verify_sample({"task": "arithmetic", "final": "14.5", "answer": "14"})
    assert not v.ok and v.reason == "wrong_answer"
    assert verify_sample({"task": "arithmetic", "final": None, "answer": "14"}).reason == "no_answer"


def _slow_verify(_):
    t0 = time.perf_counter()
    v = verify_math("(x+1)^{10000}", "(x+2)^{10000}", timeout_s=1)
    return v.reason, time.perf_counter() - t0


def test_math_timeout_is_a_reason_in_a_worker_process():
    # math-verify times out with SIGALRM, which needs a process's main thread: workers are processes.
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        reason, seconds = pool.submit(_slow_verify, None).result(timeout=60)
    assert reason == "timeout" and seconds < 10


def test_missing_gold_and_unparsable_answers_have_reasons():
    assert verify_math("14", None).reason == "no_gold_answer"
    assert verify_math("", "14").reason == "no_answer"
    assert verify_math("no numbers here at all", "14").reason in ("unparsable_answer", "wrong_answer")
