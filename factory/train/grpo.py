"""GRPO: group-relative policy optimization with rule-based rewards, no critic.

For each problem the policy samples a group of G completions; rule-based rewards (the same
verifiers the filters use) score them; each completion's advantage is its reward relative
to its group, (r - mean) / (std + eps); the policy maximizes the clipped objective
min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) minus beta * KL(pi || pi_ref), with the
k3 estimator of the KL against a frozen reference model. Reads top to bottom:
config -> problems -> rollouts -> rewards -> advantages -> loss -> update -> sync -> log.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from factory.core.errors import FactoryError
from factory.train.config import LOSS_TYPES, GRPOConfig  # noqa: F401  (re-exported)
from factory.train.objective import live_logprobs, micro_batch_losses, sequence_logprobs

# ---------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    text: str
    tokens: int  # completion tokens sampled, the end token included
    # The token that ended the completion (eos), trained on so the policy learns to stop; None when
    # it was cut at max_new_tokens: the sampler never produced one, so none is trained on.
    end_token: int | None
    # The sampled token ids, the end token excluded: the update scores exactly these, since decoding
    # to text and encoding again need not give them back (a stray byte becomes U+FFFD, three bytes).
    ids: list[int] | None = None


class TransformersSampler:
    """Rollouts with `model.generate`: no extra install, the policy itself samples."""

    def __init__(self, model: Any, tokenizer: Any, config: GRPOConfig):
        self.model, self.tokenizer, self.config = model, tokenizer, config

    @torch.no_grad()
    def sample(self, prompts: list[str], n: int, seed: int) -> list[Rollout]:
        tok, out = self.tokenizer, []
        torch.manual_seed(seed)
        self.model.eval()
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(map(len, encoded))
        # Left padding: every prompt ends where sampling starts, so one generate call serves them all.
        device = self.model.device
        input_ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in encoded], device=device)
        attention_mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
        gen = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, do_sample=True, temperature=self.config.temperature,
            top_p=self.config.top_p, top_k=0,  # generate's default top-k of 50 would sample from another policy
            max_new_tokens=self.config.max_new_tokens, num_return_sequences=n,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
        for row in gen[:, width:]:  # n rows per prompt, prompt by prompt
            ids = row.tolist()
            ended = tok.eos_token_id in ids  # else it ran to max_new_tokens
            if ended:
                ids = ids[: ids.index(tok.eos_token_id)]
            ids = [i for i in ids if i != tok.pad_token_id]
            out.append(Rollout(tok.decode(ids, skip_special_tokens=True), len(ids) + ended,
                               tok.eos_token_id if ended else None, ids))
        self.model.train()
        return out

    def sync(self, model: Any) -> None:
        pass  # it is the policy


class VLLMSampler:
    """Rollouts with the vLLM engine; weights are pushed to it after every update."""

    def __init__(self, model_dir: str, config: GRPOConfig):
        from factory.generate.vllm_backend import build_llm, on_cpu

        cpu = on_cpu()
        args: dict[str, Any] = {"worker_extension_cls": "factory.train.vllm_sync.WeightSync",
                                "dtype": "float32" if cpu else "bfloat16"}
        if not cpu:
            args["gpu_memory_utilization"] = 0.3  # the trainer shares the GPU
        self.config = config
        # The generation engine's construction; on the CPU build a smaller KV cache than generation's
        # (rollouts are short, and the trainer needs the memory).
        self.llm = build_llm(model_dir, config.seed, args, cpu_kvcache_gib="2")
        self._tmp = Path(tempfile.mkdtemp(prefix="grpo-sync-"))

    def sample(self, prompts: list[str], n: int, seed: int) -> list[Rollout]:
        from vllm import SamplingParams

        params = [SamplingParams(n=n, temperature=self.config.temperature, top_p=self.config.top_p,
                                 max_tokens=self.config.max_new_tokens, seed=seed + i) for i in range(len(prompts))]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        out = []
        for c in (c for o in outs for c in o.outputs):
            end = vllm_end_token(c)
            ids = list(c.token_ids)
            out.append(Rollout(c.text, len(ids), end, ids[:-1] if end is not None else ids))
        return out

    def sync(self, model: Any) -> None:
        from safetensors.torch import save_file

        path = self._tmp / "policy.safetensors"
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in _plain_state_dict(model).items()}
        save_file(state, str(path))
        self.llm.collective_rpc("load_weights_from", args=(str(path),))
        # The prefix cache holds keys and values the old weights computed: prompts sharing a cached
        # block (every re-asked problem, every held-out evaluation, the chat template's opening) would
        # otherwise be sampled partly by the old policy.
        self.llm.reset_prefix_cache()


def vllm_end_token(c: Any) -> int | None:
    """The token a vLLM completion ended on: vLLM keeps the eos (or a stop token id) as the last of
    `token_ids` and says "stop"; "length" means cut at max_tokens, with no end token sampled."""
    if c.finish_reason != "stop" or isinstance(c.stop_reason, str) or not c.token_ids:
        return None  # a stop string ends the text, not on a token of its own
    return int(c.token_ids[-1])


def _plain_state_dict(model: Any) -> dict[str, torch.Tensor]:
    # Tied embeddings appear under two names; vLLM's loader wants each tensor once.
    seen, out = set(), {}
    for k, v in model.state_dict().items():
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        out[k] = v
    return out


def make_sampler(model: Any, tokenizer: Any, model_dir: str, config: GRPOConfig) -> Any:
    backend = config.rollout_backend
    if backend == "auto":
        try:
            import vllm  # noqa: F401

            backend = "vllm"
        except ImportError:
            backend = "transformers"
    return VLLMSampler(model_dir, config) if backend == "vllm" else TransformersSampler(model, tokenizer, config)


# ---------------------------------------------------------------- one update


def tokenize_rollouts(
    tokenizer: Any, prompts: list[str], completions: Sequence[str | list[int]], eos: bool | Sequence[int | None]
) -> dict[str, torch.Tensor]:
    """Left-aligned prompt+completion ids, padded right; `completion_mask` marks completion tokens.

    A completion is its text or, better, the token ids that were sampled. `eos`: the token each
    completion ended on, appended and trained on (None for one cut at max_new_tokens, which ended
    on no token); True appends the tokenizer's eos to every one.
    """
    ends = [tokenizer.eos_token_id if eos else None] * len(completions) if isinstance(eos, bool) else list(eos)
    if len(ends) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(ends)} end tokens")
    rows, masks = [], []
    for prompt, completion, end in zip(prompts, completions, ends):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = completion if isinstance(completion, list) else tokenizer(completion, add_special_tokens=False)["input_ids"]
        c = c + ([end] if end is not None else [])
        rows.append(p + c)
        masks.append([0] * len(p) + [1] * len(c))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    attention_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    completion_mask = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask[:, 1:]}


def policy_update(
    model: Any, ref_model: Any | None, optimizer: Any, scheduler: Any, batch: dict[str, torch.Tensor],
    advantages: torch.Tensor, config: GRPOConfig,
) -> dict[str, float]:
    """num_iterations optimizer steps on one batch of rollouts, micro-batched."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    advantages = advantages.to(device)
    ids, attn, mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    step = config.micro_batch_size

    @torch.no_grad()
    def frozen_logprobs(m: Any) -> torch.Tensor:
        return torch.cat([sequence_logprobs(m, ids[i:i + step], attn[i:i + step]) for i in range(0, len(ids), step)])

    # pi_old, the policy that sampled: with one update per batch it is the policy being updated, whose
    # log-probs the loss detaches itself (as TRL does), so the extra forward pass is only for mu > 1.
    old = frozen_logprobs(model) if config.num_iterations > 1 else None
    ref = frozen_logprobs(ref_model) if ref_model is not None and config.beta > 0 else None  # pi_ref: the start
    micro_batches = -(-len(ids) // step)
    totals: dict[str, float] = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "entropy": 0.0}
    for iteration in range(config.num_iterations):

        def logps_of(s: slice, first: bool = iteration == 0) -> torch.Tensor:
            logps, entropy = live_logprobs(model, ids[s], attn[s], advantages[s] != 0 if ref is None else None,
                                           with_entropy=first)
            if first:  # the policy that sampled: its mean entropy per completion token
                totals["entropy"] += float((entropy * mask[s]).sum() / mask.sum().clamp(min=1))
            return logps

        optimizer.zero_grad(set_to_none=True)
        for loss, m in micro_batch_losses(logps_of, old, ref, advantages, mask, config):
            if loss.requires_grad:  # not when every rollout of the micro-batch has advantage 0
                loss.backward()
            totals["loss"] += float(loss.detach()) / config.num_iterations
            totals["kl"] += m["kl"] / micro_batches / config.num_iterations
            totals["clip_fraction"] += m["clip_fraction"] / micro_batches / config.num_iterations
        trained = [p for p in model.parameters() if p.requires_grad]
        for p in trained:  # a batch without any advantage still steps, as Adam's momentum would
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        scheduler.step()
    return totals


