"""Each output-format parser on good completions and on the ways a completion breaks."""

from __future__ import annotations

import pytest

from factory.prompting.formats import FORMATS
from factory.prompting.parsers import (
    Parsed,
    answer_from_summary,
    last_boxed,
    parse_score,
    parse_special_token,
    parse_think_answer,
)


def test_registry():
    assert {"think_answer", "special_token", "score", "think_boxed", "thought_solution", "boxed"} <= set(FORMATS)
    assert FORMATS.get("think_answer").parse is parse_think_answer


# --- think_answer ---------------------------------------------------------------------


def test_think_answer_good():
    p = parse_think_answer("<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>")
    assert p == Parsed("3 * 4 = 12, 2 + 12 = 14", "14", None)
    assert p.ok


def test_think_answer_strips_whitespace_and_keeps_newlines_inside():
    p = parse_think_answer("<think>\n  step 1\nstep 2\n</think>\n\n<answer>\n 14 \n</answer>\n")
    assert p.reasoning == "step 1\nstep 2"
    assert p.final == "14"
    assert p.ok


def test_think_answer_case_insensitive_tags():
    p = parse_think_answer("<THINK>r</Think> <Answer>14</ANSWER>")
    assert (p.reasoning, p.final, p.error) == ("r", "14", None)


def test_think_answer_multiple_answers_takes_last():
    p = parse_think_answer("<think>r</think> <answer>12</answer> wait <answer>14</answer>")
    assert p.final == "14"
    assert p.ok


def test_think_answer_prefill_only_closing_tag():
    # The prompt ended with "<think>", so the completion starts inside the block.
    p = parse_think_answer(" 3 * 4 = 12 </think> <answer>14</answer>")
    assert (p.reasoning, p.final, p.error) == ("3 * 4 = 12", "14", None)


def test_think_answer_prefill_case_insensitive():
    p = parse_think_answer("r</THINK><answer>1</answer>")
    assert (p.reasoning, p.final, p.error) == ("r", "1", None)


def test_think_answer_no_think():
    p = parse_think_answer("The answer is 14. <answer>14</answer>")
    assert p.error == "no_think"
    assert not p.ok
    assert p.reasoning is None
    assert p.final == "14"  # kept for diagnosis, flagged by the error


def test_think_answer_plain_text():
    p = parse_think_answer("just some text")
    assert (p.reasoning, p.final, p.error) == (None, None, "no_think")


def test_think_answer_unclosed_think():
    p = parse_think_answer("<think>3 * 4 = 12 and then I ran out of tokens")
    assert p.error == "unclosed_think"
    assert p.reasoning is None and p.final is None


def test_think_answer_no_answer():
    p = parse_think_answer("<think>3 * 4 = 12</think> so 14.")
    assert (p.reasoning, p.final, p.error) == ("3 * 4 = 12", None, "no_answer")


def test_think_answer_unclosed_answer_seed_example():
    p = parse_think_answer("<think>...</think> <answer> 7<answer>")
    assert p.error == "unclosed_answer"
    assert p.final == "7"  # kept for the accuracy reward and diagnosis, flagged by the error
    assert p.reasoning == "..."


def test_think_answer_answer_only_before_think_is_not_used():
    p = parse_think_answer("<answer>3</answer><think>r</think> nothing after")
    assert p.error == "no_answer"
    assert p.final is None


def test_think_answer_empty_string():
    assert parse_think_answer("").error == "no_think"


# --- special_token --------------------------------------------------------------------

SEED = (
    "| special_token | First, find the square root of 9, which is 3. Then, add 5 to 3. "
    "3 + 5 equals 8. | special_token | Summary: The answer is 8."
)


def test_special_token_seed_example():
    p = parse_special_token(SEED)
    assert p.ok
    assert p.final == "8"
    assert p.reasoning == "First, find the square root of 9, which is 3. Then, add 5 to 3. 3 + 5 equals 8."


