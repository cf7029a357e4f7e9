"""One settings check for every file a setting can come from: a chain, a recipe's generate and
train sections, and `factory train --config` accept or refuse the same value the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.core.errors import FactoryError
from factory.filter.chain import load_chain
from factory.recipe import generate_config, generate_settings, load_recipe
from factory.train.config import GRPOConfig
from factory.train.rewards import parse_reward_spec


def chain_step(tmp_path: Path, step: str, settings: str) -> object:
    path = tmp_path / "c.yaml"
    path.write_text(f"name: c\nsteps:\n  - {step}: {settings}\n")
    return load_chain(str(path)).steps[0][1]


def recipe(tmp_path: Path, body: str) -> dict:
    path = tmp_path / "r.yaml"
    path.write_text("run: r\n" + body)
    return load_recipe(path)


def refused(fn, *args) -> str:
    with pytest.raises(FactoryError) as e:
        fn(*args)
    return str(e.value)


def test_1e_1_is_a_float_everywhere(tmp_path: Path):
    # YAML reads 1e-1 (no dot) as a string; every source makes it 0.1.
    assert chain_step(tmp_path, "language", "{min_share: 1e-1}").min_share == 0.1
    assert recipe(tmp_path, "generate: {temperature: 1e-1}\n")["generate"]["temperature"] == 0.1
    assert recipe(tmp_path, "train: {grpo: {lr: 1e-1}}\n")["train"]["grpo"]["lr"] == 0.1
    assert recipe(tmp_path, "generate: {max_tokens: 1e3}\n")["generate"]["max_tokens"] == 1000


def test_a_bool_is_true_or_false_everywhere(tmp_path: Path):
    for message in (
        refused(chain_step, tmp_path, "correct", "{reject: 'yes'}"),
        refused(recipe, tmp_path, "train: {grpo: {scale_rewards: 'yes'}}\n"),
        refused(recipe, tmp_path, "train: {sft: {lr: true}}\n"),  # nor a number
    ):
        assert "is not valid: expected" in message and ("r.yaml" in message or "c.yaml" in message), message
    assert "reject='yes' is not valid: expected true or false" in refused(chain_step, tmp_path, "correct",
                                                                          "{reject: 'yes'}")
    assert chain_step(tmp_path, "correct", "{reject: no}").reject is False  # YAML's own booleans are booleans


def test_unknown_settings_and_bad_choices_read_alike(tmp_path: Path):
    assert "step 1 (length): unknown setting 'sparkle'" in refused(chain_step, tmp_path, "length", "{sparkle: 1}")
    assert "generate: unknown setting 'sparkle'" in refused(recipe, tmp_path, "generate: {sparkle: 1}\n")
    assert "train.grpo (see `factory train grpo --help`): unknown setting 'sparkle'" in refused(
        recipe, tmp_path, "train: {grpo: {sparkle: 1}}\n")
    assert "order='longest' is not valid: expected one of shortest, random" in refused(
        chain_step, tmp_path, "select", "{order: longest}")
    assert "prompt_mode='xml' is not valid: expected one of auto, chat, base" in refused(
        recipe, tmp_path, "generate: {prompt_mode: xml}\n")
    assert "loss_type='ppo' is not valid: expected one of grpo, dapo, dr_grpo, bnpo" in refused(
        recipe, tmp_path, "train: {grpo: {loss_type: ppo}}\n")


def test_train_config_file_checks_like_a_recipe(cli, tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text("grpo:\n  scale_rewards: 'yes'\n")
    result = cli("train", "grpo", "--config", path, "-m", tmp_path, "-o", tmp_path / "o")
    assert result.exit_code == 2 and "scale_rewards='yes' is not valid: expected true or false" in result.output


def test_every_backend_option_is_a_recipe_setting(tmp_path: Path):
    keys = {leaf.key for leaf in generate_settings()}
    assert {"max_retries", "api_key_env", "concurrency", "base_url", "engine_args", "map", "n"} <= keys
    loaded = recipe(tmp_path, "generate: {backend: openai, max_retries: 7, api_key_env: MY_KEY, top_p: 0.5}\n")
    config = generate_config(loaded)
    assert config.backend_options["max_retries"] == 7 and config.backend_options["api_key_env"] == "MY_KEY"
    assert config.backend_options["concurrency"] == 32  # the options' own default, stated once
    assert config.sampling.top_p == 0.5 and config.sampling.n == 4
    assert "max_retries=-1 must be >= 0" in refused(recipe, tmp_path, "generate: {max_retries: -1}\n")


def test_generate_flags_are_the_settings_with_their_defaults(cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "300")
    flat = " ".join(cli("generate", "-h").output.replace("│", " ").split())
    for text in ("--max-retries", "--api-key-env", "--engine-arg", "--templates-dir", "--ray-address", "-n",
                 "[default: 0.7]", "[default: 1024]", "[default: OPENAI_API_KEY]"):
        assert text in flat, text
    evaluation = " ".join(cli("eval", "-h").output.replace("│", " ").split())
    assert "[default: 256]" in evaluation and "--max-retries" in evaluation and "--shard-size" not in evaluation


def test_length_reward_follows_the_run_at_default_settings():
    config = GRPOConfig()
    [(_, _, length)] = parse_reward_spec("length", None, config.max_new_tokens, config.length_limit)
    values = {length({"completion": "", "completion_tokens": t}) for t in (10, config.max_new_tokens // 2 + 64,
                                                                            config.max_new_tokens)}
    assert len(values) == 3 and max(values) == 1.0 and min(values) == 0.0
    [(_, _, custom)] = parse_reward_spec("length", None, 256, 200)
    assert custom({"completion_tokens": 200}) == 1.0 and 0 < custom({"completion_tokens": 228}) < 1
    with pytest.raises(FactoryError, match="length_limit 300"):
        GRPOConfig(model="m", out="o", length_limit=300).validate()
