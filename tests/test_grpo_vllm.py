"""GRPO's vLLM rollouts come from the policy as it is after each update, not partly from the
weights the engine started with: the engine's prefix cache holds keys and values the old weights
computed, and a re-asked prompt (every held-out evaluation asks the same ones) would reuse them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.slow
TINY = REPO / "data" / "tiny-model"


def test_rollouts_after_a_sync_are_the_updated_policys(tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import SamplingParams

    from factory.train.config import GRPOConfig
    from factory.train.grpo import VLLMSampler
    from factory.train.objective import sequence_logprobs

    tokenizer = AutoTokenizer.from_pretrained(TINY)
    model = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32)
    sampler = VLLMSampler(str(TINY), GRPOConfig(model=str(TINY), out=str(tmp_path), max_new_tokens=24))
    # A prompt longer than a cache block, so its first blocks are cached by the first request.
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 11 + 12 * 3 - 7 + 10 * 4?"}],
                                           tokenize=False, add_generation_prompt=True)
    greedy = SamplingParams(temperature=0, max_tokens=24, logprobs=0)
    sampler.llm.generate([prompt], greedy, use_tqdm=False)

    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # an update far larger than a step, so staleness shows
    sampler.sync(model)
    out = sampler.llm.generate([prompt], greedy, use_tqdm=False)[0].outputs[0]
    engine = torch.tensor([next(iter(lp.values())).logprob for lp in out.logprobs])

    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = torch.tensor([ids + list(out.token_ids)])
    with torch.no_grad():
        policy = sequence_logprobs(model, full, torch.ones_like(full))[0, len(ids) - 1:]
    assert torch.allclose(engine, policy, atol=2e-3), (engine - policy).abs().max()
