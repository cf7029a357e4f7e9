"""Check a generated Python program against a coding problem's tests, in the sandbox.

Tests come in two shapes: stdin/stdout cases ([{"input", "output"}], {"cases": [...]},
or APPS-style {"inputs": [...], "outputs": [...]}), and assert statements ([str] or
{"asserts": [...]}) appended after the program. Either may arrive as a JSON string.
"""

from __future__ import annotations

import json
import re
import secrets

from factory.verify import Verdict
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
        return Verdict(False, "timeout", f"{where}: over {timeout_s:g}s")
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
    for i, (stdin, expected) in enumerate(cases, 1):
        cap = max(1 << 20, 2 * len(expected.encode()) + 4096)
        res = run_sandboxed(program, stdin, timeout_s=timeout_s, memory_mb=memory_mb, max_output_bytes=cap)
        where = f"case {i}/{len(cases)}"
        if res.reason is not None:
            return _failure(res, where, timeout_s, memory_mb)
        if _normalise(res.stdout) != _normalise(expected):
            detail = (
                f"{where}: input {_clip(stdin)!r}: expected {_clip(_normalise(expected))!r},"
                f" got {_clip(_normalise(res.stdout))!r}"
            )
            return Verdict(False, "wrong_output", detail)
    return Verdict(True)


def _run_asserts(program: str, asserts: list[str], timeout_s: float, memory_mb: int) -> Verdict:
    # A fresh token printed after the last assert: a program that exits early (sys.exit,
    # os._exit) would otherwise skip every assert and still exit 0.
    token = secrets.token_hex(16)
    parts = [program.rstrip("\n"), ""]
    starts = []  # 1-based line of each assert, to name the one that failed
    line = program.rstrip("\n").count("\n") + 3
    for a in asserts:
        starts.append(line)
        parts.append(a.rstrip("\n"))
        line += a.rstrip("\n").count("\n") + 1
    parts.append(f"print({token!r})")
    res = run_sandboxed("\n".join(parts) + "\n", timeout_s=timeout_s, memory_mb=memory_mb)
    if res.reason is not None:
        last = (res.stderr.strip().splitlines() or [""])[-1]
        if res.reason == "runtime_error" and last.startswith("AssertionError"):
            # The outermost main.py frame is the failing line; map it back to its assert.
            frames = re.findall(r'File "/sandbox/main\.py", line (\d+)', res.stderr)
            at = int(frames[0]) if frames else 0
            hit = [i for i, s in enumerate(starts) if s <= at]
            if hit:  # else the program's own assert failed: a runtime error, below
                what = f"assert {hit[-1] + 1}/{len(asserts)}: {_clip(asserts[hit[-1]].strip())}"
                return Verdict(False, "wrong_output", f"{what} failed")
        return _failure(res, "asserts", timeout_s, memory_mb)
    if res.stdout.rstrip("\n").rsplit("\n", 1)[-1] != token:
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
