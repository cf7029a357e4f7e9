"""The GRPO loss is TRL's: every loss type, micro-batched or not, against TRL 1.x's
`GRPOTrainer._compute_loss` written out here (so TRL is not needed to run it); and the policy is
trained on an end token only where its sampler produced one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from factory.train.grpo import (
    LOSS_TYPES,
    GRPOConfig,
    Rollout,
    TransformersSampler,
    tokenize_rollouts,
    vllm_end_token,
)
from factory.train.objective import micro_batch_losses

B, T, MAX_NEW = 8, 12, 16


def trl_loss(logps, old, ref, advantages, mask, beta, eps_low, eps_high, loss_type, max_completion_length,
             per_device_batch):
    """TRL's GRPOTrainer._compute_loss on one process, summed over the gradient accumulation steps
    of one optimizer step as its backward passes sum them. Defaults: importance_sampling_level
    "token", steps_per_generation = gradient_accumulation_steps, no vLLM importance correction."""
    grad_accum = B // per_device_batch
    steps_per_generation, num_processes = grad_accum, 1
    num_items_in_batch = mask.sum()  # completion tokens of the whole generation batch
    total = 0.0
    for i in range(0, B, per_device_batch):
        s = slice(i, i + per_device_batch)
        per_token_logps, completion_mask = logps[s], mask[s]
        advs = advantages[s].unsqueeze(1)
        coef_1 = torch.exp(per_token_logps - old[s])
        coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
        per_token_loss = -torch.min(coef_1 * advs, coef_2 * advs)
        if beta != 0.0:
            per_token_kl = torch.exp(ref[s] - per_token_logps) - (ref[s] - per_token_logps) - 1
            per_token_loss = per_token_loss + beta * per_token_kl
        if loss_type == "grpo":
            loss = ((per_token_loss * completion_mask).sum(-1) / completion_mask.sum(-1).clamp(min=1.0)).mean()
            loss = loss / grad_accum
        elif loss_type == "bnpo":
            loss = (per_token_loss * completion_mask).sum() / completion_mask.sum().clamp(min=1.0) / grad_accum
        elif loss_type == "dr_grpo":
            loss = (per_token_loss * completion_mask).sum() / (per_token_loss.size(0) * max_completion_length)
            loss = loss / grad_accum
        elif loss_type == "dapo":
            normalizer = num_items_in_batch.clamp(min=1.0) / num_processes
            normalizer = normalizer * grad_accum / steps_per_generation
            loss = (per_token_loss * completion_mask).sum() / normalizer
        else:
            raise ValueError(loss_type)
        total = total + loss
    return total


def random_batch(seed: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g, dtype=dtype) * 3
    logps = old + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)  # ratios around 1, some clipped
    ref = old + 0.2 * torch.randn(B, T, generator=g, dtype=dtype)
    advantages = torch.randn(B, generator=g, dtype=dtype)
    # Completions of very different lengths, one empty: token means per micro-batch then differ.
    lengths = torch.tensor([T, 1, 7, 0, 12, 3, 9, 2])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(torch.long)
    return logps, old, ref, advantages, mask


def ours(logps, old, ref, advantages, mask, config):
    return sum(loss for loss, _ in micro_batch_losses(lambda s: logps[s], old, ref, advantages, mask, config))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("micro_batch_size", [B, 4, 2, 1])
@pytest.mark.parametrize("beta, eps, eps_high", [(0.0, 0.2, None), (0.04, 0.2, 0.28)])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_loss_and_gradient_equal_trls(loss_type, beta, eps, eps_high, micro_batch_size, dtype):
    logps, old, ref, advantages, mask = random_batch(seed=micro_batch_size, dtype=dtype)
    config = GRPOConfig(model="m", out="o", loss_type=loss_type, beta=beta, epsilon=eps, epsilon_high=eps_high,
                        group_size=4, batch_size=B, micro_batch_size=micro_batch_size, max_new_tokens=MAX_NEW)
    config.validate()
    a = logps.clone().requires_grad_(True)
    mine = ours(a, old, ref if beta else None, advantages, mask, config)
    mine.backward()
    b = logps.clone().requires_grad_(True)
    theirs = trl_loss(b, old, ref, advantages, mask, beta, eps, eps_high or eps, loss_type, MAX_NEW, micro_batch_size)
    theirs.backward()
    assert abs(float(mine.detach()) - float(theirs.detach())) < 1e-6
    assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=0)


def test_dapo_ignores_micro_batching_and_bnpo_does_not():
    logps, old, ref, advantages, mask = random_batch(seed=0, dtype=torch.float64)

    def loss(loss_type: str, micro: int) -> float:
        config = GRPOConfig(model="m", out="o", loss_type=loss_type, group_size=4, batch_size=B,
                            micro_batch_size=micro, max_new_tokens=MAX_NEW)
        return float(ours(logps, old, ref, advantages, mask, config))

    whole = loss("dapo", B)
    assert all(loss("dapo", m) == pytest.approx(whole, abs=1e-12) for m in (4, 2, 1))
    assert loss("bnpo", B) == pytest.approx(whole, abs=1e-12)  # one micro-batch: the same mean
    assert abs(loss("bnpo", 2) - whole) > 1e-3  # micro-batches of 13, 7, 15 and 11 tokens weigh alike


# ---------------------------------------------------------------- end tokens


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    from factory.train.tiny_model import build_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder)


def completion_ids(batch: dict, row: int) -> list[int]:
    # completion_mask is aligned with input_ids[:, 1:] (each position predicts the next token)
    ids, mask = batch["input_ids"][row, 1:], batch["completion_mask"][row]
    return ids[mask.bool()].tolist()


def test_a_truncated_rollout_gets_no_eos_and_a_finished_one_does(tokenizer):
    eos = tokenizer.eos_token_id
    batch = tokenize_rollouts(tokenizer, ["Q: 2+2?", "Q: 2+2?"], ["<answer>4</answer>", "<think>2 + 2 is"], [eos, None])
    finished, truncated = completion_ids(batch, 0), completion_ids(batch, 1)
    assert finished[-1] == eos
    assert finished[:-1] == tokenizer("<answer>4</answer>", add_special_tokens=False)["input_ids"]
    assert eos not in truncated and truncated == tokenizer("<think>2 + 2 is", add_special_tokens=False)["input_ids"]
    # `eos=True` still appends the tokenizer's eos to every completion
    assert completion_ids(tokenize_rollouts(tokenizer, ["Q"], ["x"], True), 0)[-1] == eos


def test_transformers_sampler_tells_truncated_from_finished(tokenizer):
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    prompt = "Q: 2+2?"
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    four = tokenizer("4", add_special_tokens=False)["input_ids"]
    cut = tokenizer("2 + 2 is", add_special_tokens=False)["input_ids"]
    width = len(cut)

    class Model:  # model.generate pads a finished row after its eos; a truncated row has no eos
        device = torch.device("cpu")

        def generate(self, input_ids, **kwargs):
            assert kwargs["max_new_tokens"] == width
            assert kwargs["top_k"] == 0  # the policy's own distribution, not generate's default top-50
            rows = [p + four + [eos] + [pad] * (width - len(four) - 1), p + cut]
            return torch.tensor(rows)

        def eval(self):
            return self

        def train(self):
            return self

    config = GRPOConfig(model="m", out="o", max_new_tokens=width)
    out = TransformersSampler(Model(), tokenizer, config).sample([prompt], n=2, seed=0)
    assert out == [Rollout("4", len(four) + 1, eos, four), Rollout("2 + 2 is", width, None, cut)]
    batch = tokenize_rollouts(tokenizer, [prompt] * 2, [r.text for r in out], [r.end_token for r in out])
    assert completion_ids(batch, 0)[-1] == eos and eos not in completion_ids(batch, 1)


def test_vllm_end_token_is_the_sampled_stop_token_or_none():
    def out(reason, token_ids, stop_reason=None):
        return SimpleNamespace(finish_reason=reason, token_ids=token_ids, stop_reason=stop_reason)

    assert vllm_end_token(out("stop", [5, 6, 151645])) == 151645  # eos: vLLM keeps it in token_ids
    assert vllm_end_token(out("stop", [5, 151643], stop_reason=151643)) == 151643  # another stop token id
    assert vllm_end_token(out("length", [5, 6, 7])) is None  # cut at max_tokens: no end token sampled
    assert vllm_end_token(out("stop", [5, 6], stop_reason="</answer>")) is None  # a stop string, not a token
