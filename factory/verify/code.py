"""Check a generated Python program against a coding problem's tests, in the sandbox.

Tests come in two shapes: stdin/stdout cases ([{"input", "output"}], {"cases": [...]},
or APPS-style {"inputs": [...], "outputs": [...]}), and assert statements ([str] or
{"asserts": [...]}). Either may arrive as a JSON string.

Expected outputs never enter the sandbox, since whatever is in there the program can read
or forge: a case's program only gets its stdin, and its stdout is compared here; an
assert's calls into the program run in there and their results, as plain data, are
compared here (factory/verify/asserts.py). The time limit covers all of a sample's tests.
"""

from __future__ import annotations

import json
import re
import time

from factory.verify import Verdict, asserts
from factory.verify.sandbox import SandboxResult, run_sandboxed

# An opening fence starts a line ("```python"), or ends one after other text with a
# language tag ("<think>```python"); a closing fence starts a line.
_OPEN_AFTER_TEXT = re.compile(r"```([\w+#.-]+)\s*$")
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}
_CLIP = 200


def extract_program(completion: str) -> str | None:
    """The last ```python / ```py / bare ``` block of a completion; None if there is none.

    The last one, because reasoning models draft and fix code before the final answer.
    Other languages' blocks are parsed (so their bodies are never mistaken for Python)
    and skipped; an unclosed block is dropped as truncated.
    """
    blocks: list[str] = []
    tag: str | None = None  # None: outside a block
    body: list[str] = []
    for line in completion.split("\n"):
        s = line.strip()
        if tag is None:
            m = _OPEN_AFTER_TEXT.search(line)
            if s.startswith("```"):
                info = s[3:].strip()
                tag, body = (info.split()[0].lower() if info else ""), []
            elif m:
                tag, body = m.group(1).lower(), []
        elif s.startswith("```"):
            if tag in _PYTHON_TAGS:
                blocks.append("\n".join(body) + "\n")
            tag = None
        else:
            body.append(line)
    return blocks[-1] if blocks else None


def _clip(text: str, n: int = _CLIP) -> str:
    return text if len(text) <= n else text[:n] + f"... [{len(text) - n} more chars]"


def _normalise(out: str) -> str:
    # Judges accept trailing spaces and a missing or extra final newline.
    return "\n".join(line.rstrip() for line in out.rstrip().split("\n"))


def _parse_tests(tests: str | list | dict) -> tuple[str, list] | Verdict:
    """("cases", [(input, output)]) or ("asserts", [str]), or a bad_tests/no_tests Verdict."""
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError as e:
            return Verdict(False, "bad_tests", f"tests are not JSON: {e}")
    if isinstance(tests, dict):
        if "asserts" in tests:
            tests = tests["asserts"]
        elif "cases" in tests:
            tests = tests["cases"]
        elif "inputs" in tests and "outputs" in tests:
            ins, outs = tests["inputs"], tests["outputs"]
            if not isinstance(ins, list) or not isinstance(outs, list) or len(ins) != len(outs):
                return Verdict(False, "bad_tests", "inputs and outputs must be lists of the same length")
            tests = [{"input": i, "output": o} for i, o in zip(ins, outs)]
        else:
            return Verdict(False, "bad_tests", f"unknown tests keys {sorted(tests)[:5]}")
    if not isinstance(tests, list):
        return Verdict(False, "bad_tests", f"tests must be a list, got {type(tests).__name__}")
    if not tests:
        return Verdict(False, "no_tests", "the problem has no tests")
    if all(isinstance(t, str) for t in tests):
        return "asserts", tests
    if all(isinstance(t, dict) for t in tests):
        cases = []
        for i, t in enumerate(tests, 1):
            if not isinstance(t.get("input"), str) or not isinstance(t.get("output"), str):
                return Verdict(False, "bad_tests", f"case {i} needs string 'input' and 'output'")
            cases.append((t["input"], t["output"]))
        return "cases", cases
    return Verdict(False, "bad_tests", "tests must be all assert strings or all {input, output} cases")


def _failure(res: SandboxResult, where: str, timeout_s: float, memory_mb: int) -> Verdict:
    """The Verdict for a run that did not finish cleanly (res.reason is set)."""
    if res.reason == "timeout":
        return Verdict(False, "timeout", f"{where}: the sample's tests took over {timeout_s:g}s")
    if res.reason == "memory_limit":
        return Verdict(False, "memory_limit", f"{where}: over {memory_mb} MB ({res.memory_limit_by})")
    if res.reason == "output_limit":
        return Verdict(False, "wrong_output", f"{where}: printed more than the output cap")
    lines = res.stderr.strip().splitlines()
    last = lines[-1] if lines else f"exit status {res.returncode}"
    return Verdict(False, "runtime_error", f"{where}: {_clip(last)}")


