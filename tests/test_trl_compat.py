"""The factory's data and rewards in TRL, as a TRL user would take them: an export loads with
`datasets` and trains `SFTTrainer` with the loss on the completion only; the factory's rewards run
in `GRPOTrainer`. TRL is a test extra, not a dependency of the factory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from factory.problems import arithmetic
from tests.conftest import REPO

trl = pytest.importorskip("trl", reason="TRL is in the dev extra: pip install -e .[dev]")
TINY = REPO / "data" / "tiny-model"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A curated run of correct step-by-step arithmetic answers, imported, filtered and exported."""
    from typer.testing import CliRunner

    from factory.cli import app

    tmp = tmp_path_factory.mktemp("trl")
    src = tmp / "gens.jsonl"
    src.write_text("".join(
        json.dumps({"problem": arithmetic.question(p), "answer": str(p.answer), "task": "arithmetic",
                    "completion": f"<think>\n{arithmetic.solution_text(p)}\n</think>\n"
                                  f"<answer>{p.answer}</answer>"}) + "\n"
        for p in arithmetic.generate(24, seed=5)))
    env = {"FACTORY_RUNS_DIR": str(tmp / "runs")}
    runner = CliRunner()
    for args in (["import", str(src), "r"], ["filter", "r", "--chain", "r1_zero"],
                 ["export", "r", "--to", str(tmp / "ds")]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
    return tmp / "ds"


def load_train(folder: Path):
    from datasets import load_dataset

    return load_dataset(str(folder), cache_dir=str(folder.parent / "cache"))["train"]


def test_sft_trainer_trains_on_the_completion_only(export: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ds = load_train(export)
    assert ds[0]["prompt"][-1]["role"] == "user" and ds[0]["completion"][0]["role"] == "assistant"
    data = ds.select_columns(["prompt", "completion"])
    config = trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=4,
                           report_to=[], logging_steps=1, save_strategy="no", use_cpu=True)
    trainer = trl.SFTTrainer(model=AutoModelForCausalLM.from_pretrained(TINY), args=config, train_dataset=data,
                             processing_class=AutoTokenizer.from_pretrained(TINY))
    example = trainer.train_dataset[0]
    trained = sum(label != -100 for label in example["labels"])
    assert 0 < trained < len(example["input_ids"])  # the prompt's tokens carry no loss
    prompt_tokens = len(example["input_ids"]) - trained
    assert all(label == -100 for label in example["labels"][:prompt_tokens])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_grpo_trainer_runs_the_factory_rewards(export: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.train.trl_rewards import accuracy_reward, format_reward

    data = load_train(export).select_columns(["prompt", "solution", "task"])
    config = trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), max_steps=2, per_device_train_batch_size=8,
                            num_generations=4, max_completion_length=96, temperature=1.0, report_to=[],
                            logging_steps=1, save_strategy="no", use_cpu=True, use_vllm=False)
    trainer = trl.GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(TINY), args=config, train_dataset=data,
                              reward_funcs=[accuracy_reward, format_reward],
                              processing_class=AutoTokenizer.from_pretrained(TINY))
    trainer.train()
    logged = [h for h in trainer.state.log_history if "rewards/accuracy_reward/mean" in h]
    assert len(logged) == 2
    accuracy = [h["rewards/accuracy_reward/mean"] for h in logged]
    assert all(0.0 <= a <= 1.0 for a in accuracy) and max(accuracy) > 0  # the tiny model solves some of its arithmetic