# ---------------------------------------------------------------- the run


def reward_sample(rollout: Rollout, problem: Any, prompt: str, template: Any) -> dict[str, Any]:
    """A rollout as the rewards read it: the answer through the template's format, with the prompt's
    prefill, and the problem's context (what a gym scorer needs) in metadata, as filters read samples."""
    from factory.prompting.formats import prompt_prefill

    return {"completion": rollout.text, "completion_tokens": rollout.tokens, "problem": problem.problem,
            "answer": problem.answer, "task": problem.task, "tests": problem.tests,
            "metadata": {"format": template.format, "prefill": prompt_prefill(prompt, template.prefill),
                         "context": problem.context}}


def held_out_pass_at_1(sampler: Any, problems: list[Any], prompts: list[str], template: Any,
                       config: GRPOConfig) -> dict[str, float]:
    """Sampled pass@1 on held-out problems with the policy as it is now, at the rollout temperature,
    with the standard error over problems: scored by `factory eval`'s own scorer."""
    from factory.generate.evaluate import score_samples

    n = config.eval_n
    # one fixed draw: evaluations differ by the policy only
    rollouts = sampler.sample(prompts, n, seed=config.seed * 7919 + 17)
    rows = [{**reward_sample(r, p, q, template), "problem_id": i}
            for i, (p, q) in enumerate(zip(problems, prompts)) for r in rollouts[i * n:(i + 1) * n]]
    scored = score_samples(rows, k=1)
    return {"eval/pass@1": scored["pass@1"], "eval/pass@1_se": scored["pass@1_se"]}