def _run_cases(program: str, cases: list[tuple[str, str]], timeout_s: float, memory_mb: int) -> Verdict:
    # One sandbox per case: a shared in-sandbox driver would run with the program's uid,
    # so the program could tamper with it and forge results. Stop at the first failure.
    # One deadline for them all: the time limit is per sample, not per case.
    deadline = time.monotonic() + timeout_s
    for i, (stdin, expected) in enumerate(cases, 1):
        where = f"case {i}/{len(cases)}"
        left = deadline - time.monotonic()
        if left <= 0:
            return Verdict(False, "timeout", f"{where}: the sample's tests took over {timeout_s:g}s")
        cap = max(1 << 20, 2 * len(expected.encode()) + 4096)
        res = run_sandboxed(program, stdin, timeout_s=left, memory_mb=memory_mb, max_output_bytes=cap)
        if res.reason is not None:
            return _failure(res, where, timeout_s, memory_mb)
        if _normalise(res.stdout) != _normalise(expected):
            detail = (
                f"{where}: input {_clip(stdin)!r}: expected {_clip(_normalise(expected))!r},"
                f" got {_clip(_normalise(res.stdout))!r}"
            )
            return Verdict(False, "wrong_output", detail)
    return Verdict(True)


def _run_asserts(program: str, tests: list[str], timeout_s: float, memory_mb: int) -> Verdict:
    try:
        plan = asserts.plan(tests, program)
    except asserts.BadTests as e:
        return Verdict(False, "bad_tests", str(e))
    # Results scale with the tests' own size (expected values are about as big).
    cap = max(1 << 20, 4 * sum(len(t) for t in tests) + 4096)
    res = run_sandboxed(asserts.harness(program, plan), timeout_s=timeout_s, memory_mb=memory_mb,
                        max_output_bytes=cap)
    if res.reason is not None:
        return _failure(res, "asserts", timeout_s, memory_mb)
    try:
        results, complete = asserts.parse_results(res.stdout, len(plan.calls))
    except asserts.Malformed as e:
        return Verdict(False, "wrong_output", f"asserts: the result stream was tampered with ({e})")
    n = len(plan.checks)
    for i, check in enumerate(plan.checks, 1):
        what = f"assert {i}/{n}: {_clip(check.source)}"
        if any(k >= len(results) for k in check.calls):
            return Verdict(False, "runtime_error", f"{what}: the program exited before the asserts finished")
        try:
            passed = bool(asserts.evaluate(check.test, results))
        except asserts.CallFailed as e:
            call = _clip(plan.calls[e.k], 80)
            if e.kind == "unplain":
                return Verdict(False, "wrong_output", f"{what}: {call} {_clip(str(e))}")
            if str(e).startswith("MemoryError"):
                return Verdict(False, "memory_limit", f"{what}: {call} raised {_clip(str(e))} ({res.memory_limit_by})")
            return Verdict(False, "runtime_error", f"{what}: {call} raised {_clip(str(e))}")
        except Exception as e:  # the check itself failed on the values, as `assert None < 1` would
            return Verdict(False, "runtime_error", f"{what}: {type(e).__name__}: {_clip(str(e))}")
        if not passed:
            gave = "; ".join(f"{_clip(plan.calls[k], 60)} gave {asserts.show(results[k][1])}"
                             for k in check.calls if results[k][0] == "value")
            return Verdict(False, "wrong_output", f"{what} failed" + (f" ({gave})" if gave else ""))
    if not complete:
        return Verdict(False, "runtime_error", "the program exited before the asserts finished")
    return Verdict(True)


def verify_code(
    program_or_completion: str,
    tests: str | list | dict,
    *,
    timeout_s: float = 10,
    memory_mb: int = 512,
) -> Verdict:
    """Run a program (or the last Python block of a completion) against the tests.

    ok only if every test passes. Reasons: no_code, no_tests, bad_tests, wrong_output,
    runtime_error, timeout, memory_limit.
    """
    text = program_or_completion or ""
    program = extract_program(text) if "```" in text else text
    if program is None or not program.strip():
        return Verdict(False, "no_code", "no ```python block in the completion")
    parsed = _parse_tests(tests)
    if isinstance(parsed, Verdict):
        return parsed
    kind, items = parsed
    if kind == "cases":
        return _run_cases(program, items, timeout_s, memory_mb)
    return _run_asserts(program, items, timeout_s, memory_mb)
