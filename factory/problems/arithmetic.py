"""Built-in procedural task: integer arithmetic with + - * and precedence, exact answers.

"What is 2 + 3 * 4?" -> 14, with a step-by-step solution that applies one operation per
line in the order a careful person would (all multiplications left to right, then
additions and subtractions left to right). Seeded, so the same seed gives the same set.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

OPS = ("+", "-", "*")


@dataclass(frozen=True)
class ArithmeticProblem:
    expression: str
    answer: int
    steps: list[str]


def _solve(numbers: list[int], ops: list[str]) -> tuple[int, list[str]]:
    """Evaluate with precedence, recording one line per operation."""
    nums, ops = list(numbers), list(ops)
    steps: list[str] = []
    for wanted in (("*",), ("+", "-")):
        i = 0
        while i < len(ops):
            if ops[i] in wanted:
                a, b, op = nums[i], nums[i + 1], ops[i]
                value = a * b if op == "*" else a + b if op == "+" else a - b
                steps.append(f"{a} {op} {b} = {value}")
                nums[i : i + 2] = [value]
                del ops[i]
            else:
                i += 1
    return nums[0], steps


def make_problem(rng: random.Random, max_operand: int = 12) -> ArithmeticProblem:
    n_ops = rng.randint(2, 3)
    numbers = [rng.randint(1, max_operand) for _ in range(n_ops + 1)]
    ops = [rng.choice(OPS) for _ in range(n_ops)]
    expression = " ".join(
        part for pair in zip(map(str, numbers), ops + [""]) for part in pair if part
    )
    answer, steps = _solve(numbers, ops)
    return ArithmeticProblem(expression=expression, answer=answer, steps=steps)


def generate(n: int, seed: int = 0, max_operand: int = 12) -> list[ArithmeticProblem]:
    """n distinct problems from a seed (distinct expressions, so no duplicate problems)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    problems: list[ArithmeticProblem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            break  # the space of expressions is exhausted for this max_operand
        p = make_problem(rng, max_operand)
        if p.expression not in seen:
            seen.add(p.expression)
            problems.append(p)
    return problems


def question(p: ArithmeticProblem) -> str:
    return f"What is {p.expression}?"


def solution_text(p: ArithmeticProblem) -> str:
    return "\n".join(p.steps)


_INT = re.compile(r"^\s*[-+]?\d+\s*$")


def integers_equal(final: str | None, answer: str) -> bool:
    """Exact integer match of a final answer against the gold answer ("14" == " 14 ")."""
    if final is None or not _INT.match(final):
        return False
    return int(final) == int(answer)
