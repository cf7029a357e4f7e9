"""GRPO rewards and group advantages (factory.train.rewards), pinned on the seed's worked example."""

from __future__ import annotations

import math

import pytest
import torch

from factory.core.errors import FactoryError
from factory.train.rewards import (
    REWARDS,
    accuracy,
    extract_answer,
    format_reward,
    group_advantages,
    language,
    make_length_reward,
    parse_reward_spec,
    score,
)

PROBLEM = "What is 2 + 3 * 4?"
COMPLETIONS = [
    "<think>2 + 3 = 5, 5 * 4 = 20</think> <answer> 20</answer>",  # o1: wrong order of operations
    "<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>",  # o2: right
    "<answer>14</answer>",  # o3: right, no reasoning
    "<think>...some gibberish reasoning...</think>  <answer> 7<answer>",  # o4: wrong, broken closing tag
]


def sample(completion: str, **over) -> dict:
    base = {"completion": completion, "problem": PROBLEM, "answer": "14", "task": "arithmetic",
            "tests": None, "completion_tokens": None}
    return base | over


SEED = [sample(c) for c in COMPLETIONS]


# --- the seed example -----------------------------------------------------------------------------------


def test_seed_answers_and_accuracy():
    assert [extract_answer(c) for c in COMPLETIONS] == ["20", "14", "14", "7"]
    assert [accuracy(s) for s in SEED] == [0.0, 1.0, 1.0, 0.0]


def test_seed_format():
    # o4's "<answer> 7<answer>" still counts: the reward asks for <think>…</think> then an <answer> tag.
    assert [format_reward(s) for s in SEED] == [1.0, 1.0, 0.0, 1.0]


def test_seed_weighted_totals_and_advantages():
    spec = parse_reward_spec("accuracy,format", "1,0.1")
    totals, raw = score(SEED, spec)
    assert raw == {"accuracy": [0.0, 1.0, 1.0, 0.0], "format": [1.0, 1.0, 0.0, 1.0]}
    assert [0.1 * f for f in raw["format"]] == pytest.approx([0.1, 0.1, 0.0, 0.1])
    assert totals == pytest.approx([0.1, 1.1, 1.0, 0.1])

    std = math.sqrt(((-0.475) ** 2 + 0.525**2 + 0.425**2 + (-0.475) ** 2) / 3)
    assert std == pytest.approx(0.55)
    expected = [(r - 0.575) / std for r in (0.1, 1.1, 1.0, 0.1)]
    adv, group_std = group_advantages(torch.tensor(totals), group_size=4, eps=0.0)
    assert adv.tolist() == pytest.approx(expected, rel=1e-5)
    assert group_std.tolist() == pytest.approx([std], rel=1e-5)
    adv_eps, _ = group_advantages(torch.tensor(totals), group_size=4)  # default eps=1e-4
    expected_eps = [(r - 0.575) / (std + 1e-4) for r in (0.1, 1.1, 1.0, 0.1)]
    assert adv_eps.tolist() == pytest.approx(expected_eps, rel=1e-5)
    assert adv_eps[1] > 0 and adv_eps[2] > 0 and adv_eps[0] < 0 and adv_eps[3] < 0


def test_seed_accuracy_plus_language():
    totals, raw = score(SEED[:2], parse_reward_spec("accuracy,language", "1,0.2"))
    assert raw["language"] == [1.0, 1.0]  # "2 + 3 = 5, 5 * 4 = 20" has no words: consistent
    assert totals == pytest.approx([0.2, 1.2])


# --- accuracy and format edge cases ---------------------------------------------------------------------


@pytest.mark.parametrize("completion, final", [
    ("no tags at all, 14", None),
    ("<answer></answer>", None),
    ("<answer>13</answer> then <answer>14</answer>", "14"),
    ("<think>x < 3</think><answer>x < 3", "x < 3"),
    ("<ANSWER> 14 </ANSWER>", "14"),
])
def test_extract_answer(completion, final):
    assert extract_answer(completion) == final


def test_accuracy_without_answer_or_gold():
    assert accuracy(sample("the answer is 14")) == 0.0
    assert accuracy(sample("<answer>14</answer>", answer=None)) == 0.0


@pytest.mark.parametrize("completion", [
    "<think></think><answer>14</answer>",  # empty reasoning
    "<think>a</think><think>b</think><answer>14</answer>",  # two think blocks
    "preamble <think>a</think><answer>14</answer>",  # text before the reasoning
    "<think>a</think> so <answer>14</answer>",  # text between reasoning and answer
    "<think>a</think>",  # no answer tag
])
def test_format_rejects(completion):
    assert format_reward(sample(completion)) == 0.0


