"""SFT runner: labels, data errors, batching, mixing, training, checkpoints, exact resume, LoRA."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.sample import to_table
from factory.train.checkpoint import latest_checkpoint
from factory.train.config import changed_settings
from factory.train.data import (
    IGNORE,
    bucketed_batches,
    collate,
    load_sft_examples,
    mix,
    render_prompt,
    tokenize_all,
    tokenize_example,
)
from factory.train.sft import SFTConfig, run_sft

ARITH = "builtin:arithmetic?n=12&seed=0"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model gains nothing from two threads, and with the other core busy a second
    thread makes every op wait on it: one thread keeps these tests fast and steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tokenizer_of(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


class Killed(Exception):
    """Stands in for a kill arriving after the step-3 checkpoint and before step 4's."""


def losses(lines: list[str]) -> dict[int, str]:
    """step -> logged loss text, from lines like 'step 4/6 | loss 5.123456 | ...'."""
    found = (re.match(r"step (\d+)/\d+ \| loss (\S+)", line) for line in lines)
    return {int(m.group(1)): m.group(2) for m in found if m}


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


# ---------------------------------------------------------------- tokens and labels


def test_labels_mask_the_prompt_and_keep_the_eos(tiny_model: Path) -> None:
    tok = tokenizer_of(tiny_model)
    messages = load_sft_examples(ARITH)[0]
    answer = messages[-1]["content"]
    assert answer.startswith("<think>\n") and re.search(r"\n</think>\n<answer>-?\d+</answer>$", answer)
    ids, labels = tokenize_example(messages, tok, max_len=1024)
    prompt = tok(render_prompt(messages, tok), add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt)] == prompt and prompt[-1] != IGNORE
    assert all(label == IGNORE for label in labels[: len(prompt)])
    assert labels[len(prompt) :] == ids[len(prompt) :]
    assert labels[-1] == tok.eos_token_id
    assert tok.decode(labels[len(prompt) :]) == answer + tok.eos_token

    # Truncation cuts the answer; a prompt that fills max_len leaves nothing and is dropped.
    ids3, labels3 = tokenize_example(messages, tok, max_len=len(prompt) + 3)
    assert len(ids3) == len(prompt) + 3 and sum(label != IGNORE for label in labels3) == 3
    assert tokenize_example(messages, tok, max_len=len(prompt)) is None
    kept, dropped = tokenize_all([messages, [{"role": "user", "content": "x" * 2000}, messages[-1]]], tok, 1024)
    assert len(kept) == 1 and dropped == 1

    # Without a chat template: a plain User/Assistant layout, still masked.
    tok.chat_template = None
    assert render_prompt(messages, tok) == f"User: {messages[0]['content']}\nAssistant: "
    ids, labels = tokenize_example(messages, tok, max_len=1024)
    assert labels[-1] == tok.eos_token_id and labels[0] == IGNORE


def test_eos_is_labelled_even_when_pad_is_eos(tiny_model: Path) -> None:
    # Qwen2.5 base models pad with eos; labels come from lengths, so eos is still learned.
    tok = tokenizer_of(tiny_model)
    tok.pad_token = tok.eos_token
    examples = [tokenize_example(m, tok, max_len=256) for m in load_sft_examples(ARITH)[:3]]
    batch = collate(examples, tok.pad_token_id)
    for (ids, labels), row in zip(examples, batch["labels"].tolist()):
        assert labels[-1] == tok.eos_token_id and row[len(ids) - 1] == tok.eos_token_id
        assert all(x == IGNORE for x in row[len(ids):])


# ---------------------------------------------------------------- data sources and errors


def test_run_folder_uses_curated_samples_with_prefill(runs_dir: Path) -> None:
    run = runs_dir / "r1"
    run.mkdir(parents=True)
    (run / shards.MANIFEST).write_text("{}")
    with pytest.raises(FactoryError, match="factory filter"):
        load_sft_examples("r1")
    row = {"id": "a", "problem": "What is 1 + 1?", "completion": "1 + 1 = 2\n</think>\n<answer>2</answer>",
           "metadata": json.dumps({"prefill": "<think>\n"})}
    shards.write_shard(shards.shard_path(run, "curated", 0), to_table([row]), {})
    assert load_sft_examples("r1") == [
        [
            {"role": "user", "content": "What is 1 + 1?"},
            {"role": "assistant", "content": "<think>\n1 + 1 = 2\n</think>\n<answer>2</answer>"},
        ]
    ]


