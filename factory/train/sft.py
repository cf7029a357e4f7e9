"""Supervised fine-tuning: R1's cold-start and distillation stage, in one script.

Reads top to bottom: config, seed, model, data, optimizer and schedule, resume, loop, save.
The loss is the mean cross-entropy over answer tokens only (the prompt is context, not a
target), normalised by the answer tokens of the whole optimizer step, so gradient
accumulation gives the same update as one big batch. A run killed at any point and started
again with the same config continues from its latest checkpoint with exactly the steps an
uninterrupted run would have taken: weights, optimizer, schedule, RNG and data position are
all restored, and the data order is a pure function of (seed, epoch).
"""

from __future__ import annotations

import hashlib
import math
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from factory.core.errors import FactoryError
from factory.train.checkpoint import (
    STATE_FILE,
    latest_checkpoint,
    load_checkpoint,
    pick_device_dtype,
    save_checkpoint,
    save_final,
)
from factory.train.config import SFTConfig, changed_settings  # the settings live torch-free, for the CLI
from factory.train.data import (
    IGNORE,
    bucketed_batches,
    check_pad_token,
    collate,
    load_sft_examples,
    mix,
    tokenize_all,
)


def _load_model(name: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # "org/name" may be a Hub id; anything else that does not exist is a wrong path.
    looks_local = name.startswith((".", "/", "~")) or name.count("/") != 1
    if looks_local and not Path(name).expanduser().exists():
        raise FactoryError(f"model '{name}': no such folder; pass a model folder or a Hugging Face Hub id")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError) as e:
        raise FactoryError(f"cannot load model '{name}': {str(e).splitlines()[0]}") from None
    return tokenizer, model.to(device)


def _add_lora(model: Any, config: SFTConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise FactoryError("--lora-r needs peft: pip install peft") from None

    head = model.get_output_embeddings()
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    if not linear:
        raise FactoryError(
            f"lora_r={config.lora_r}: model '{config.model}' has no linear layers for LoRA adapters; use lora_r=0"
        )
    # "all-linear" is every linear layer but the output head, as in the QLoRA paper.
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules="all-linear",
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _data_hash(data: list[tuple[list[int], list[int]]]) -> str:
    """A fingerprint of the tokenized data: a resume on changed data would silently differ."""
    h = hashlib.blake2b(digest_size=8)
    for ids, labels in data:
        h.update(array("q", ids).tobytes() + b"|" + array("q", labels).tobytes() + b";")
    return h.hexdigest()


def _check_resume(ckpt: Path, config: SFTConfig, fingerprint: dict[str, Any]) -> None:
    # mmap: reads the small config without loading the optimizer state a second time.
    old = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True, mmap=True)["state"]
    changed = changed_settings(config, old.get("config") or {})
    if changed:
        diff = ", ".join(f"{k}: {was!r} -> {now!r}" for k, (was, now) in sorted(changed.items()))
        raise FactoryError(
            f"{ckpt} was made with a different config ({diff}); resuming would not continue the same "
            "run: use the same settings, another out folder, or delete the folder to start over"
        )
    if old.get("data") != fingerprint["data"]:
        raise FactoryError(
            f"{ckpt}: the training data (or tokenizer) changed since this checkpoint; resuming would "
            "not continue the same run: restore the data, use another out folder, or delete it"
        )


