"""Training settings as dataclasses, one help string per field (TRL style), torch-free.

The CLI builds `factory train sft|grpo` flags from these fields, so importing them must
stay cheap: the runners (and torch) load only when a training command runs.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from factory.errors import FactoryError


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


def coerce_settings(cls: type, settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Settings read from YAML, checked and converted to the field types (YAML reads 1e-5 as a string)."""
    known = {f.name for f in fields(cls)}
    unknown = set(settings) - known
    if unknown:
        raise FactoryError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in settings.items():
        kind = hints[key]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            if value is None:
                out[key] = None
                continue
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        try:
            if kind is bool and not isinstance(value, bool):
                raise ValueError("use true or false")
            if kind is int:
                if isinstance(value, bool) or float(value) != int(float(value)):
                    raise ValueError("not a whole number")
                value = int(float(value))  # "1e3" from YAML is a string
            if kind is str and not isinstance(value, (str, int, float)):
                raise ValueError("not text")
            out[key] = kind(value) if kind in (int, float, str) else value
        except (TypeError, ValueError, OverflowError) as e:
            raise FactoryError(f"{where}: {key}={value!r} is not a valid {kind.__name__} ({e})") from None
    return out


LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo")  # TRL's aggregations, by the same names
TRAINABLE = ("all", "norms")  # which weights GRPO updates


