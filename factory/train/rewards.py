"""GRPO rewards: small pure functions `fn(sample) -> float` in one registry (open-r1 style).

A sample is a dict with at least `completion`, `problem`, `answer` (gold, may be None), `task`
("arithmetic", "math", "code", "gym:<name>"), `tests` (JSON or None) and `completion_tokens`;
its `metadata` (or top-level `format`) names the output format and the prompt's prefill, and the
answer is read by that format's parser: the same path as the filters and `factory eval`.
`parse_reward_spec` turns "accuracy,format" + "1,0.1" into weighted rewards, `score` applies them
to a batch, and `group_advantages` turns one group's rewards into GRPO (or Dr. GRPO) advantages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from factory.core.errors import FactoryError
from factory.core.registry import Registry
from factory.core.sample import prefilled_completion
from factory.filter.lang import detect_language, language_stats
from factory.prompting.formats import parse_output, parse_row, sample_format
from factory.verify.registry import verify_sample

if TYPE_CHECKING:
    import torch

Reward = Callable[[dict[str, Any]], float]
REWARDS: Registry[Reward] = Registry("reward")


def extract_answer(completion: str) -> str | None:
    """The final answer of an R1-Zero `<think>/<answer>` completion: the last closed <answer>, else
    the last non-empty text after an <answer> tag (so "<answer> 7<answer>" reads "7")."""
    return parse_output(completion, "think_answer").final or None


@REWARDS.register("accuracy")
def accuracy(sample: dict[str, Any]) -> float:
    """1.0 when the final answer, read by the sample's format parser, verifies against the gold
    answer (or the tests), else 0.0."""
    final = parse_row(sample).final or None
    kind = str(sample.get("task") or "math").split(":", 1)[0]
    # Code is the exception to "no answer, no reward": its verifier reads the program from the
    # completion's code block when the template does not put it in <answer>.
    if final is None and kind != "code":
        return 0.0
    # Arithmetic and math compare with a gold answer; without one there is nothing to match.
    if sample.get("answer") is None and kind in ("arithmetic", "math"):
        return 0.0
    return 1.0 if verify_sample({**sample, "final": final}).ok else 0.0


@REWARDS.register("format")
def format_reward(sample: dict[str, Any]) -> float:
    """1.0 when the completion is in its format: for `<think>/<answer>`, one non-empty <think>…</think>
    then an <answer> tag (only whitespace around and between); for the others, the format filter's check.

    Looser than the `format` filter for `<think>/<answer>` on purpose: the closing </answer> is not
    demanded and text may follow the answer, so "<think>…</think> <answer> 7<answer>" earns it. Data
    filtering keeps the strict version; this reward only teaches the model to think first and then answer.
    """
    text = prefilled_completion(sample)
    fmt = sample_format(sample, text)
    return 1.0 if fmt is not None and fmt.check_shape(text, strict=False) is None else 0.0


@REWARDS.register("language")
def language(sample: dict[str, Any]) -> float:
    """R1's language consistency: share of the reasoning's words in the target language.

    The reasoning is what the format's parser calls reasoning, else the whole completion. The target
    is the sample's `language`, else the problem's detected language, else English. No words (pure
    arithmetic) counts as consistent: 1.0.
    """
    parsed = parse_row(sample)
    reasoning = parsed.reasoning if parsed.reasoning is not None else sample.get("completion") or ""
    target = sample.get("language") or detect_language(sample.get("problem") or "") or "en"
    return float(language_stats(reasoning, target).share)


def make_length_reward(max_tokens: int = 1024, cap: int | None = None) -> Reward:
    """1.0 up to `max_tokens`, then linearly down to 0.0 at `cap` (default 2 * max_tokens).

    Without `completion_tokens`, len(completion) // 4 stands in (about 4 characters a token).
    """
    cap = 2 * max_tokens if cap is None else cap
    if max_tokens < 0 or cap <= max_tokens:
        raise FactoryError(f"length reward needs 0 <= max_tokens < cap, got max_tokens={max_tokens}, cap={cap}")

    def length(sample: dict[str, Any]) -> float:
        tokens = sample.get("completion_tokens")
        if tokens is None:
            tokens = len(sample.get("completion") or "") // 4
        if tokens <= max_tokens:
            return 1.0
        return max(0.0, (cap - tokens) / (cap - max_tokens))

    return length


REWARDS.register(
    "length", make_length_reward(), help="1.0 up to 1024 completion tokens, then linearly down to 0.0 at 2048; "
    "in GRPO, 1.0 up to length_limit and 0.0 at the run's max_new_tokens."
)

Spec = list[tuple[str, float, Reward]]


def parse_reward_spec(names: str, weights: str | None = None, max_new_tokens: int | None = None,
                      length_limit: int | None = None) -> Spec:
    """"accuracy,format" and "1,0.1" -> [(name, weight, fn), ...]; weights default to 1.0 each.

    With the run's `max_new_tokens`, the length reward is the run's own: 1.0 up to `length_limit`
    (default half of max_new_tokens), then down to 0.0 at max_new_tokens. The registered one starts
    falling at 1024 tokens, which a run sampling 256 never reaches: every completion would get 1.0."""
    valid = ", ".join(REWARDS)
    keys = [n.strip() for n in (names or "").split(",") if n.strip()]
    if not keys:
        raise FactoryError(f"no rewards given; valid rewards: {valid}")
    for key in keys:
        REWARDS.get(key)  # an unknown name fails here, before the weights are read
    if len(set(keys)) != len(keys):  # per-reward logs are keyed by name
        raise FactoryError(f"reward listed twice in {names!r}; valid rewards: {valid}")
    if weights is None or not weights.strip():
        values = [1.0] * len(keys)
    else:
        parts = [w.strip() for w in weights.split(",")]
        if len(parts) != len(keys):
            raise FactoryError(
                f"{len(keys)} rewards ({names}) but {len(parts)} weights ({weights}); valid rewards: {valid}"
            )
        try:
            values = [float(w) for w in parts]
        except ValueError:
            raise FactoryError(f"reward weights must be numbers, got {weights!r}; valid rewards: {valid}") from None
        if not all(math.isfinite(v) for v in values):
            raise FactoryError(f"reward weights must be finite, got {weights!r}; valid rewards: {valid}")
    fns = {key: REWARDS.get(key) for key in keys}
    if "length" in fns and max_new_tokens is not None:
        limit = max_new_tokens // 2 if length_limit is None else length_limit
        fns["length"] = make_length_reward(limit, cap=max_new_tokens)
    return [(key, w, fns[key]) for key, w in zip(keys, values)]


def score(samples: Sequence[dict[str, Any]], spec: Spec) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted total per sample, and each reward's raw (unweighted) values for logging."""
    raw = {name: [float(fn(s)) for s in samples] for name, _, fn in spec}
    totals = [sum(w * raw[name][i] for name, w, _ in spec) for i in range(len(samples))]
    return totals, raw


def group_advantages(
    rewards: torch.Tensor | Sequence[float], group_size: int, eps: float = 1e-4, scale: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO advantages for rewards laid out group by group, and each group's (unbiased) std.

    scale=True: (r - mean) / (std + eps); scale=False: r - mean (Dr. GRPO, which drops the std
    division because it up-weights groups that are nearly all right or all wrong). A group with no
    spread gets zero advantages either way; its std of 0 lets the trainer log how often that happens.
    """
    import torch  # here, so that listing or parsing rewards does not pay for importing torch

    r = torch.as_tensor(rewards)
    r = r if r.is_floating_point() else r.float()
    if group_size < 2 or r.dim() != 1 or r.numel() % group_size:
        raise FactoryError(
            f"group_advantages needs group_size >= 2 and a 1-D tensor whose length is a multiple of it, "
            f"got group_size={group_size}, shape={tuple(r.shape)}"
        )
    groups = r.view(-1, group_size)
    std = groups.std(dim=1, keepdim=True)  # torch's default: unbiased (n - 1)
    adv = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (std + eps)
    return adv.reshape(-1), std.squeeze(1)
