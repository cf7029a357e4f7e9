"""Checkpoints that resume a run exactly, and the final model folder that vLLM serves.

Layout of an output folder:
    checkpoint-000200/   model.save_pretrained (a LoRA adapter for a peft model), the tokenizer,
                         trainer_state.pt: optimizer, scheduler, RNG states and the runner's `state`
    checkpoint-000400/   only the newest `keep` checkpoints stay
    config.json, model.safetensors, generation_config.json, tokenizer files: the final model
A checkpoint is written to a temp folder and renamed into place, so a kill at any moment
leaves either a whole checkpoint or none that `latest_checkpoint` would pick.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from factory.core.errors import FactoryError

STATE_FILE = "trainer_state.pt"
_CKPT = re.compile(r"^checkpoint-(\d{6,})$")


def pick_device_dtype() -> tuple[torch.device, torch.dtype]:
    """bf16 on a GPU (the R1 recipe trains in bf16); float32 on CPU, where bf16 is slow and lossy."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def _is_peft(model: Any) -> bool:
    # A peft model can only exist if peft was imported, so full fine-tunes never pay its import.
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def _rng_states() -> dict[str, Any]:
    # numpy's state holds an ndarray; as a list it loads with torch.load(weights_only=True).
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Finished checkpoints, oldest first; temp folders start with '.' and never match."""
    if not out_dir.is_dir():
        return []
    found = []
    for p in out_dir.iterdir():
        m = _CKPT.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_checkpoint(
    out_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write `out_dir/checkpoint-{step:06d}/` atomically and keep only the newest `keep`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".checkpoint-*.tmp"):  # only a killed writer leaves these
        shutil.rmtree(stale, ignore_errors=True)
    final = out_dir / f"checkpoint-{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{final.name}.", suffix=".tmp"))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is as readable as any model folder
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        trainer_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_states(),
            "state": state,
        }
        torch.save(trainer_state, tmp / STATE_FILE)
        if final.exists():  # the same step saved twice (e.g. save_every hit the last step)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in _checkpoints(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = _checkpoints(Path(out_dir))
    return found[-1][1] if found else None


def _read_safetensors(ckpt: Path, pattern: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(ckpt.glob(pattern))  # one file, or the shards of a large model
    if not files:
        raise FactoryError(f"{ckpt}: no {pattern} weights in the checkpoint; it is incomplete, delete it")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(str(f)))
    return weights


def _load_full_weights(model: torch.nn.Module, ckpt: Path) -> None:
    weights = _read_safetensors(ckpt, "model*.safetensors")
    result = model.load_state_dict(weights, strict=False)
    # save_pretrained leaves out tied copies (lm_head tied to the embeddings); a missing key is
    # fine only when its tensor is shared with one that was loaded.
    own = model.state_dict()
    by_storage: dict[int, set[str]] = {}
    for name, tensor in own.items():
        by_storage.setdefault(tensor.data_ptr(), set()).add(name)
    missing = [k for k in result.missing_keys if not by_storage[own[k].data_ptr()] & weights.keys()]
    if missing or result.unexpected_keys:
        raise FactoryError(
            f"{ckpt}: the checkpoint does not fit the model (missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}); it was made from another model"
        )


def _load_adapter_weights(model: Any, ckpt: Path) -> None:
    from peft import set_peft_model_state_dict

    weights = _read_safetensors(ckpt, "adapter_model*.safetensors")
    result = set_peft_model_state_dict(model, weights)
    if result.unexpected_keys:
        raise FactoryError(
            f"{ckpt}: the adapter does not fit the model (unexpected {result.unexpected_keys[:3]}); "
            "it was made with another model or LoRA settings"
        )


def load_checkpoint(ckpt: Path, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Load weights, optimizer, scheduler and RNG states from `ckpt`; return the runner's state."""
    ckpt = Path(ckpt)
    if _is_peft(model):
        _load_adapter_weights(model, ckpt)
    else:
        _load_full_weights(model, ckpt)
    # Only our own runner writes this file, and it holds plain types and tensors only.
    trainer_state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(trainer_state["optimizer"])
    scheduler.load_state_dict(trainer_state["scheduler"])
    _set_rng_states(trainer_state["rng"])
    return trainer_state["state"]


def _eos_ids(generation_config: Any, tokenizer: Any) -> int | list[int]:
    """Keep the model's own stop ids (e.g. Qwen's list) and add the tokenizer's eos."""
    ids = generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.insert(0, tokenizer.eos_token_id)
    return ids[0] if len(ids) == 1 else ids


def save_final(out_dir: Path, model: Any, tokenizer: Any) -> None:
    """Write the final model into `out_dir` itself, in the dtype it trained in.

    A peft model has its LoRA adapters merged into the base weights first (in place: call
    this last), so the folder is a plain model that transformers and vLLM load without peft.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if _is_peft(model):
        model = model.merge_and_unload()
    # vLLM and generate() stop on generation_config's eos; it must be the eos the model learned.
    model.generation_config.eos_token_id = _eos_ids(model.generation_config, tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".final.", suffix=".tmp"))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        written = {p.name for p in tmp.iterdir()}
        for name in written:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Weight files of an earlier final save that this one did not write (other shard count)
    # would be picked up by the loaders, so remove them.
    for p in out_dir.iterdir():
        if p.is_file() and p.name not in written and (".safetensors" in p.name or p.name.startswith("adapter_")):
            p.unlink()
