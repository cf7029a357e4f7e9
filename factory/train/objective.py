"""GRPO's objective: per-token log-probs of the sampled completions, the clipped surrogate with its
KL penalty aggregated as TRL's GRPOTrainer does for each loss type, and its micro-batched form.
Pure functions of tensors and a model: `grpo.py` runs them on rollouts, tests and bench/train.py
hold them against TRL's formulas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from factory.train.config import GRPOConfig


def sequence_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token: [batch, seq-1], aligned with input_ids[:, 1:]."""
    return logprobs_and_entropy(model, input_ids, attention_mask)[0]


def logprobs_and_entropy(model: Any, input_ids: torch.Tensor,
                         attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each next token's log-probability and the entropy of the distribution it was drawn from, both
    [batch, seq-1]: the entropy falling is how a user sees the policy sharpen (or collapse)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    logp = F.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return torch.gather(logp, 2, input_ids[:, 1:, None]).squeeze(-1), entropy


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    epsilon: float,
    epsilon_high: float,
    loss_type: str,
    max_new_tokens: int,
    micro_batches: int = 1,
    batch_tokens: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate with a k3 KL penalty, aggregated as `loss_type` says (TRL's GRPOTrainer).

    All tensors are [batch, tokens] over completion tokens (mask 1 where a token counts),
    except advantages [batch]. Called on one of an update's `micro_batches` micro-batches, it
    returns that micro-batch's share: the shares sum to the update's loss. `batch_tokens` is the
    number of completion tokens in the whole update (all micro-batches), which `dapo` divides by;
    by default this micro-batch's own, as when it is the whole batch. `old_logps` None: the policy
    being updated sampled (one update per batch), so the ratio is 1 with the policy's gradient.
    """
    ratio = torch.exp(logps - (logps.detach() if old_logps is None else old_logps))
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high)
    A = advantages[:, None]
    per_token = -torch.min(ratio * A, clipped * A)
    kl = torch.zeros_like(logps)
    if ref_logps is not None and beta > 0:
        # k3 estimator of KL(pi || pi_ref): exp(ref - pi) - (ref - pi) - 1, unbiased and >= 0.
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":  # each sequence's mean, then the mean over sequences, per micro-batch
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean() / micro_batches
    elif loss_type == "bnpo":  # each micro-batch's token mean: its tokens weigh more when it has fewer
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1) / micro_batches
    elif loss_type == "dapo":  # every token of the whole batch weighs the same, however it is micro-batched
        total = mask.sum() if batch_tokens is None else torch.as_tensor(batch_tokens, dtype=per_token.dtype)
        loss = (per_token * mask).sum() / total.clamp(min=1)
    else:  # dr_grpo: a constant normalizer, so length does not bias the gradient
        loss = (per_token * mask).sum() / (per_token.shape[0] * max_new_tokens) / micro_batches
    is_clipped = ((ratio < 1 - epsilon) & (A < 0)) | ((ratio > 1 + epsilon_high) & (A > 0))
    n = mask.sum().clamp(min=1)
    metrics = {"kl": float((kl.detach() * mask).sum() / n), "clip_fraction": float((is_clipped * mask).sum() / n)}
    return loss, metrics


def micro_batch_losses(
    logps_of: Callable[[slice], torch.Tensor], old: torch.Tensor | None, ref: torch.Tensor | None,
    advantages: torch.Tensor, mask: torch.Tensor, config: GRPOConfig,
) -> Iterator[tuple[torch.Tensor, dict[str, float]]]:
    """One update's micro-batches in order, each with its share of the loss (backward each share:
    the gradients add up to the whole batch's). `logps_of(s)` is the policy's log-probs of rows s."""
    eps_high = config.epsilon_high if config.epsilon_high is not None else config.epsilon
    step = config.micro_batch_size
    micro_batches = -(-len(advantages) // step)
    batch_tokens = mask.sum()  # the dapo normalizer: fixed before the batch is split
    for i in range(0, len(advantages), step):
        s = slice(i, i + step)
        yield grpo_loss(logps_of(s), None if old is None else old[s], None if ref is None else ref[s], advantages[s],
                        mask[s], config.beta, config.epsilon, eps_high, config.loss_type, config.max_new_tokens,
                        micro_batches, batch_tokens)


def live_logprobs(
    model: Any, ids: torch.Tensor, attn: torch.Tensor, live: torch.Tensor | None, with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's log-probs of rows `ids`, with a gradient only through the `live` rows (None: all).

    Without a KL term, a rollout whose advantage is 0 (its group all right or all wrong: often most
    of a batch) adds exactly 0 to the loss and its gradient, so only the others need the forward and
    backward pass; the rest get log-probs 0, which the loss multiplies by 0. Their entropy, which the
    log shows, comes from a forward pass without a graph, and only when `with_entropy`."""
    if live is None or bool(live.all()):
        logps, entropy = logprobs_and_entropy(model, ids, attn)
        return logps, entropy.detach()
    logps = torch.zeros(ids.shape[0], ids.shape[1] - 1, device=ids.device)
    entropy = torch.zeros_like(logps)
    if bool(live.any()):
        lp, ent = logprobs_and_entropy(model, ids[live], attn[live])
        logps = logps.index_put((live.nonzero().squeeze(1),), lp)
        entropy[live] = ent.detach()
    if with_entropy:
        with torch.no_grad():
            entropy[~live] = logprobs_and_entropy(model, ids[~live], attn[~live])[1]
    return logps, entropy
