"""One answer path: a sample in each shipped template's format (and each format `auto` detects) is
read by the same parser and checked by the same verifier in the `correct` filter, the GRPO rewards and
`factory eval`'s scoring, so the three agree on right and on wrong."""

from __future__ import annotations

import json

import pytest

from factory.filter.steps.basic import Format, Parsed
from factory.filter.steps.correct import Correct
from factory.generate.evaluate import score_samples
from factory.prompting.formats import parse_row
from factory.prompting.templates import load_template
from factory.train.rewards import accuracy, format_reward

# template -> (the model's completion after the prompt's prefill) for "What is 2 + 3 * 4?"
RIGHT = {
    "r1_zero": "<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>",
    "arithmetic_r1": "<think>\n3 * 4 = 12\n2 + 12 = 14\n</think>\n<answer>14</answer>",
    "few_shot_long_cot": " | special_token | 3 * 4 = 12, then 2 + 12 = 14. | special_token | "
                         "Summary: The answer is 14.",
    "reflect_verify": " 3 * 4 = 12, then 2 + 12 = 14. Check: 14 - 12 = 2. | special_token | Summary: The answer is 14.",
    "refine": " 1. 3 * 4 = 12. 2. 2 + 12 = 14. | special_token | Summary: The answer is 14.",
    "r1_distill": "Multiplication first: 3 * 4 = 12, then 2 + 12 = 14.\n</think>\n\nThe answer is $\\boxed{14}$.",
}
# Formats no shipped template asks for, as `auto` finds them in imported generations.
AUTO = {
    "thought_solution": "<|begin_of_thought|>\n3 * 4 = 12, 2 + 12 = 14.\n<|end_of_thought|>\n\n"
                        "<|begin_of_solution|>\nSo the value is $\\boxed{14}$.\n<|end_of_solution|>",
    "boxed": "First 3 * 4 = 12, then 2 + 12 = 14, so the value is $\\boxed{14}$.",
}


def sample(completion: str, fmt: str, prefill: str, answer: str = "14") -> dict:
    """A row as generation writes it: `reasoning` and `final` from the format's parser."""
    row = {"id": "s", "problem_id": "p", "problem": "What is 2 + 3 * 4?", "answer": answer, "task": "math",
           "tests": None, "completion": completion, "completion_tokens": 40, "error": None, "finish_reason": "stop",
           "metadata": json.dumps({"format": fmt, "prefill": prefill})}
    parsed = parse_row(row)
    return {**row, "reasoning": parsed.reasoning, "final": parsed.final, "parse_error": parsed.error}


CASES = [(name, completion, load_template(name).format, load_template(name).prefill)
         for name, completion in RIGHT.items()]
CASES += [(fmt, completion, "auto", "") for fmt, completion in AUTO.items()]


@pytest.mark.parametrize("name, completion, fmt, prefill", CASES, ids=[c[0] for c in CASES])
def test_right_scores_one_everywhere_and_wrong_zero(name, completion, fmt, prefill):
    right = sample(completion, fmt, prefill)
    assert Parsed().screen(right) is None and right["final"] == "14"
    assert Correct().screen(right).reject is None
    assert Format().screen(right) is None
    assert accuracy(right) == 1.0 and format_reward(right) == 1.0
    assert score_samples([right], k=1)["pass@1"] == 1.0

    wrong = sample(completion, fmt, prefill, answer="20")
    assert Correct().screen(wrong).reject.reason == "wrong_answer"
    assert accuracy(wrong) == 0.0
    assert score_samples([wrong], k=1)["pass@1"] == 0.0


def test_prefill_is_part_of_the_format():
    """Without its prefill, r1_distill's completion closes a <think> it never opened: not the format."""
    bare = sample(RIGHT["r1_distill"], "think_boxed", "")
    assert Format().screen(bare).reason == "bad_format" and format_reward(bare) == 0.0