def trainable_parameters(model: Any, which: str) -> list[torch.nn.Parameter]:
    """The parameters GRPO updates. `norms`: only the normalisation layers' gains (one vector per
    layer, 0.3% of a small model). A rule-based reward's gradient on a small model's weight matrices
    is mostly specific to each problem (two disjoint batches of 512 rollouts give gradients with
    cosine ~0 on the shipped tiny model): Adam moves every weight by about lr a step whatever the
    gradient's consistency, so those steps add up to a random walk that costs accuracy. What holds
    across problems is how sharply the policy commits to its best answer, which the gains set; they
    take a learning rate 100x higher without harm. `final-norm`: the output norm's gain alone, which
    scales the logits per hidden dimension (a learned temperature); the inner gains' own random walk
    is what costs accuracy at high rates."""
    params = list(model.parameters())
    if which in ("norms", "final-norm"):
        gains = [p for name, p in model.named_parameters() if p.dim() == 1 and "norm" in name
                 and (which == "norms" or ".layers." not in name)]
        if not gains:
            raise FactoryError(f"train={which}: the model has no such normalisation gain to train; use train=all")
        keep = {id(p) for p in gains}
        for p in params:
            p.requires_grad_(id(p) in keep)
        return gains
    return params


def run_grpo(config: GRPOConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.problems.sources import load_problems
    from factory.prompting.prompter import Prompter
    from factory.prompting.templates import load_template
    from factory.train.checkpoint import (
        latest_checkpoint,
        load_checkpoint,
        pick_device_dtype,
        save_checkpoint,
        save_final,
    )
    from factory.train.rewards import group_advantages, parse_reward_spec, score

    config.validate()
    for warning in config.divergence_warnings():
        log(f"warning: {warning}")
    spec = parse_reward_spec(config.rewards, config.weights, config.max_new_tokens, config.length_limit)
    out = Path(config.out)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    device, dtype = pick_device_dtype()
    if not Path(config.model).exists():
        raise FactoryError(f"model path '{config.model}' does not exist")
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise FactoryError(f"{config.model}: the tokenizer needs a pad token other than eos, "
                           "or the model cannot learn to stop")
    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype).to(device)
    ref_model = None
    if config.beta > 0:
        ref_model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype).to(device).eval()
        ref_model.requires_grad_(False)
    template = load_template(config.template)
    problems = load_problems(config.problems, limit=config.limit)
    # The prompts `factory generate` would send this model, so rollouts match generated samples.
    prompter = Prompter.for_model(template, config.prompt_mode, lambda: bool(tokenizer.chat_template))

    optimizer = torch.optim.AdamW(trainable_parameters(model, config.train), lr=config.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: config.lr_factor(s))
    state = {"step": 0, "config": asdict(config)}
    ckpt = latest_checkpoint(out)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, optimizer, scheduler)
        if not config.continues(state.get("config") or {}):
            raise FactoryError(f"{out} holds a GRPO run with other settings; use another --out or delete it")
        log(f"resumed from {ckpt.name} at step {state['step']}")
    # Resumed runs must draw the same problems and samples: derive both from the step.
    order = list(range(len(problems)))
    random.Random(config.seed).shuffle(order)
    sampler = make_sampler(model, tokenizer, str(ckpt or config.model), config)
    per_step = config.batch_size // config.group_size
    metrics_path = out / "metrics.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, Any]] = []

    def write(record: dict[str, Any]) -> None:
        history.append(record)
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    held_out = load_problems(config.eval_problems) if config.eval_problems else []
    held_out_prompts = [prompter.text(p, tokenizer) for p in held_out]

    def evaluate_now() -> dict[str, float]:
        return held_out_pass_at_1(sampler, held_out, held_out_prompts, template, config) if held_out else {}

    if held_out and state["step"] == 0:
        write({"step": 0, **evaluate_now()})  # the start, to compare every later evaluation with
    for step in range(state["step"], config.steps):
        t0 = time.perf_counter()
        chosen = [problems[order[(step * per_step + i) % len(order)]] for i in range(per_step)]
        prompts = [prompter.text(p, tokenizer) for p in chosen]
        sampled = sampler.sample(prompts, config.group_size, seed=(config.seed * 100003 + step * 1009) % 2**31)
        each_prompt = [q for q in prompts for _ in range(config.group_size)]
        samples = [reward_sample(r, p, q, template) for r, p, q in
                   zip(sampled, [p for p in chosen for _ in range(config.group_size)], each_prompt)]
        totals, per_reward = score(samples, spec)
        rewards = torch.tensor(totals, dtype=torch.float32)
        advantages, group_std = group_advantages(rewards, config.group_size, scale=config.scale_rewards)
        batch = tokenize_rollouts(tokenizer, each_prompt, [r.text if r.ids is None else r.ids for r in sampled],
                                  [r.end_token for r in sampled])
        update = policy_update(model, ref_model, optimizer, scheduler, batch, advantages, config)
        sampler.sync(model)  # the next rollouts come from the updated weights
        record = {
            "step": step + 1,
            "reward": float(rewards.mean()),
            **{f"reward/{name}": sum(v) / len(v) for name, v in per_reward.items()},
            "zero_spread_groups": float((group_std == 0).float().mean()),
            "kl": update["kl"],
            "clip_fraction": update["clip_fraction"],
            "entropy": update["entropy"],
            "loss": update["loss"],
            "completion_length": sum(r.tokens for r in sampled) / len(sampled),
            "accuracy": sum(per_reward["accuracy"]) / len(samples) if "accuracy" in per_reward else math.nan,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if held_out and ((step + 1) % config.eval_every == 0 or step + 1 == config.steps):
            record.update(evaluate_now())
        write(record)
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            save_checkpoint(out, step + 1, model, tokenizer, optimizer, scheduler,
                            {"step": step + 1, "config": asdict(config)})
    save_final(out, model, tokenizer)
    return {"steps": config.steps, "history": history, "out": str(out)}