@dataclass
class GRPOConfig:
    problems: str = _help("builtin:arithmetic?n=500&seed=1", "problem source (see `factory generate --help`)")
    model: str = _help("", "policy model folder (the reference model is a frozen copy of it)")
    out: str = _help("", "output folder: checkpoints, final model, metrics.jsonl")
    template: str = _help("r1_zero", "prompt template; its format is what the format reward checks")
    rewards: str = _help("accuracy,format", "comma list of rewards: accuracy, format, language, length")
    weights: str | None = _help(None, "comma list of reward weights (default 1 each), e.g. 1,0.1")
    group_size: int = _help(8, "G: completions sampled per problem")
    batch_size: int = _help(32, "completions per optimizer step; must hold whole groups (a multiple of G)")
    micro_batch_size: int = _help(8, "completions per forward/backward pass (gradient accumulation)")
    steps: int = _help(20, "optimizer steps (each with fresh rollouts)")
    num_iterations: int = _help(1, "mu: updates per batch of rollouts (ratio != 1 only when > 1)")
    lr: float = _help(1e-5, "AdamW learning rate (constant after a short warmup)")
    warmup_steps: int = _help(0, "linear warmup steps")
    beta: float = _help(0.04, "KL coefficient against the reference model (0 turns the reference off)")
    epsilon: float = _help(0.2, "clip range: ratio clipped to [1 - epsilon, 1 + epsilon_high]")
    epsilon_high: float | None = _help(None, "upper clip (DAPO's clip-higher); default epsilon")
    loss_type: str = _help("grpo", "grpo: mean per sequence; bnpo: mean per token of each micro-batch; dapo: mean per "
                           "token of the whole batch, however micro-batched; dr_grpo: sum / (batch * max_new_tokens)")
    scale_rewards: bool = _help(True, "divide advantages by the group's std (Dr. GRPO turns this off)")
    max_new_tokens: int = _help(256, "longest completion")
    temperature: float = _help(1.0, "rollout temperature")
    top_p: float = _help(1.0, "rollout nucleus mass")
    rollout_backend: str = _help("auto", "vllm, transformers, or auto (vllm when installed)")
    prompt_mode: str = _help("auto", "chat, base or auto (chat when the tokenizer has a chat template)")
    seed: int = _help(0, "seed of problem order, sampling and initialisation")
    save_every: int = _help(10, "checkpoint every N steps (and at the end)")
    limit: int | None = _help(None, "use only the first N problems")
    train: str = _help("all", "which weights GRPO updates: all, or norms (the normalisation layers' gains only: on "
                       "small models the rest of the RL gradient is mostly noise; use lr ~1e-2)")
    eval_problems: str | None = _help(None, "held-out problems whose sampled pass@1 is logged every eval_every steps "
                                      "(and before the first), e.g. builtin:arithmetic?n=500&seed=7")
    eval_every: int = _help(25, "steps between held-out evaluations")
    eval_n: int = _help(4, "samples per held-out problem (at the rollout temperature)")

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
            problems.append(f"batch_size {self.batch_size} must be a multiple of micro_batch_size {self.micro_batch_size}")
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
        if self.eval_every < 1 or self.eval_n < 1:
            problems.append("eval_every and eval_n must be >= 1")
        if problems:
            raise FactoryError("bad GRPO settings: " + "; ".join(problems))

    def trajectory(self) -> dict[str, Any]:
        """The settings that decide every update up to any step; only these must match on resume. The
        learning rate has no decay that `steps` would set, so a finished run extends with a larger one."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("out", "steps", "save_every", "eval_problems", "eval_every", "eval_n")}

    def divergence_warnings(self) -> list[str]:
        """Settings measured to lose accuracy (README, "Proving the gains"), said before the run starts."""
        if self.train == "all" and self.lr >= 1e-4:
            return [f"lr={self.lr:g} with train=all: on the shipped tiny model full-weight GRPO lost held-out accuracy "
                    "at lr 1e-4 (0.63 -> 0.58 in 15 steps) and 3e-4 (0.63 -> 0.44 in 20 steps): Adam turns the "
                    "rollouts' per-problem gradient into a random walk of every weight; use train=norms with lr "
                    "~1e-2 on small models, lr <= 1e-5 otherwise"]
        if self.train == "norms" and self.lr > 3e-2:
            return [f"lr={self.lr:g} with train=norms: measured settings use lr 1e-2; higher was not tested to hold"]
        return []


def _sft_help(text: str, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class SFTConfig:
    data: str = _sft_help(
        "Training data: a run name or folder (its curated samples), a .parquet/.jsonl file or a folder "
        "of .parquet shards with a messages column, or builtin:arithmetic?n=...&seed=..."
    )
    model: str = _sft_help("The model to fine-tune: a local folder or a Hugging Face Hub id.")
    out: str = _sft_help("Output folder: checkpoints in checkpoint-NNNNNN/, the final model in the folder itself.")
    secondary_data: str | None = _sft_help(
        "Optional second (e.g. non-reasoning) dataset mixed in, in any format `data` accepts.", None
    )
    secondary_ratio: float = _sft_help(
        "Share of the mixed data taken from secondary_data; R1 mixed ~200k into ~800k: 0.25.", 0.25
    )
    epochs: int = _sft_help("Passes over the data (ignored when max_steps is set).", 1)
    max_steps: int | None = _sft_help("Stop after this many optimizer steps, cycling the data as needed.", None)
    batch_size: int = _sft_help("Examples per micro-batch (one forward and backward).", 8)
    grad_accum: int = _sft_help("Micro-batches per optimizer step; the effective batch is batch_size * grad_accum.", 1)
    lr: float = _sft_help("Peak AdamW learning rate (after warmup, before the cosine decay).", 2e-5)
    warmup_ratio: float = _sft_help("Share of the steps spent raising the learning rate linearly from 0.", 0.03)
    warmup_steps: int | None = _sft_help("Warmup length in steps; overrides warmup_ratio when set.", None)
    weight_decay: float = _sft_help("AdamW decoupled weight decay, applied to weight matrices only.", 0.0)
    max_grad_norm: float | None = _sft_help("Clip the gradient to this global norm; None disables clipping.", 1.0)
    max_len: int = _sft_help(
        "Tokens per example (prompt + answer): longer answers are cut, and examples whose prompt "
        "leaves no answer token are dropped.",
        2048,
    )
    seed: int = _sft_help("Seed of the data order, the LoRA init and every RNG.", 0)
    save_every: int = _sft_help("Write a checkpoint every this many optimizer steps (and at the end).", 200)
    log_every: int = _sft_help("Log loss, learning rate and tokens/s every this many optimizer steps.", 10)
    lora_r: int = _sft_help("LoRA rank: 0 fine-tunes every weight, >0 trains LoRA adapters on all linear layers.", 0)
    lora_alpha: float = _sft_help("LoRA scale numerator: the adapters are scaled by lora_alpha / lora_r.", 16)
    limit: int | None = _sft_help("Use only the first N examples of `data` (for smoke tests).", None)

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
