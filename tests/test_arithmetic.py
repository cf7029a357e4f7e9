"""The built-in arithmetic task: seeded, distinct, exact answers with correct step lines."""

from __future__ import annotations

import random
import re

import pytest

from factory.problems import arithmetic
from factory.problems.arithmetic import _solve, generate, integers_equal, make_problem, question, solution_text

STEP = re.compile(r"^(-?\d+) ([-+*]) (-?\d+) = (-?\d+)$")


def _apply(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def test_seed_example_from_the_brief():
    value, steps = _solve([2, 3, 4], ["+", "*"])
    assert value == 14
    assert steps == ["3 * 4 = 12", "2 + 12 = 14"]


def test_solve_multiplies_before_adding_and_subtracts_left_to_right():
    value, steps = _solve([7, 2, 3, 4], ["-", "*", "+"])
    assert value == 7 - 2 * 3 + 4 == 5
    assert steps == ["2 * 3 = 6", "7 - 6 = 1", "1 + 4 = 5"]
    value, steps = _solve([10, 3, 2], ["-", "-"])
    assert value == 5  # left to right, not 10 - (3 - 2)
    assert steps == ["10 - 3 = 7", "7 - 2 = 5"]


def test_solve_does_not_mutate_its_arguments():
    numbers, ops = [2, 3, 4], ["+", "*"]
    _solve(numbers, ops)
    assert numbers == [2, 3, 4]
    assert ops == ["+", "*"]


def test_same_seed_gives_same_problems():
    a, b = generate(50, seed=7), generate(50, seed=7)
    assert [p.expression for p in a] == [p.expression for p in b]
    assert [p.answer for p in a] == [p.answer for p in b]
    assert [p.steps for p in a] == [p.steps for p in b]


def test_different_seeds_give_different_problems():
    a = [p.expression for p in generate(30, seed=0)]
    b = [p.expression for p in generate(30, seed=1)]
    assert a != b
    assert len(set(a) & set(b)) < 30


def test_generate_returns_n_distinct_expressions():
    problems = generate(300, seed=3)
    assert len(problems) == 300
    assert len({p.expression for p in problems}) == 300


def test_generate_stops_when_the_space_is_exhausted():
    # max_operand=1: the only numbers are 1, so at most 3**2 + 3**3 = 36 expressions exist.
    problems = generate(100, seed=0, max_operand=1)
    assert 0 < len(problems) <= 36
    assert len({p.expression for p in problems}) == len(problems)


@pytest.mark.parametrize("seed", [0, 1, 2, 42])
def test_operators_and_operands(seed):
    for p in generate(100, seed=seed):
        tokens = p.expression.split(" ")
        numbers, ops = tokens[0::2], tokens[1::2]
        assert 2 <= len(ops) <= 3
        assert set(ops) <= {"+", "-", "*"}
        assert len(numbers) == len(ops) + 1
        assert all(n.isdigit() and 1 <= int(n) <= 12 for n in numbers)


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_answers_match_python_precedence(seed):
    for p in generate(200, seed=seed):
        assert p.answer == eval(p.expression)  # noqa: S307 - digits and + - * only


@pytest.mark.parametrize("seed", [0, 9])
def test_each_step_is_correct_and_the_last_equals_the_answer(seed):
    for p in generate(200, seed=seed):
        ops_in_expression = p.expression.split(" ")[1::2]
        assert len(p.steps) == len(ops_in_expression)  # one line per operation
        for line in p.steps:
            m = STEP.match(line)
            assert m, f"step line {line!r} is not 'a op b = c'"
            a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
            assert _apply(a, op, b) == c, line
        assert int(STEP.match(p.steps[-1]).group(4)) == p.answer
        # Multiplications come first.
        step_ops = [STEP.match(s).group(2) for s in p.steps]
        n_mul = step_ops.count("*")
        assert step_ops[:n_mul] == ["*"] * n_mul


def test_make_problem_uses_the_rng_only():
    a = make_problem(random.Random(123))
    b = make_problem(random.Random(123))
    assert a == b


def test_question_and_solution_text():
    p = arithmetic.ArithmeticProblem(expression="2 + 3 * 4", answer=14, steps=["3 * 4 = 12", "2 + 12 = 14"])
    assert question(p) == "What is 2 + 3 * 4?"
    assert solution_text(p) == "3 * 4 = 12\n2 + 12 = 14"


@pytest.mark.parametrize("final", ["14", " 14 ", "14\n", "+14", "014"])
def test_check_accepts_the_integer(final):
    assert integers_equal(final, "14") is True


@pytest.mark.parametrize("final", ["14.5", "", None, "fourteen", "15", "1 4", "14 apples", "-14"])
def test_check_rejects_everything_else(final):
    assert integers_equal(final, "14") is False


def test_check_negative_answers():
    assert integers_equal("-3", "-3") is True
    assert integers_equal(" -3", "-3") is True
    assert integers_equal("3", "-3") is False