@pytest.mark.parametrize(
    "text",
    [
        "|special_token| r |special_token| The answer is 8.",
        "|  special_token  | r |\tspecial_token\t| The answer is 8.",
        "| SPECIAL_TOKEN | r | Special_Token | The answer is 8.",
        "| special_token |\nr\n| special_token |\nSummary: The answer is 8.\n",
    ],
)
def test_special_token_whitespace_and_case_variants(text):
    p = parse_special_token(text)
    assert (p.reasoning, p.final, p.error) == ("r", "8", None)


def test_special_token_boxed_with_nested_braces():
    p = parse_special_token(r"| special_token | half | special_token | Summary: so \boxed{\frac{1}{2}} is it.")
    assert p.final == r"\frac{1}{2}"
    assert p.ok


def test_special_token_boxed_wins_over_answer_is():
    p = parse_special_token(r"| special_token | r | special_token | The answer is 3, i.e. \boxed{4}.")
    assert p.final == "4"


def test_special_token_final_answer_forms():
    assert parse_special_token("| special_token | r | special_token | Final answer: 12").final == "12"
    assert parse_special_token("| special_token | r | special_token | The answer = -3.").final == "-3"
    assert parse_special_token("| special_token | r | special_token | answer is 3.5").final == "3.5"


def test_special_token_summary_without_answer_is_whole_summary():
    p = parse_special_token("| special_token | r | special_token | Summary: We get eight apples")
    assert p.final == "We get eight apples"
    assert p.ok


def test_special_token_multiline_summary_uses_last_line():
    p = parse_special_token("| special_token | r | special_token | Summary: checked twice.\nThe answer is 8.")
    assert p.final == "8"


def test_special_token_no_special_token():
    p = parse_special_token("The answer is 8.")
    assert (p.reasoning, p.final, p.error) == (None, None, "no_special_token")


def test_special_token_no_summary():
    p = parse_special_token("| special_token | First, 3 + 5 = 8 and then the model stopped")
    assert p.error == "no_summary"
    assert p.final is None
    assert p.reasoning == "First, 3 + 5 = 8 and then the model stopped"


def test_special_token_empty_reasoning():
    p = parse_special_token("| special_token |   | special_token | The answer is 8.")
    assert (p.final, p.error) == (None, "empty_reasoning")


def test_special_token_empty_summary():
    p = parse_special_token("| special_token | r | special_token |  \n")
    assert (p.reasoning, p.final, p.error) == ("r", None, "empty_summary")


def test_last_boxed():
    assert last_boxed(r"\boxed{1} and \boxed{2}") == "2"
    assert last_boxed(r"\boxed{ {a}{b} }") == "{a}{b}"
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{unclosed") is None


def test_answer_from_summary():
    assert answer_from_summary("Summary: The answer is 8.") == "8"
    assert answer_from_summary("summary: the final answer is x + 1") == "x + 1"
    assert answer_from_summary("  Just text  ") == "Just text"


# --- score ----------------------------------------------------------------------------


def test_score_simple():
    p = parse_score("Good. Score: 8")
    assert (p.reasoning, p.final, p.error) == ("Good.", "8", None)


def test_score_out_of_ten():
    assert parse_score("Score: 7/10").final == "7"
    assert parse_score("score = 9 / 10").final == "9"


def test_score_decimal_and_case():
    assert parse_score("fine\nSCORE: 6.5").final == "6.5"


def test_score_last_one_wins():
    p = parse_score("First I thought Score: 3. On reflection, Score: 9")
    assert p.final == "9"
    assert p.reasoning == "First I thought Score: 3. On reflection,"


def test_score_missing():
    p = parse_score("A fine solution, I would give it an eight.")
    assert (p.final, p.error) == (None, "no_score")
    assert p.reasoning == "A fine solution, I would give it an eight."
    assert parse_score("   ") == Parsed(None, None, "no_score")
