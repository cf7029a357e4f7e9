"""SFT data: chat examples from a run's curated samples, a messages file or built-in tasks.

An example is a list of chat messages whose last message is the assistant's answer: the one
turn the model learns (earlier turns, if any, are context). Every problem with the data is
a FactoryError naming the file and the row, raised before any training starts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import prefilled_completion, row_meta
from factory.problems.sources import load_problems

Messages = list[dict[str, str]]
ROLES = ("system", "user", "assistant", "tool")
IGNORE = -100  # the label cross-entropy skips: prompt tokens and padding


# ---------------------------------------------------------------- examples


def sample_to_messages(row: dict[str, Any]) -> Messages:
    """A curated sample row -> [user: problem, assistant: prefill + completion].

    The prefill (e.g. "<think>\\n") was text the prompt put in the model's mouth; it is part
    of the answer the student must learn to write by itself.
    """
    return [
        {"role": "user", "content": row["problem"] or ""},
        {"role": "assistant", "content": prefilled_completion(row)},
    ]


def prompt_messages(row: dict[str, Any]) -> Messages:
    """The turns a sample answered: the template's system prompt and the problem's turn as generation
    recorded them (or an imported conversation's), else the problem alone as the user's turn."""
    recorded = row_meta(row).get("messages")
    if isinstance(recorded, list) and recorded and all(isinstance(m, dict) and {"role", "content"} <= set(m)
                                                       for m in recorded):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in recorded]
    return [{"role": "user", "content": row["problem"] or ""}]


def _builtin_examples(spec: str) -> list[Messages]:
    """R1-Zero format answers written from the arithmetic task's own step-by-step solution."""
    return [
        [
            {"role": "user", "content": p.problem},
            {
                "role": "assistant",
                "content": f"<think>\n{p.context['solution']}\n</think>\n<answer>{p.answer}</answer>",
            },
        ]
        for p in load_problems(spec)
    ]


def _check_messages(messages: Any, where: str) -> Messages:
    if not isinstance(messages, list) or not messages:
        raise FactoryError(f"{where}: 'messages' is empty or not a list; it needs [{{role, content}}, ...]")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise FactoryError(f"{where}: message {i + 1} is not a {{role, content}} object with string values")
        if m["role"] not in ROLES:
            raise FactoryError(f"{where}: message {i + 1} has role '{m['role']}'; roles are {', '.join(ROLES)}")
    if messages[-1]["role"] != "assistant":
        raise FactoryError(
            f"{where}: the last message is '{messages[-1]['role']}', not 'assistant'; "
            "SFT learns the final assistant turn, so every example must end with one"
        )
    if not messages[-1]["content"].strip():
        raise FactoryError(f"{where}: the assistant turn is empty; there is nothing to learn from it")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _run_examples(run_dir: Path) -> list[tuple[str, Messages]]:
    files = shards.done_shards(run_dir, "curated")
    if not files:
        raise FactoryError(
            f"{run_dir}: the run has no curated shards; run `factory filter` on it first "
            "(SFT trains on the samples rejection sampling kept)"
        )
    rows = []
    for f in files:
        for i, row in enumerate(shards.read_shard(f).to_pylist()):
            where = f"{f} row {i + 1}"
            rows.append((where, _check_messages(sample_to_messages(row), where)))
    return rows


def _file_rows(path: Path, pattern: str = "*.parquet") -> list[tuple[str, dict[str, Any]]]:
    """(location, row) pairs from a JSONL file or Parquet file(s); location names file and row."""
    if path.suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append((f"{path}:{lineno}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise FactoryError(f"{path}:{lineno}: malformed JSON ({e.msg}); one object per line") from None
        return rows
    files = sorted(path.glob(pattern)) if path.is_dir() else [path]
    if not files or any(f.suffix != ".parquet" for f in files):
        raise FactoryError(f"{path}: use a run folder, a .parquet or .jsonl file, or a folder of .parquet shards")
    rows = []
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise FactoryError(f"{f}: not a readable Parquet file ({e})") from None
        rows += [(f"{f} row {i + 1}", r) for i, r in enumerate(table.to_pylist())]
    return rows


def _run_folder(source: str) -> Path | None:
    """The run a source names (a run name, or a folder holding a manifest), else None."""
    path = Path(source)
    if (path / shards.MANIFEST).exists():
        return path
    if shards.RUN_NAME.fullmatch(source) and (shards.runs_root() / source / shards.MANIFEST).exists():
        return shards.runs_root() / source
    return None


def _dataset_rows(source: str, limit: int | None) -> list[tuple[str, Any]]:
    """Rows of an `hf:` dataset or a folder `datasets` saved or reads (an export folder among them)."""
    from factory.problems.sources import read_rows

    path = Path(source)
    if path.is_dir() and (path / "data").is_dir() and any((path / "data").glob("train-*.parquet")):
        return _file_rows(path / "data", pattern="train-*.parquet")  # an export: its default config
    return [(f"{source} row {i + 1}", r) for i, r in enumerate(read_rows(source, limit))]


def load_sft_examples(source: str, column: str = "messages", limit: int | None = None) -> list[Messages]:
    """Examples from a run (name or folder: its curated shards), an export folder, a `datasets`
    folder, `hf:ORG/NAME[:SPLIT]`, a file or folder with a `column` of messages, or
    `builtin:arithmetic?n=...&seed=...`."""
    if source.startswith("builtin:"):
        return _builtin_examples(source)[:limit]
    path = Path(source)
    run_dir = _run_folder(source)
    if run_dir is not None:
        examples = [m for _, m in _run_examples(run_dir)]
    elif source.startswith("hf:") or path.exists():
        examples = []
        saved = path.is_dir() and not any(path.glob("*.parquet")) and not path.suffix
        rows = _dataset_rows(source, limit) if source.startswith("hf:") or saved else _file_rows(path)
        for where, row in rows:
            if not isinstance(row, dict) or column not in row:
                columns = ", ".join(row) if isinstance(row, dict) else type(row).__name__
                raise FactoryError(
                    f"{where}: no '{column}' column (columns: {columns}); SFT data is a run folder "
                    f"(its curated samples) or a file with a '{column}' column of [{{role, content}}] lists"
                )
            examples.append(_check_messages(row[column], where))
            if limit and len(examples) == limit:  # a smoke test need not check a whole large file
                break
    else:
        raise FactoryError(f"{source}: no such run, file or folder; check the path or the run name")
    if not examples:
        raise FactoryError(f"{source}: no examples found (the data is empty)")
    return examples[:limit]


def mix(primary: list[Messages], secondary: list[Messages], ratio: float, seed: int) -> list[Messages]:
    """Add secondary (e.g. non-reasoning) examples so they make `ratio` of the result.

    R1's SFT stage mixed ~600k reasoning with ~200k non-reasoning samples: ratio 0.25. All
    primary examples are kept; a secondary set too small for the share is repeated.
    """
    if not 0 <= ratio < 1:
        raise FactoryError(f"mix ratio {ratio} must be in [0, 1): it is the secondary share of the result")
    wanted = round(ratio * len(primary) / (1 - ratio))
    if wanted and not secondary:
        raise FactoryError("the secondary dataset is empty; nothing to mix in")
    rng = random.Random(seed)
    picked: list[Messages] = []
    while len(picked) < wanted:  # whole shuffled passes, so repeats are spread evenly
        chunk = list(secondary)
        rng.shuffle(chunk)
        picked += chunk[: wanted - len(picked)]
    mixed = primary + picked
    rng.shuffle(mixed)
    return mixed


# ---------------------------------------------------------------- tokens


def check_pad_token(tokenizer: Any) -> None:
    """Give the tokenizer a pad token when it has none.

    Many base models (Qwen2.5 among them) pad with their eos token. That is harmless here:
    labels and attention masks are built from lengths, never by looking for the pad id, so
    the answer's closing eos is always labelled and the model learns to stop.
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def render_prompt(messages: Messages, tokenizer: Any) -> str:
    """The text before the answer: the model's chat template, or a plain User/Assistant layout."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    turns = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages[:-1])
    return (tokenizer.bos_token or "") + turns + "Assistant: "


def tokenize_example(messages: Messages, tokenizer: Any, max_len: int) -> tuple[list[int], list[int]] | None:
    """(input_ids, labels) with labels = IGNORE over the prompt, or None if truncation leaves no answer.

    Prompt and answer are tokenized separately so the boundary is exact; the eos id is
    appended to the answer and labelled, so the model learns where an answer ends.
    """
    check_pad_token(tokenizer)
    prompt = tokenizer(render_prompt(messages, tokenizer), add_special_tokens=False)["input_ids"]
    target = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt) >= max_len:
        return None
    input_ids = (prompt + target)[:max_len]
    labels = ([IGNORE] * len(prompt) + target)[:max_len]
    return input_ids, labels


def tokenize_all(
    examples: list[Messages], tokenizer: Any, max_len: int
) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Tokenized examples and how many were dropped because max_len left no answer token."""
    tokenized = [tokenize_example(m, tokenizer, max_len) for m in examples]
    kept = [t for t in tokenized if t is not None]
    return kept, len(tokenized) - len(kept)


# ---------------------------------------------------------------- batches


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of batches (lists of example indices), grouped by length to waste little padding.

    Not packing: packing several examples into one row is exact only with attention kernels
    that honour per-example position_ids (flash-attention varlen); with sdpa or eager, e.g. on
    CPU, attention would leak across examples. Instead: shuffle, sort each window of 50
    batches by length, cut it into batches, shuffle the batches. Padding is then small and
    the loss exact on every backend. The order depends only on (seed, epoch), so a resumed
    run finds its place by counting batches.
    """
    rng = random.Random(f"sft-batches-{seed}-{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = 50 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest example; padding gets attention_mask 0 and label IGNORE."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = [ids + [pad_id] * (width - len(ids)) for ids, _ in examples]
    labels = [lab + [IGNORE] * (width - len(lab)) for _, lab in examples]
    mask = [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in examples]
    return {
        "input_ids": torch.tensor(input_ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }
