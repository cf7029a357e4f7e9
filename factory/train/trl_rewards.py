"""The factory's rewards with TRL's reward-function signature, for `GRPOTrainer(reward_funcs=[...])`.

TRL calls each reward with the batch: `fn(prompts, completions, **columns)`, where `completions` are
strings (standard datasets) or lists of messages (conversational ones) and every other dataset column
arrives as a list (`answer` or `solution` for the gold answer, `task`, `tests`, `format`). Each
completion goes through the same parser and verifier registry as the factory's filters, `factory eval`
and its own GRPO, so a reward means the same thing in every trainer:

    from trl import GRPOTrainer
    from factory.train.trl_rewards import accuracy_reward, format_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[accuracy_reward, format_reward], train_dataset=export)

A dataset exported by `factory export` has `prompt`, `solution` and `task` columns already. Without a
`format` column the format is detected per completion (`auto`); `make_reward("accuracy", fmt="think_boxed")`
fixes it. TRL is not a dependency of the factory: this module imports nothing from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from factory.train.rewards import REWARDS

TRLReward = Callable[..., list[float]]


def _text(completion: Any) -> str:
    """A completion as TRL passes it: a string, or the assistant's messages of a conversational example."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion
                       if isinstance(m, dict) and m.get("role", "assistant") == "assistant")
    return str(completion or "")


def _column(columns: dict[str, Any], i: int, *names: str) -> Any:
    for name in names:
        values = columns.get(name)
        if isinstance(values, (list, tuple)) and i < len(values) and values[i] is not None:
            return values[i]
    return None


def make_reward(name: str, fmt: str | None = None) -> TRLReward:
    """The factory reward `name` (see factory.train.rewards.REWARDS) as a TRL reward function."""
    reward = REWARDS.get(name)

    def trl_reward(prompts: list[Any] | None = None, completions: list[Any] | None = None,
                   **columns: Any) -> list[float]:
        scores = []
        for i, completion in enumerate(completions or []):
            sample = {
                "completion": _text(completion),
                "problem": _column(columns, i, "problem") or _text((prompts or [None] * (i + 1))[i] or ""),
                "answer": _column(columns, i, "answer", "solution"),
                "task": _column(columns, i, "task") or "math",
                "tests": _column(columns, i, "tests"),
                "completion_tokens": None,
                "metadata": {"format": fmt or _column(columns, i, "format") or "auto"},
            }
            scores.append(float(reward(sample)))
        return scores

    trl_reward.__name__ = f"{name}_reward"  # TRL logs each reward under its function's name
    return trl_reward


accuracy_reward = make_reward("accuracy")
format_reward = make_reward("format")
language_reward = make_reward("language")