def test_bad_data_names_the_file_and_row(tmp_path: Path) -> None:
    good = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    no_column = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"problem": ["a"], "answer": ["b"]}), no_column)
    with pytest.raises(FactoryError, match=r"plain\.parquet row 1: no 'messages' column \(columns: problem, answer\)"):
        load_sft_examples(str(no_column))

    empty_turn = tmp_path / "empty_turn.jsonl"
    rows = [good, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]]
    empty_turn.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))
    with pytest.raises(FactoryError, match=r"empty_turn\.jsonl:2: the assistant turn is empty"):
        load_sft_examples(str(empty_turn))

    empty_messages = tmp_path / "shards"
    empty_messages.mkdir()
    pq.write_table(pa.table({"messages": [good, []]}), empty_messages / "part-0.parquet")
    with pytest.raises(FactoryError, match=r"part-0\.parquet row 2: 'messages' is empty"):
        load_sft_examples(str(empty_messages))

    user_last = tmp_path / "user_last.jsonl"
    user_last.write_text(json.dumps({"messages": good[:1]}) + "\n")
    with pytest.raises(FactoryError, match=r"user_last\.jsonl:1: the last message is 'user'"):
        load_sft_examples(str(user_last))
    not_dicts = tmp_path / "not_dicts.jsonl"
    not_dicts.write_text(json.dumps({"messages": ["hi", "hello"]}) + "\n")
    with pytest.raises(FactoryError, match=r"not_dicts\.jsonl:1: message 1 is not a \{role, content\}"):
        load_sft_examples(str(not_dicts))
    with pytest.raises(FactoryError, match="no such run, file or folder"):
        load_sft_examples(str(tmp_path / "missing.parquet"))
    assert load_sft_examples(str(empty_messages / "part-0.parquet"), limit=1) == [good]


# ---------------------------------------------------------------- batching and mixing


def test_batches_are_deterministic_bucketed_and_complete() -> None:
    lengths = [(i * 37) % 101 for i in range(40)]
    epoch0 = bucketed_batches(lengths, 4, seed=1, epoch=0)
    assert epoch0 == bucketed_batches(lengths, 4, seed=1, epoch=0)
    assert epoch0 != bucketed_batches(lengths, 4, seed=1, epoch=1)
    assert sorted(i for b in epoch0 for i in b) == list(range(40))
    assert all(len(b) == 4 for b in epoch0)
    # Within the one window, each batch holds a run of similar lengths.
    assert all(lengths[b[0]] <= lengths[b[-1]] for b in epoch0)


def test_mix_gives_the_requested_share() -> None:
    primary = [[{"role": "assistant", "content": f"p{i}"}] for i in range(30)]
    secondary = [[{"role": "assistant", "content": f"s{i}"}] for i in range(10)]

    def share(mixed: list) -> float:
        return sum(m[0]["content"].startswith("s") for m in mixed) / len(mixed)

    quarter = mix(primary, secondary, 0.25, seed=0)
    assert len(quarter) == 40 and share(quarter) == 0.25
    half = mix(primary, secondary, 0.5, seed=0)  # needs 30 of 10: repeated, evenly
    assert len(half) == 60 and share(half) == 0.5
    assert {m[0]["content"] for m in half if m[0]["content"].startswith("s")} == {f"s{i}" for i in range(10)}
    assert half == mix(primary, secondary, 0.5, seed=0) and half != mix(primary, secondary, 0.5, seed=1)
    assert sorted(map(str, mix(primary, secondary, 0.0, seed=0))) == sorted(map(str, primary))
    with pytest.raises(FactoryError, match=r"\[0, 1\)"):
        mix(primary, secondary, 1.0, seed=0)


# ---------------------------------------------------------------- config


def test_config_refuses_bad_settings(tiny_model: Path, tmp_path: Path) -> None:
    base = SFTConfig(data=ARITH, model=str(tiny_model), out=str(tmp_path / "out"))
    base.validate()
    for change, message in [
        ({"lr": 0}, "learning rate must be > 0"),
        ({"grad_accum": 0}, "grad_accum=0"),
        ({"secondary_ratio": 1.0}, "secondary share"),
        ({"secondary_data": ARITH, "secondary_ratio": 0.0}, "drop secondary_data"),
        ({"lora_r": -1}, "lora_r=-1"),
        ({"max_steps": 0}, "max_steps=0"),
    ]:
        with pytest.raises(FactoryError, match=message):
            replace(base, **change).validate()
    with pytest.raises(FactoryError, match="no such folder"):
        run_sft(replace(base, model=str(tmp_path / "nope")), log=lambda _: None)


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict]:
    """30 steps on 8 repeated examples: enough for the loss to fall clearly."""
    out = tmp_path_factory.mktemp("sft") / "out"
    lines: list[str] = []
    config = SFTConfig(
        data="builtin:arithmetic?n=8&seed=0", model=str(tiny_model), out=str(out),
        max_steps=30, batch_size=4, lr=3e-3, warmup_steps=2, log_every=1, save_every=100,
    )
    summary = run_sft(config, log=lines.append)
    return out, lines, summary