def run_sft(config: SFTConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune `config.model` on `config.data`; return a summary of the run."""
    config.validate()
    started = time.time()
    out = Path(config.out)
    from transformers import get_cosine_schedule_with_warmup, set_seed

    set_seed(config.seed)  # python, numpy and torch RNGs
    device, dtype = pick_device_dtype()

    # Model: a full fine-tune, or LoRA adapters on every linear layer of a frozen base.
    tokenizer, model = _load_model(config.model, device, dtype)
    check_pad_token(tokenizer)
    if config.lora_r:
        model = _add_lora(model, config)

    # Data: examples -> (input_ids, labels), with optional mixing of a second dataset.
    examples = load_sft_examples(config.data, limit=config.limit)
    if config.secondary_data:
        examples = mix(examples, load_sft_examples(config.secondary_data), config.secondary_ratio, config.seed)
    data, dropped = tokenize_all(examples, tokenizer, config.max_len)
    if not data:
        raise FactoryError(f"every example's prompt is at least max_len={config.max_len} tokens; raise max_len")
    if dropped:
        log(f"dropped {dropped} of {len(examples)} examples: their prompt leaves no answer token within max_len")
    lengths = [len(ids) for ids, _ in data]
    batches_per_epoch = math.ceil(len(data) / config.batch_size)
    if config.max_steps:  # cycle the data for exactly max_steps full steps
        total_steps = config.max_steps
        total_micro = total_steps * config.grad_accum
    else:
        total_micro = config.epochs * batches_per_epoch
        total_steps = math.ceil(total_micro / config.grad_accum)

    # AdamW (decay on weight matrices only, not on norms and biases); cosine with linear warmup.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
    warmup = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_ratio * total_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)

    # Resume: the latest checkpoint of the same config and data restores everything, RNG last.
    fingerprint = {"config": config.trajectory(), "data": _data_hash(data)}
    step, micro, last_loss = 0, 0, None
    ckpt = latest_checkpoint(out)
    if ckpt is not None:
        _check_resume(ckpt, config, fingerprint)
        state = load_checkpoint(ckpt, model, optimizer, scheduler)
        step, micro, last_loss = state["step"], state["micro"], state.get("loss")
        log(f"resumed from {ckpt} at step {step}/{total_steps}")
    shape = f"{config.batch_size}x{config.grad_accum}"
    log(f"sft: {len(data)} examples, {total_steps} steps of {shape} examples, on {device} in {dtype}")

    epoch_batches: dict[int, list[list[int]]] = {}

    def micro_batch(m: int) -> dict[str, torch.Tensor]:
        """Micro-batch m of the endless stream epoch 0, epoch 1, ...: a resume is just a counter."""
        epoch, pos = divmod(m, batches_per_epoch)
        if epoch not in epoch_batches:
            epoch_batches.clear()
            epoch_batches[epoch] = bucketed_batches(lengths, config.batch_size, config.seed, epoch)
        return collate([data[i] for i in epoch_batches[epoch][pos]], tokenizer.pad_token_id)

    model.train()
    tokens_since, clock = 0, time.time()
    while step < total_steps:
        group = [micro_batch(m) for m in range(micro, min(micro + config.grad_accum, total_micro))]
        # Position t predicts token t+1; count the step's answer tokens before any backward.
        n_answer = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in group)
        loss_sum = 0.0
        for batch in group:
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            ce = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(),
                batch["labels"][:, 1:].flatten(),
                ignore_index=IGNORE,
                reduction="sum",
            )
            (ce / n_answer).backward()
            loss_sum += ce.item()
            tokens_since += int(batch["attention_mask"].sum())
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]  # the rate this update uses
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step, micro = step + 1, micro + len(group)
        last_loss = loss_sum / n_answer

        if step == 1 or step % config.log_every == 0 or step == total_steps:
            now = time.time()
            speed = tokens_since / max(now - clock, 1e-9)
            log(f"step {step}/{total_steps} | loss {last_loss:.6f} | lr {lr:.3e} | {speed:.0f} tok/s")
            tokens_since, clock = 0, now
        if step % config.save_every == 0 or step == total_steps:
            state = {**fingerprint, "step": step, "micro": micro, "loss": last_loss}
            save_checkpoint(out, step, model, tokenizer, optimizer, scheduler, state)

    save_final(out, model, tokenizer)
    log(f"saved the final model to {out}")
    return {
        "steps": step,
        "final_loss": last_loss,
        "seconds": round(time.time() - started, 2),
        "examples": len(data),
        "dropped": dropped,
        "resumed_from": str(ckpt) if ckpt else None,
        "out": str(out),
    }
