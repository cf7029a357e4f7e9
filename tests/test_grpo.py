"""GRPO: the loss against hand-computed values, one step moves the policy the right way, config checks."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from factory.core.errors import FactoryError
from factory.train.grpo import GRPOConfig, policy_update, tokenize_rollouts
from factory.train.objective import grpo_loss, sequence_logprobs


def test_loss_matches_hand_computation():
    old = torch.log(torch.tensor([[0.5, 0.4], [0.2, 0.3]]))
    new = torch.log(torch.tensor([[0.6, 0.4], [0.1, 0.45]]))  # ratios 1.2, 1.0 / 0.5, 1.5
    ref = torch.log(torch.tensor([[0.5, 0.5], [0.2, 0.3]]))
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    beta, eps = 0.1, 0.2

    def k3(r, p):  # exp(ref - pi) - (ref - pi) - 1
        d = math.log(r) - math.log(p)
        return math.exp(d) - d - 1

    # sequence 0 (A = +1): min(1.2, 1.2 clipped to 1.2) = 1.2; min(1.0, 1.0) = 1.0
    t00 = -1.2 + beta * k3(0.5, 0.6)
    t01 = -1.0 + beta * k3(0.5, 0.4)
    # sequence 1 (A = -1): min(0.5 * -1, clip(0.5) = 0.8 * -1) = -0.8 -> loss 0.8; its 2nd token is masked
    t10 = 0.8 + beta * k3(0.2, 0.1)
    expected_grpo = ((t00 + t01) / 2 + t10) / 2
    expected_dapo = (t00 + t01 + t10) / 3
    expected_dr = (t00 + t01 + t10) / (2 * 4)
    for loss_type, expected in (("grpo", expected_grpo), ("dapo", expected_dapo), ("dr_grpo", expected_dr)):
        loss, m = grpo_loss(new, old, ref, adv, mask, beta, eps, eps, loss_type, max_new_tokens=4)
        assert float(loss) == pytest.approx(expected, abs=1e-6), loss_type
    # the only clipped token is sequence 1's first (ratio 0.5 < 0.8 with A < 0): 1 of 3 counted tokens
    assert m["clip_fraction"] == pytest.approx(1 / 3)
    assert m["kl"] == pytest.approx((k3(0.5, 0.6) + k3(0.5, 0.4) + k3(0.2, 0.1)) / 3, abs=1e-6)


def test_no_reference_means_no_kl_term():
    logps = torch.log(torch.tensor([[0.5]]))
    loss, m = grpo_loss(logps, logps, None, torch.tensor([2.0]), torch.ones(1, 1), 0.5, 0.2, 0.2, "grpo", 1)
    assert float(loss) == pytest.approx(-2.0) and m["kl"] == 0.0


def test_one_step_raises_logprob_of_positive_advantage_completions(tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3 * 4?"}], tokenize=False,
                                     add_generation_prompt=True)
    completions = ["<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>",
                   "<think>2 + 3 = 5, 5 * 4 = 20</think> <answer>20</answer>",
                   "<answer>14</answer>", "gibberish <answer> 7<answer>"]
    advantages = torch.tensor([1.0, -1.0, 0.8, -0.8])
    batch = tokenize_rollouts(tok, [prompt] * 4, completions, eos=True)
    mask = batch["completion_mask"].float()

    def seq_logp() -> torch.Tensor:
        with torch.no_grad():
            return (sequence_logprobs(model, batch["input_ids"], batch["attention_mask"]) * mask).sum(-1)

    before = seq_logp()
    config = GRPOConfig(model=str(tiny_model), out="unused", group_size=4, batch_size=4, micro_batch_size=2, lr=1e-3,
                        beta=0.04)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    metrics = policy_update(model, ref, optimizer, scheduler, batch, advantages, config)
    after = seq_logp()
    assert after[0] > before[0] and after[2] > before[2]  # positive advantage: more likely
    assert after[1] < before[1] and after[3] < before[3]  # negative advantage: less likely
    assert metrics["clip_fraction"] == 0.0 and metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # ratio 1 at mu = 1


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 6, "group_size": 4}, "does not hold whole groups of 4"),
    ({"group_size": 1, "batch_size": 4}, "group_size must be >= 2"),
    ({"loss_type": "ppo"}, "loss_type must be one of grpo, dapo, dr_grpo"),
    ({"batch_size": 8, "micro_batch_size": 3}, "multiple of micro_batch_size"),
    ({"temperature": 0.0}, "temperature must be > 0"),
])
def test_bad_combinations_are_refused_with_an_explanation(changes, message):
    config = GRPOConfig(model="m", out="o", **{"group_size": 4, "batch_size": 8, "micro_batch_size": 4, **changes})
    with pytest.raises(FactoryError, match=message):
        config.validate()


def test_cli_refuses_a_batch_without_whole_groups(cli, tiny_model: Path, tmp_path: Path):
    result = cli("train", "grpo", "--model", tiny_model, "--out", tmp_path / "o", "--batch-size", "6",
                 "--group-size", "4")
    assert result.exit_code == 2 and "does not hold whole groups" in result.output and "Traceback" not in result.output
    recipe = tmp_path / "r.yaml"
    recipe.write_text("grpo:\n  group_size: 4\n  batch_size: 8\n  sparkle: 1\n")
    result = cli("train", "grpo", "--config", recipe, "--model", tiny_model, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "unknown setting 'sparkle'" in result.output


def test_resume_after_kill_takes_the_same_next_step(tiny_model: Path, tmp_path: Path):
    from safetensors.torch import load_file

    from factory.train.grpo import run_grpo

    def config(out: Path, steps: int) -> GRPOConfig:
        return GRPOConfig(problems="builtin:arithmetic?n=12&seed=5", model=str(tiny_model), out=str(out),
                          template="arithmetic_r1", group_size=4, batch_size=8, micro_batch_size=8, steps=steps,
                          max_new_tokens=12, rollout_backend="transformers", save_every=1, lr=1e-3)

    straight = run_grpo(config(tmp_path / "a", 3), log=lambda _m: None)

    class Killed(Exception):
        pass

    def kill_at_step_3(line: str) -> None:  # step 3 is computed but never saved, as in a kill
        if line.startswith("step=3 "):
            raise Killed

    with pytest.raises(Killed):
        run_grpo(config(tmp_path / "b", 3), log=kill_at_step_3)
    lines: list[str] = []
    resumed = run_grpo(config(tmp_path / "b", 3), log=lines.append)
    assert lines[0].startswith("warning: lr=0.001 with train=all")  # the test's lr is for speed, not quality
    assert lines[1] == "resumed from checkpoint-000002 at step 2"
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight["history"][-1] == {**resumed["history"][-1], "seconds": straight["history"][-1]["seconds"]}
    # a finished run extends: 2 steps, then 3, is the straight 3-step run
    run_grpo(config(tmp_path / "c", 2), log=lambda _m: None)
    lines.clear()
    run_grpo(config(tmp_path / "c", 3), log=lines.append)
    assert lines[1] == "resumed from checkpoint-000002 at step 2"
    c = load_file(tmp_path / "c" / "model.safetensors")
    assert all(torch.equal(a[k], c[k]) for k in a)
    other = config(tmp_path / "b", 3)
    other.lr = 5e-4
    with pytest.raises(FactoryError, match="other settings"):
        run_grpo(other, log=lambda _m: None)


def test_norms_only_updates_the_gains_and_held_out_accuracy_is_logged(tmp_path: Path):
    from safetensors.torch import load_file

    from factory.train.grpo import run_grpo
    from tests.conftest import REPO

    shipped = REPO / "data" / "tiny-model"  # right often enough that groups have mixed rewards
    lines: list[str] = []
    config = GRPOConfig(problems="builtin:arithmetic?n=16&seed=5", model=str(shipped), out=str(tmp_path / "o"),
                        template="arithmetic_r1", group_size=4, batch_size=16, micro_batch_size=16, steps=2,
                        max_new_tokens=80, rollout_backend="transformers", lr=1e-2, beta=0, train="norms",
                        eval_problems="builtin:arithmetic?n=3&seed=7", eval_every=1, eval_n=2)
    history = run_grpo(config, log=lines.append)["history"]
    before, after = load_file(shipped / "model.safetensors"), load_file(tmp_path / "o" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("norm" in k for k in changed)  # the gains moved, nothing else did
    assert [r["step"] for r in history] == [0, 1, 2]  # the start, then every step (eval_every=1)
    assert all(0 <= r["eval/pass@1"] <= 1 and "eval/pass@1_se" in r for r in history)
    assert all(r["entropy"] > 0 for r in history[1:])
    assert not any(line.startswith("warning:") for line in lines)


def test_cosine_schedule_decays_to_zero_and_ties_the_run_to_its_steps():
    constant = GRPOConfig(model="m", out="o", steps=100, warmup_steps=4, lr=1e-2)
    cosine = GRPOConfig(model="m", out="o", steps=100, warmup_steps=4, lr=1e-2, lr_schedule="cosine")
    assert [constant.lr_factor(s) for s in (0, 3, 50, 99)] == [0.25, 1.0, 1.0, 1.0]
    factors = [cosine.lr_factor(s) for s in range(100)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]  # the same warmup
    assert all(a >= b for a, b in zip(factors[3:], factors[4:])) and factors[-1] < 1e-3
    assert abs(cosine.lr_factor(4 + 48) - 0.5) < 1e-9  # half-way through the decay: half the rate
    # a constant rate extends with more steps; a cosine decay is set by them
    assert "steps" not in constant.trajectory() and cosine.trajectory()["steps"] == 100
    # a checkpoint written before lr_schedule existed ran at a constant rate: it resumes as one
    older = {k: v for k, v in asdict(constant).items() if k != "lr_schedule"}
    assert constant.continues(older) and not cosine.continues(older)
    with pytest.raises(FactoryError, match="lr_schedule must be one of constant, cosine"):
        GRPOConfig(model="m", out="o", lr_schedule="linear").validate()
    mu = GRPOConfig(model="m", out="o", steps=10, num_iterations=2, lr_schedule="cosine")
    assert mu.lr_factor(19) < 0.01 < mu.lr_factor(10)  # counted in optimizer steps: mu per GRPO step


def test_settings_known_to_lose_accuracy_are_warned_about():
    assert GRPOConfig(lr=3e-4).divergence_warnings()  # train=all, as measured in the README
    assert not GRPOConfig(lr=1e-5).divergence_warnings()
    assert not GRPOConfig(lr=1e-2, train="norms").divergence_warnings()
    assert GRPOConfig(lr=2e-2, train="norms").divergence_warnings()  # constant 2e-2 swung, as measured
    assert not GRPOConfig(lr=2e-2, train="norms", lr_schedule="cosine").divergence_warnings()
    with pytest.raises(FactoryError, match="train must be one of all, norms"):
        GRPOConfig(model="m", out="o", train="embeddings").validate()


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_rollouts_without_advantage_skip_the_backward_and_change_nothing(tiny_model: Path, loss_type: str):
    """Without a KL term, zero-advantage rollouts get no forward-with-graph; the update (loss, every
    gradient, the entropy logged) is the one computed over the whole batch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    completions = ["<answer>14</answer>", "<think>3 * 4 = 12</think> <answer>14</answer>", "<answer>20</answer>",
                   "no", "<answer>7</answer>", "<think>2 + 3 = 5</think>"]
    batch = tokenize_rollouts(tok, ["2 + 3 * 4 = ?"] * 6, completions, eos=True)
    advantages = torch.tensor([0.0, 1.0, 0.0, 0.0, -1.0, 0.0])  # micro-batches [0 1] [0 0] [-1 0]
    config = GRPOConfig(model=str(tiny_model), out="unused", group_size=2, batch_size=6, micro_batch_size=2, lr=1e-3,
                        beta=0.0, loss_type=loss_type)
    results = []
    for skip in (True, False):
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keep the weights: compare the gradients
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        # a reference model turns the skip off (its KL term needs every row), at beta 0 it adds nothing
        ref = None if skip else AutoModelForCausalLM.from_pretrained(tiny_model).eval()
        metrics = policy_update(model, ref, optimizer, scheduler, batch, advantages,
                                config if skip else GRPOConfig(**{**config.__dict__, "beta": 1e-30}))
        results.append((metrics, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (skipped, grads_skipped), (full, grads_full) = results
    assert skipped["loss"] == pytest.approx(full["loss"], abs=1e-7)
    assert skipped["entropy"] == pytest.approx(full["entropy"], rel=1e-5) and skipped["entropy"] > 0
    assert grads_skipped.keys() == grads_full.keys() and len(grads_full) > 0
    for name, g in grads_full.items():
        assert torch.allclose(grads_skipped[name], g, atol=1e-7), name