def test_loss_decreases(trained: tuple[Path, list[str], dict]) -> None:
    _, lines, summary = trained
    loss = [float(v) for _, v in sorted(losses(lines).items())]
    assert len(loss) == 30 and summary["steps"] == 30 and summary["examples"] == 8
    assert sum(loss[-5:]) / 5 < 0.5 * sum(loss[:5]) / 5
    assert summary["final_loss"] == pytest.approx(loss[-1], abs=1e-6)


def test_final_model_loads_and_generates(trained: tuple[Path, list[str], dict], tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    out, _, _ = trained
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-000030"]
    tok = tokenizer_of(out)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    prompt = render_prompt(load_sft_examples("builtin:arithmetic?n=1&seed=0")[0], tok)
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    generated = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > ids.shape[1]


def run_killed_and_resumed(config: SFTConfig, kill_at: int) -> list[str]:
    """Run until the log of step `kill_at` raises, then start again; return all log lines."""
    lines: list[str] = []

    def killer(line: str) -> None:
        lines.append(line)
        if line.startswith(f"step {kill_at}/"):
            raise Killed

    with pytest.raises(Killed):
        run_sft(config, log=killer)
    run_sft(config, log=lines.append)
    return lines


def test_resume_after_kill_matches_an_uninterrupted_run(tiny_model: Path, tmp_path: Path) -> None:
    # 12 examples in batches of 4 with 2 micro-batches per step: steps cross epoch boundaries.
    a = SFTConfig(
        data=ARITH, model=str(tiny_model), out=str(tmp_path / "a"), max_steps=6, batch_size=4,
        grad_accum=2, lr=2e-3, warmup_steps=2, log_every=1, save_every=3,
    )
    a_lines: list[str] = []
    run_sft(a, log=a_lines.append)
    b = replace(a, out=str(tmp_path / "b"))
    b_lines = run_killed_and_resumed(b, kill_at=4)
    assert any(line.startswith("resumed from") and "checkpoint-000003" in line for line in b_lines)
    a_loss, b_loss = losses(a_lines), losses(b_lines[next(i for i, x in enumerate(b_lines) if "resumed" in x) :])
    assert sorted(b_loss) == [4, 5, 6] and all(a_loss[s] == b_loss[s] for s in (4, 5, 6))
    wa, wb = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-000003", "checkpoint-000006"]

    with pytest.raises(FactoryError, match=r"different config \(lr: 0\.002 -> 0\.001\)"):
        run_sft(replace(b, lr=1e-3), log=lambda _: None)


def test_a_checkpoint_from_before_a_setting_existed_still_resumes() -> None:
    now = SFTConfig(data="d", model="m", out="o")
    older = {k: v for k, v in now.trajectory().items() if k != "lora_alpha"}  # saved before lora_alpha existed
    assert changed_settings(now, older) == {}  # it ran at the default
    assert changed_settings(replace(now, lora_alpha=8), older) == {"lora_alpha": (16, 8)}
    assert changed_settings(replace(now, lr=1e-3), {**older, "lora_alpha": 16}) == {"lr": (2e-5, 1e-3)}


def test_resume_refuses_changed_data(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    examples = load_sft_examples(ARITH)
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in examples))
    config = SFTConfig(data=str(data), model=str(tiny_model), out=str(tmp_path / "out"), max_steps=1, batch_size=4)
    run_sft(config, log=lambda _: None)
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in examples[:-1]))
    with pytest.raises(FactoryError, match="the training data .* changed since this checkpoint"):
        run_sft(config, log=lambda _: None)


def test_lora_trains_resumes_and_saves_merged_weights(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    a = SFTConfig(
        data=ARITH, model=str(tiny_model), out=str(tmp_path / "a"), max_steps=4, batch_size=4,
        lr=1e-2, warmup_steps=0, log_every=1, save_every=2, lora_r=4,
    )
    a_lines: list[str] = []
    run_sft(a, log=a_lines.append)
    assert (tmp_path / "a" / "checkpoint-000004" / "adapter_model.safetensors").exists()
    b_lines = run_killed_and_resumed(replace(a, out=str(tmp_path / "b")), kill_at=3)
    assert losses(a_lines)[4] == losses(b_lines)[4]

    out = tmp_path / "a"
    assert not (out / "adapter_config.json").exists() and latest_checkpoint(out).name == "checkpoint-000004"
    merged = AutoModelForCausalLM.from_pretrained(str(out)).state_dict()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model)).state_dict()
    assert merged.keys() == base.keys() and not any("lora" in k for k in merged)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[q], base[q])  # the adapters were merged in
    assert torch.equal(merged["model.norm.weight"], base["model.norm.weight"])  # frozen outside LoRA
    wb = final_weights(tmp_path / "b")
    assert all(torch.allclose(merged[k], wb[k], atol=1e-6) for k in wb)
