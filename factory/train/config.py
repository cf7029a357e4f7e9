"""Training settings as dataclasses, one help string per field (TRL style), torch-free.

The CLI builds `factory train sft|grpo` flags from these fields, so importing them must
stay cheap: the runners (and torch) load only when a training command runs.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Literal, get_args

from factory.core.errors import FactoryError
from factory.core.settings import setting

LossType = Literal["grpo", "dapo", "dr_grpo", "bnpo"]  # TRL's aggregations, by the same names
Trainable = Literal["all", "norms", "final-norm"]  # which weights GRPO updates
LrSchedule = Literal["constant", "cosine"]  # GRPO's learning rate after warmup
RolloutBackend = Literal["auto", "vllm", "transformers"]
PromptMode = Literal["auto", "chat", "base"]
LOSS_TYPES, TRAINABLE, LR_SCHEDULES = get_args(LossType), get_args(Trainable), get_args(LrSchedule)


def changed_settings(config: Any, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The settings of `config.trajectory()` that a checkpoint's saved settings differ on, as
    {name: (saved, now)}. A setting the checkpoint predates ran at its default, so a run saved before
    a new setting existed still resumes."""
    defaults = {f.name: f.default for f in fields(config) if f.default is not MISSING}
    now = config.trajectory()
    was = {k: saved.get(k, defaults.get(k)) for k in now}
    return {k: (was[k], now[k]) for k in now if was[k] != now[k]}