def test_format_counts_prefilled_think():
    s = sample("reasoning here</think><answer>14</answer>", metadata='{"prefill": "<think>"}')
    assert format_reward(s) == 1.0
    assert format_reward(sample("reasoning here</think><answer>14</answer>")) == 0.0


# --- language -------------------------------------------------------------------------------------------


def test_language_mixed_chinese_in_english_is_below_one():
    reasoning = ("We need to compute 3 * 4 + 5 first. Multiplication comes before addition. "
                 "我们先计算乘法，得到十二。Then we add 5 to get 17.")
    assert language(sample(f"<think>{reasoning}</think><answer>17</answer>")) < 1.0


def test_language_russian_problem_and_reasoning():
    s = sample("<think>Сначала найдём произведение: 3 * 4 = 12. Затем прибавим 2 и получим 14.</think>"
               "<answer>14</answer>", problem="Сколько будет 2 + 3 * 4?")
    assert language(s) == 1.0
    # The same reasoning against an English target scores 0.
    assert language(s | {"language": "en"}) == 0.0


def test_language_uses_completion_without_think():
    assert language(sample("Посчитаем: ответ 14. <answer>14</answer>")) == 0.0


# --- length ---------------------------------------------------------------------------------------------


def test_length_reward():
    length = make_length_reward(max_tokens=100)
    assert length(sample("x", completion_tokens=50)) == 1.0
    assert length(sample("x", completion_tokens=100)) == 1.0  # at the limit
    assert length(sample("x", completion_tokens=150)) == pytest.approx(0.5)  # halfway to cap=200
    assert length(sample("x", completion_tokens=200)) == 0.0
    assert length(sample("x", completion_tokens=10_000)) == 0.0  # far above
    assert make_length_reward(100, cap=110)(sample("x", completion_tokens=105)) == pytest.approx(0.5)
    # No token count: about 4 characters a token.
    assert length(sample("a" * 400)) == 1.0
    assert length(sample("a" * 600)) == pytest.approx(0.5)
    assert REWARDS.get("length")(sample("x", completion_tokens=1024)) == 1.0
    with pytest.raises(FactoryError):
        make_length_reward(100, cap=100)


# --- reward spec ----------------------------------------------------------------------------------------


def test_parse_reward_spec():
    spec = parse_reward_spec("accuracy, format,language")
    assert [(n, w) for n, w, _ in spec] == [("accuracy", 1.0), ("format", 1.0), ("language", 1.0)]
    assert spec[1][2] is format_reward
    assert [w for _, w, _ in parse_reward_spec("accuracy,format,language", "1,0.1,0.2")] == [1.0, 0.1, 0.2]


@pytest.mark.parametrize("names, weights, message", [
    ("accuracy,speed", None, "unknown reward 'speed'"),
    ("accuracy,format", "1", "2 rewards"),
    ("accuracy", "1,2", "1 rewards"),
    ("accuracy,format", "1,high", "must be numbers"),
    ("accuracy", "nan", "must be finite"),
    ("", None, "no rewards"),
    ("accuracy,accuracy", None, "twice"),
])
def test_parse_reward_spec_errors(names, weights, message):
    with pytest.raises(FactoryError, match=message) as err:
        parse_reward_spec(names, weights)
    assert "accuracy, format, language, length" in str(err.value)
    assert "\n" not in str(err.value)


# --- advantages -----------------------------------------------------------------------------------------


def test_zero_spread_group():
    adv, std = group_advantages(torch.tensor([1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.0, 1.0, 0.0]), group_size=3)
    assert adv[:6].tolist() == [0.0] * 6
    assert std[:2].tolist() == [0.0, 0.0]
    assert std[2] > 0
    assert (std == 0).float().mean().item() == pytest.approx(2 / 3)


def test_dr_grpo_unscaled():
    adv, std = group_advantages(torch.tensor([0.1, 1.1, 1.0, 0.1, 0.0, 0.0, 1.0, 1.0]), group_size=4, scale=False)
    assert adv.tolist() == pytest.approx([-0.475, 0.525, 0.425, -0.475, -0.5, -0.5, 0.5, 0.5])
    assert std.tolist() == pytest.approx([0.55, math.sqrt(1 / 3)], rel=1e-5)


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(FactoryError):
        group_advantages(torch.zeros(5), group_size=4)
    with pytest.raises(FactoryError):
        group_advantages(torch.zeros(4), group_size=1)
    adv, _ = group_advantages([0, 1, 0, 1], group_size=2)  # plain lists and ints are accepted
    assert adv.dtype == torch.float32
