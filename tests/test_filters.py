"""Each per-sample filter on table-driven good and bad cases, asserting the reason string."""

from __future__ import annotations

import json

import pytest

from factory.filter.steps.base import Outcome, Reject, build
from factory.filter.steps.basic import Complete, Format, Length, Parsed
from factory.filter.steps.correct import Correct
from factory.filter.steps.language import Language
from factory.filter.steps.readability import Readability, repeated_ngram_share


def sample(**kw):
    base = {
        "id": "s1", "problem_id": "p1", "task": "arithmetic", "problem": "What is 2 + 3 * 4?", "answer": "14",
        "completion": "<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>",
        "reasoning": "3 * 4 = 12, 2 + 12 = 14", "final": "14", "parse_error": None, "error": None,
        "finish_reason": "stop", "completion_tokens": 30, "metadata": json.dumps({"prefill": ""}), "scores": "{}",
    }
    base.update(kw)
    return base


def reason(out) -> str | None:
    if isinstance(out, Outcome):
        out = out.reject
    return out.reason if isinstance(out, Reject) else None


CASES = [
    (Parsed(), {}, None),
    (Parsed(), {"error": "APIConnectionError"}, "generation_error"),
    (Parsed(), {"parse_error": "no_answer", "final": None}, "unparsed"),
    (Complete(), {}, None),
    (Complete(), {"finish_reason": "length"}, "truncated"),
    (Complete(), {"completion": "<think>a</think><answer>1"}, "unclosed_tag"),
    (Complete(), {"completion": "<think>a<think>b</think><answer>1</answer>"}, "unclosed_tag"),
    (Complete(), {"completion": "a</think><answer>1</answer>", "metadata": json.dumps({"prefill": "<think>"})}, None),
    (Format(), {}, None),
    (Format(), {"completion": "<answer>14</answer>"}, "bad_format"),  # the seed's o3: no <think>
    (Format(), {"completion": "<think>...</think> <answer> 7<answer>"}, "bad_format"),  # the seed's o4
    (Format(), {"completion": "<think> </think><answer>14</answer>"}, "empty_part"),
    (Format(), {"completion": "<think>a</think><answer>1</answer> trailing words"}, "bad_format"),
    (Format(), {"completion": "<think>a</think><think>b</think><answer>1</answer>"}, "bad_format"),
    (Format(), {"completion": "| special_token | Step 1 | special_token | Summary: The answer is 14."}, None),
    (Format(), {"completion": " Step 1: 3 * 4 = 12 | special_token | Summary: 14.",
                "metadata": json.dumps({"prefill": "| special_token | Reasoning:"})}, None),
    (Format(), {"completion": "| special_token | only reasoning"}, "bad_format"),
    (Format(), {"completion": "| special_token |  | special_token | Summary: 14"}, "empty_part"),
    (Format(), {"completion": "just text"}, "bad_format"),
    (Length(max_completion_tokens=20), {}, "too_long"),
    (Length(min_completion_tokens=31), {}, "too_short"),
    (Length(min_reasoning_chars=100), {}, "too_short"),
    (Length(), {}, None),
    (Correct(), {}, None),
    (Correct(), {"final": "20"}, "wrong_answer"),
    (Correct(), {"final": None}, "no_answer"),
    (Correct(), {"task": "math", "answer": "0.5", "final": "\\frac{1}{2}"}, None),
    (Correct(), {"task": "math", "answer": "14", "final": "14.0"}, None),
    (Correct(), {"task": "math", "answer": "0.75", "final": "\\boxed{\\dfrac{3}{4}}"}, None),
    (Correct(), {"task": "math", "answer": "14", "final": "20"}, "wrong_answer"),
    (Language(), {}, None),
    (Language(), {"reasoning": "First 3 * 4 = 12. 然后我们把二和十二相加得到十四，这就是最终的答案。"},
     "language_mismatch"),
    (Language(min_share=0.5), {"reasoning": "First multiply three by four to get twelve. Then add two to get fourteen. "
                                            "然后我们把二和十二相加得到十四。 So the final answer is fourteen indeed."},
     "mixed_language"),
    (Language(target="ru"), {"reasoning": "Multiply first, then add the two numbers."}, "language_mismatch"),
    (Language(target="ru"), {"reasoning": "Сначала умножаем, потом складываем: 3 * 4 = 12."}, None),
    (Readability(), {}, None),
    (Readability(max_paragraph_chars=10), {}, "long_paragraph"),
    (Readability(), {"reasoning": "Let me write code:\n```python\nprint(14)\n```"}, "code_block"),
    (Readability(), {"task": "code", "reasoning": "Plan:\n```python\nprint(14)\n```"}, None),
    (Readability(), {"reasoning": "wait let me check again " * 40}, "repetitive"),
]


@pytest.mark.parametrize("flt, changes, expected", CASES,
                         ids=lambda v: getattr(v, "name", None) if hasattr(v, "screen") else None)
def test_filter_cases(flt, changes, expected):
    s = sample(**changes)
    flt.prepare([s])
    assert reason(flt.screen(s)) == expected


def test_correct_scores_even_when_only_scoring():
    out = Correct(reject=False).screen(sample(final="20"))
    assert out.reject is None and out.scores == {"correct": 0.0}
    assert Correct().screen(sample()).scores == {"correct": 1.0}


def test_majority_vote_without_gold():
    group = [sample(id=f"s{i}", answer=None, task="math", final=f) for i, f in enumerate(["14", " 14", "20", "14"])]
    flt = Correct()
    flt.prepare(group)
    assert [reason(flt.screen(s)) for s in group] == [None, None, "not_majority", None]
    split = [sample(id=f"t{i}", problem_id="p2", answer=None, final=f) for i, f in enumerate(["1", "2", "3", "4"])]
    flt.prepare(split)
    assert reason(flt.screen(split[0])) == "no_majority"


def test_repeated_ngram_share():
    assert repeated_ngram_share("a b c d e f g h i j", 3) == 0.0
    assert repeated_ngram_share("a b a b a b a b", 2) == pytest.approx(5 / 7)


def test_build_refuses_unknown_settings_and_wrong_types():
    from factory.core.errors import FactoryError

    with pytest.raises(FactoryError, match="unknown setting 'max_len'.*max_completion_tokens"):
        build(Length, {"max_len": 3}, "chain.yaml: step 1")
    with pytest.raises(FactoryError, match="step 1 \\(length\\): max_completion_tokens='many' is not valid: "
                                           "expected a whole number"):
        build(Length, {"max_completion_tokens": "many"}, "chain.yaml: step 1")
    with pytest.raises(FactoryError, match="a min is larger than its max"):
        build(Length, {"min_completion_tokens": 10, "max_completion_tokens": 5}, "x")
    assert build(Length, {"max_completion_tokens": 5}, "x").max_completion_tokens == 5