@dataclass
class GRPOConfig:
    problems: str = setting("builtin:arithmetic?n=500&seed=1", "problem source (see `factory generate --help`)",
                            flags=("--problems", "-p"))
    model: str = setting("", "policy model folder (the reference model is a frozen copy of it)",
                         flags=("--model", "-m"))
    out: str = setting("", "output folder: checkpoints, final model, metrics.jsonl", flags=("--out", "-o"))
    template: str = setting("r1_zero", "prompt template; its format is what the format reward checks",
                            flags=("--template", "-t"))
    rewards: str = setting("accuracy,format", "comma list of rewards: accuracy, format, language, length")
    weights: str | None = setting(None, "comma list of reward weights (default 1 each), e.g. 1,0.1")
    length_limit: int | None = setting(None, "length reward: completion tokens that earn 1.0; it falls linearly to 0.0 "
                                       "at max_new_tokens (default: half of max_new_tokens)")
    group_size: int = setting(8, "G: completions sampled per problem", flags=("--n", "-n", "--group-size"))
    batch_size: int = setting(32, "completions per optimizer step; must hold whole groups (a multiple of G)")
    micro_batch_size: int = setting(8, "completions per forward/backward pass (gradient accumulation)")
    steps: int = setting(20, "optimizer steps (each with fresh rollouts)")
    num_iterations: int = setting(1, "mu: updates per batch of rollouts (ratio != 1 only when > 1)")
    lr: float = setting(1e-5, "AdamW peak learning rate (after a linear warmup)")
    warmup_steps: int = setting(0, "linear warmup steps")
    lr_schedule: LrSchedule = setting("constant", "after warmup: constant, or cosine (decays to 0 at the last step; "
                                      "such a run cannot be extended with more steps)")
    beta: float = setting(0.04, "KL coefficient against the reference model (0 turns the reference off)")
    epsilon: float = setting(0.2, "clip range: ratio clipped to [1 - epsilon, 1 + epsilon_high]")
    epsilon_high: float | None = setting(None, "upper clip (DAPO's clip-higher); default epsilon")
    loss_type: LossType = setting("grpo", "grpo: mean per sequence; bnpo: mean per token of each micro-batch; dapo: "
                                  "mean per token of the whole batch, however micro-batched; dr_grpo: sum / (batch * "
                                  "max_new_tokens)")
    scale_rewards: bool = setting(True, "divide advantages by the group's std (Dr. GRPO turns this off)")
    max_new_tokens: int = setting(256, "longest completion", flags=("--max-tokens", "--max-new-tokens"))
    temperature: float = setting(1.0, "rollout temperature")
    top_p: float = setting(1.0, "rollout nucleus mass")
    rollout_backend: RolloutBackend = setting("auto", "vllm, transformers, or auto (vllm when installed)")
    prompt_mode: PromptMode = setting("auto", "chat, base or auto (chat when the tokenizer has a chat template)")
    seed: int = setting(0, "seed of problem order, sampling and initialisation")
    save_every: int = setting(10, "checkpoint every N steps (and at the end)")
    limit: int | None = setting(None, "use only the first N problems")
    train: Trainable = setting("all", "which weights GRPO updates: all; norms (the normalisation layers' gains "
                               "only: on small models the rest of the RL gradient is mostly noise; use lr ~1e-2); "
                               "or final-norm (the output norm's gain alone: how sharply the policy samples)")
    eval_problems: str | None = setting(None, "held-out problems whose sampled pass@1 is logged every eval_every steps "
                                        "(and before the first), e.g. builtin:arithmetic?n=500&seed=7")
    eval_every: int = setting(25, "steps between held-out evaluations")
    eval_n: int = setting(4, "samples per held-out problem (at the rollout temperature)")

    def validate(self) -> None:
        problems = []
        if not self.model:
            problems.append("--model is required")
        if not self.out:
            problems.append("--out is required")
        if self.group_size < 2:
            problems.append("group_size must be >= 2: a group of one has no relative advantage")
        if self.batch_size % self.group_size:
            problems.append(
                f"batch_size {self.batch_size} does not hold whole groups of {self.group_size}: "
                f"use a multiple of group_size, e.g. {self.group_size * max(1, self.batch_size // self.group_size)}"
            )
        if self.batch_size % self.micro_batch_size:
            problems.append(f"batch_size {self.batch_size} must be a multiple of "
                            f"micro_batch_size {self.micro_batch_size}")
        if self.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type must be one of {', '.join(LOSS_TYPES)}")
        if self.rollout_backend not in ("auto", "vllm", "transformers"):
            problems.append("rollout_backend must be vllm, transformers or auto")
        if not 0 < self.epsilon < 1 or self.lr <= 0 or self.beta < 0 or self.num_iterations < 1:
            problems.append("need 0 < epsilon < 1, lr > 0, beta >= 0, num_iterations >= 1")
        if self.temperature <= 0:
            problems.append("temperature must be > 0: a group of identical greedy samples has no spread")
        if self.train not in TRAINABLE:
            problems.append(f"train must be one of {', '.join(TRAINABLE)}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        if self.length_limit is not None and not 0 <= self.length_limit < self.max_new_tokens:
            problems.append(f"length_limit {self.length_limit} must be in [0, max_new_tokens={self.max_new_tokens})")
        if self.eval_every < 1 or self.eval_n < 1:
            problems.append("eval_every and eval_n must be >= 1")
        if problems:
            raise FactoryError("bad GRPO settings: " + "; ".join(problems))

    def trajectory(self) -> dict[str, Any]:
        """The settings that decide every update up to any step; only these must match on resume. At a
        constant learning rate `steps` decides nothing before the last step, so a finished run extends
        with a larger one; a cosine decay is set by `steps`."""
        ignored = {"out", "save_every", "eval_problems", "eval_every", "eval_n"}
        if self.lr_schedule == "constant":
            ignored.add("steps")
        return {k: v for k, v in asdict(self).items() if k not in ignored}

    def continues(self, saved: dict[str, Any]) -> bool:
        """Whether a checkpoint's saved settings are on this run's trajectory."""
        return not changed_settings(self, saved)

    def lr_factor(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based; num_iterations per GRPO step) as a share of `lr`."""
        warmup = min(1.0, (step + 1) / max(1, self.warmup_steps))
        if self.lr_schedule == "constant" or step < self.warmup_steps:
            return warmup
        done = (step - self.warmup_steps) / max(1, self.steps * self.num_iterations - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))

    def divergence_warnings(self) -> list[str]:
        """Settings measured to lose accuracy (README, "Proving the gains"), said before the run starts."""
        if self.train == "all" and self.lr >= 1e-4:
            return [f"lr={self.lr:g} with train=all: on the shipped tiny model full-weight GRPO lost held-out accuracy "
                    "at lr 1e-4 (0.63 -> 0.58 in 15 steps) and 3e-4 (0.63 -> 0.44 in 20 steps): Adam turns the "
                    "rollouts' per-problem gradient into a random walk of every weight; use train=norms with lr "
                    "~1e-2 on small models, lr <= 1e-5 otherwise"]
        if self.train == "norms" and self.lr > 3e-2:
            return [f"lr={self.lr:g} with train=norms: measured settings use lr 1e-2 (constant) or 2e-2 (cosine); "
                    "higher was not tested to hold"]
        if self.train == "norms" and self.lr >= 2e-2 and self.lr_schedule == "constant":
            return [f"lr={self.lr:g} with train=norms held constant: on the shipped tiny model held-out accuracy swung "
                    "0.64 -> 0.70 -> 0.62 within 200 steps at 2e-2; use --lr-schedule cosine, or lr 1e-2"]
        return []


@dataclass
class SFTConfig:
    data: str = setting(help="Training data: a run name or folder (its curated samples), a .parquet/.jsonl file or "
                        "a folder of .parquet shards with a messages column, or builtin:arithmetic?n=...&seed=...")
    model: str = setting(help="The model to fine-tune: a local folder or a Hugging Face Hub id.")
    out: str = setting(help="Output folder: checkpoints in checkpoint-NNNNNN/, the final model in the folder itself.")
    secondary_data: str | None = setting(None, "Optional second (e.g. non-reasoning) dataset mixed in, in any "
                                         "format `data` accepts.")
    secondary_ratio: float = setting(0.25, "Share of the mixed data taken from secondary_data; R1 mixed ~200k into "
                                     "~800k: 0.25.")
    epochs: int = setting(1, "Passes over the data (ignored when max_steps is set).")
    max_steps: int | None = setting(None, "Stop after this many optimizer steps, cycling the data as needed.")
    batch_size: int = setting(8, "Examples per micro-batch (one forward and backward).")
    grad_accum: int = setting(1, "Micro-batches per optimizer step; the effective batch is batch_size * grad_accum.")
    lr: float = setting(2e-5, "Peak AdamW learning rate (after warmup, before the cosine decay).")
    warmup_ratio: float = setting(0.03, "Share of the steps spent raising the learning rate linearly from 0.")
    warmup_steps: int | None = setting(None, "Warmup length in steps; overrides warmup_ratio when set.")
    weight_decay: float = setting(0.0, "AdamW decoupled weight decay, applied to weight matrices only.")
    max_grad_norm: float | None = setting(1.0, "Clip the gradient to this global norm; None disables clipping.")
    max_len: int = setting(2048, "Tokens per example (prompt + answer): longer answers are cut, and examples whose "
                           "prompt leaves no answer token are dropped.")
    seed: int = setting(0, "Seed of the data order, the LoRA init and every RNG.")
    save_every: int = setting(200, "Write a checkpoint every this many optimizer steps (and at the end).")
    log_every: int = setting(10, "Log loss, learning rate and tokens/s every this many optimizer steps.")
    lora_r: int = setting(0, "LoRA rank: 0 fine-tunes every weight, >0 trains LoRA adapters on all linear layers.")
    lora_alpha: float = setting(16, "LoRA scale numerator: the adapters are scaled by lora_alpha / lora_r.")
    limit: int | None = setting(None, "Use only the first N examples of `data` (for smoke tests).")

    def validate(self) -> None:
        """Refuse settings that cannot train, each with the reason and the fix."""
        bad = []
        for name in ("data", "model", "out"):
            if not getattr(self, name):
                bad.append(f"{name} is required")
        if not self.lr > 0:
            bad.append(f"lr={self.lr}: the learning rate must be > 0, or nothing is learned")
        if not 0 <= self.secondary_ratio < 1:
            bad.append(f"secondary_ratio={self.secondary_ratio}: it is the secondary share, in [0, 1)")
        if self.secondary_data and self.secondary_ratio == 0:
            bad.append("secondary_ratio=0 would mix in none of secondary_data; drop secondary_data instead")
        for name in ("epochs", "batch_size", "grad_accum", "save_every", "log_every"):
            if getattr(self, name) < 1:
                bad.append(f"{name}={getattr(self, name)}: must be at least 1")
        for name in ("max_steps", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                bad.append(f"{name}={getattr(self, name)}: must be at least 1, or None for no limit")
        if not 0 <= self.warmup_ratio < 1:
            bad.append(f"warmup_ratio={self.warmup_ratio}: must be in [0, 1), or the peak lr is never reached")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            bad.append(f"warmup_steps={self.warmup_steps}: must be >= 0")
        if self.weight_decay < 0:
            bad.append(f"weight_decay={self.weight_decay}: must be >= 0")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            bad.append(f"max_grad_norm={self.max_grad_norm}: must be > 0, or None to disable clipping")
        if self.max_len < 2:
            bad.append(f"max_len={self.max_len}: an example needs at least a prompt token and an answer token")
        if self.lora_r < 0:
            bad.append(f"lora_r={self.lora_r}: use 0 for full fine-tuning or a rank > 0 for LoRA")
        if self.lora_r > 0 and not self.lora_alpha > 0:
            bad.append(f"lora_alpha={self.lora_alpha}: must be > 0, or the adapters have no effect")
        if bad:
            raise FactoryError("bad SFT config: " + "; ".join(bad))

    def trajectory(self) -> dict[str, Any]:
        """The settings that decide what is trained; only these must match on resume."""
        return {k: v for k, v in asdict(self).items() if k not in ("out", "save_every", "log_every")}
