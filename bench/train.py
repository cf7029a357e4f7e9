"""Our trainers against TRL's on the shipped tiny model, in one process: SFT throughput, the GRPO loss on
identical inputs, and GRPO step time.

1. SFT tokens/s: `factory train sft` (factory.train.sft.run_sft) against trl.SFTTrainer, the same
   `builtin:arithmetic` problems (for TRL as prompt/completion chat data, the loss on the completion only),
   batch size, lr, max length, steps, fp32 on the CPU. Counted: the non-padding tokens (prompt + answer,
   attention_mask 1) of every training forward. Timed: from the forward of the first step after the warmup
   steps to that of the last step, so model loading, data preparation, warmup and the final save are out.
   The step-1 losses are compared on one identical batch (our first, same initial weights), through TRL's
   own SFTTrainer.compute_loss. (TRL's ChatML render leaves the "\n" after <|im_end|> in the completion:
   one more trained token per example than ours, which ends on the eos; its losses over a run differ so.)
2. GRPO loss: the same per-token logps, old logps, ref logps, advantages and completion mask through our
   micro_batch_losses and through TRL's GRPOTrainer._compute_loss (TRL's code; only its model forward is
   replaced by the given logps), micro-batched as gradient accumulation, for every loss type both have.
   Loss and gradient (w.r.t. the logps) must agree within 1e-5. TRL's use_bias_correction_kl (default
   True) multiplies the KL term by the ratio, which ours does not: off for the comparison, and the
   difference with it on is printed too.
3. GRPO s/step: `factory train grpo` (rollouts, rewards, update, weight sync) with the transformers and
   the vLLM rollout backends against GRPOTrainer with its default transformers generation (its vLLM mode
   does not run on CPU), the same G, batch, micro-batch, max_new_tokens, epsilon, beta, loss type, lr,
   problems in the same order (the `arithmetic_r1` template) and the factory's accuracy and format rewards
   (factory.train.trl_rewards). Median seconds per step after --grpo-warmup steps.

    python bench/train.py                        # ~3-5 minutes on 2 cores
    python bench/train.py --threads 1            # on a machine whose cores other jobs share
    python bench/train.py --grpo-steps 8 --n 8 --batch 64 --skip-vllm

TRL is a benchmark-only dependency (pip install -e .[bench]); nothing in `factory` imports it.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "data" / "tiny-model")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")  # the aggregations TRL and the factory both have


def silence(trainer) -> None:
    """No per-step log dicts on stdout (the Trainer prints them when progress bars are off)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def quiet() -> None:
    """One line per result: no progress bars, no version or deprecation chatter."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


class ForwardClock:
    """Time and non-padding tokens of every forward of a model: the same meter on both trainers."""

    def __init__(self, model: torch.nn.Module):
        self.marks: list[tuple[float, int]] = []
        model.register_forward_pre_hook(self._mark, with_kwargs=True)

    def _mark(self, module, args, kwargs) -> None:
        ids, mask = kwargs.get("input_ids", args[0] if args else None), kwargs.get("attention_mask")
        self.marks.append((time.perf_counter(), int(mask.sum()) if mask is not None else ids.numel()))

    def rate(self, warmup: int) -> tuple[float, int, float]:
        """(tokens/s, tokens, seconds) from step warmup+1's forward to the last step's (one forward a step)."""
        window = self.marks[warmup:]
        tokens, seconds = sum(n for _, n in window[:-1]), window[-1][0] - window[0][0]
        return tokens / seconds, tokens, seconds


# ---------------------------------------------------------------- 1. SFT


def sft_ours(args, tmp: Path) -> dict:
    import factory.train.sft as sft
    from factory.train.config import SFTConfig

    seen: dict = {}
    load, collate = sft._load_model, sft.collate

    def load_clocked(*a, **k):  # the meter goes on the model run_sft loads itself
        tokenizer, model = load(*a, **k)
        seen["clock"] = ForwardClock(model)
        return tokenizer, model

    def collate_first(*a, **k):  # keep the first batch: TRL's loss is computed on it too
        batch = collate(*a, **k)
        seen.setdefault("batch", batch)
        return batch

    lines: list[str] = []
    sft._load_model, sft.collate = load_clocked, collate_first
    try:
        cfg = SFTConfig(data=args.sft_data, model=TINY, out=str(tmp / "sft-ours"), batch_size=args.batch_size,
                        lr=args.lr, warmup_steps=0, max_steps=args.sft_steps, max_len=args.max_len, seed=args.seed,
                        log_every=1, save_every=10**9)
        summary = sft.run_sft(cfg, log=lines.append)
    finally:
        sft._load_model, sft.collate = load, collate
    step1 = float(re.search(r"step 1/\d+ \| loss ([0-9.]+)", "\n".join(lines)).group(1))
    rate, tokens, seconds = seen["clock"].rate(args.sft_warmup)
    return {"rate": rate, "tokens": tokens, "seconds": seconds, "step1": step1, "final": summary["final_loss"],
            "batch": seen["batch"]}


def sft_trl(args, tmp: Path, first_batch: dict) -> dict:
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.train.data import load_sft_examples, tokenize_all

    examples = load_sft_examples(args.sft_data)
    data = Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in examples])
    config = trl.SFTConfig(
        output_dir=str(tmp / "sft-trl"), max_steps=args.sft_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        max_length=args.max_len, completion_only_loss=True, seed=args.seed, logging_steps=1, report_to=[],
        save_strategy="no", use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0)
    tokenizer = AutoTokenizer.from_pretrained(TINY)
    model = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32)
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    silence(trainer)
    # TRL's tokens of the same examples: its ChatML render keeps the "\n" after <|im_end|> in the completion.
    ours = [ids for ids, _ in tokenize_all(examples[:50], tokenizer, args.max_len)[0]]
    same = sum(a == b for a, b in zip(ours, trainer.train_dataset["input_ids"][:50]))
    with torch.no_grad():  # TRL's own loss on our first batch, at the same initial weights
        step1_same_batch = float(trainer.compute_loss(model, dict(first_batch)))
    clock = ForwardClock(model)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    rate, tokens, seconds = clock.rate(args.sft_warmup)
    return {"rate": rate, "tokens": tokens, "seconds": seconds, "step1": losses[0], "final": losses[-1],
            "step1_same_batch": step1_same_batch, "same_tokens": f"{same}/{len(ours)}"}


# ---------------------------------------------------------------- 2. GRPO loss


def grpo_loss_diffs(loss_types=LOSS_TYPES, batch: int = 16, width: int = 24, micro: int = 4, group: int = 4,
                    beta: float = 0.04, epsilon: float = 0.2, epsilon_high: float = 0.28, seed: int = 0,
                    kl_correction: bool = False) -> dict:
    """{loss_type: (|loss ours - TRL's|, max |grad ours - TRL's|)} on random inputs with ratios around 1 (some
    clipped) and completions of very different lengths, one of them empty. `kl_correction` is TRL's
    use_bias_correction_kl (default on since TRL 1.x: the KL term times the ratio, which changes the gradient
    even on-policy); ours has no such term, so it is off for the comparison."""
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.train.config import GRPOConfig
    from factory.train.objective import micro_batch_losses

    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, width, generator=g) * 3
    logps = old + 0.3 * torch.randn(batch, width, generator=g)
    ref = old + 0.2 * torch.randn(batch, width, generator=g)
    advantages = torch.randn(batch, generator=g)
    lengths = torch.randint(1, width + 1, (batch,), generator=g)
    lengths[1] = 0
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()

    tokenizer = AutoTokenizer.from_pretrained(TINY)
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 1 + 1?"}]}] * batch)
    out = {}
    scratch = tempfile.TemporaryDirectory()  # TRL wants an output_dir; nothing is saved in it
    for loss_type in loss_types:
        config = GRPOConfig(model=TINY, out="-", loss_type=loss_type, beta=beta, epsilon=epsilon,
                            epsilon_high=epsilon_high, group_size=group, batch_size=batch, micro_batch_size=micro,
                            max_new_tokens=width)
        mine = logps.clone().requires_grad_(True)
        ours = sum(loss for loss, _ in micro_batch_losses(lambda s, mine=mine: mine[s], old, ref, advantages, mask,
                                                          config))
        ours.backward()

        args = trl.GRPOConfig(
            output_dir=scratch.name, per_device_train_batch_size=micro, gradient_accumulation_steps=batch // micro,
            num_generations=group, max_completion_length=width, beta=beta, epsilon=epsilon, epsilon_high=epsilon_high,
            loss_type=loss_type, use_bias_correction_kl=kl_correction, report_to=[], save_strategy="no",
            use_cpu=True, use_vllm=False)
        trainer = trl.GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(TINY), args=args, train_dataset=prompts,
                                  reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                                  processing_class=tokenizer)
        theirs_logps = logps.clone().requires_grad_(True)
        rows: dict = {}
        # TRL's loss code as it is; only the model forward is replaced by the given log-probs of these rows.
        def given_logps(*_a, theirs_logps=theirs_logps, rows=rows, **_k):
            return theirs_logps[rows["s"]], torch.zeros(micro, width), None

        trainer._get_per_token_logps_and_entropies = given_logps
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = batch // micro  # set by Trainer's loop during training
        theirs = 0.0
        for i in range(0, batch, micro):
            rows["s"] = s = slice(i, i + micro)
            inputs = {"prompt_ids": torch.zeros(micro, 1, dtype=torch.long), "prompt_mask": torch.ones(micro, 1),
                      "completion_ids": torch.zeros(micro, width, dtype=torch.long), "completion_mask": mask[s],
                      "advantages": advantages[s], "old_per_token_logps": old[s], "ref_per_token_logps": ref[s],
                      "num_items_in_batch": mask.sum()}
            theirs = theirs + trainer._compute_loss(trainer.model, inputs)
        theirs.backward()
        out[loss_type] = (abs(float(ours) - float(theirs)), float((mine.grad - theirs_logps.grad).abs().max()))
    scratch.cleanup()
    return out


# ---------------------------------------------------------------- 3. GRPO step


def grpo_ours(args, tmp: Path, backend: str) -> list[float]:
    from factory.train.config import GRPOConfig
    from factory.train.grpo import run_grpo

    cfg = GRPOConfig(problems=args.grpo_problems, model=TINY, out=str(tmp / f"grpo-{backend}"),
                     template="arithmetic_r1", rewards="accuracy,format", group_size=args.n, batch_size=args.batch,
                     micro_batch_size=args.micro, steps=args.grpo_steps, lr=args.grpo_lr, beta=args.beta,
                     epsilon=args.epsilon, loss_type=args.loss_type, max_new_tokens=args.max_tokens,
                     rollout_backend=backend, seed=args.seed, save_every=10**9)
    return [r["seconds"] for r in run_grpo(cfg, log=lambda _: None)["history"]]


def grpo_trl(args, tmp: Path) -> list[float]:
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from factory.problems.sources import load_problems
    from factory.prompting.templates import load_template
    from factory.train.trl_rewards import accuracy_reward, format_reward

    template = load_template("arithmetic_r1")
    problems = load_problems(args.grpo_problems)
    order = list(range(len(problems)))
    random.Random(args.seed).shuffle(order)  # run_grpo's problem order; TRL's own shuffle is turned off
    # A prompt as TRL's chat data: the template's messages; the chat template renders them as ours does.
    data = Dataset.from_list([{"prompt": template.render_messages(problems[i]), "answer": problems[i].answer,
                               "task": problems[i].task, "format": template.format} for i in order])
    config = trl.GRPOConfig(
        output_dir=str(tmp / "grpo-trl"), max_steps=args.grpo_steps, per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=args.batch // args.micro, num_generations=args.n,
        max_completion_length=args.max_tokens, temperature=1.0, top_p=1.0, learning_rate=args.grpo_lr,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, beta=args.beta,
        epsilon=args.epsilon, loss_type=args.loss_type, scale_rewards="group", shuffle_dataset=False,
        seed=args.seed, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, use_vllm=False,
        use_bias_correction_kl=False)

    ends: list[float] = []

    class StepClock(TrainerCallback):  # end to end: generation happens inside the step's first micro-batch
        def on_train_begin(self, *_, **__):
            ends.append(time.perf_counter())

        def on_step_end(self, *_, **__):
            ends.append(time.perf_counter())

    trainer = trl.GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32), args=config,
                              train_dataset=data, reward_funcs=[accuracy_reward, format_reward],
                              processing_class=AutoTokenizer.from_pretrained(TINY), callbacks=[StepClock()])
    silence(trainer)
    trainer.train()
    return [b - a for a, b in zip(ends, ends[1:])]


# ---------------------------------------------------------------- table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 on cores other jobs use)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sft-data", default="builtin:arithmetic?n=2000&seed=1")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--sft-warmup", type=int, default=2, help="SFT steps left out of the timing")
    ap.add_argument("--batch-size", type=int, default=32, help="SFT examples per step")
    ap.add_argument("--lr", type=float, default=1e-4, help="SFT learning rate (cosine, no warmup)")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--grpo-problems", default="builtin:arithmetic?n=500&seed=3")
    ap.add_argument("--grpo-steps", type=int, default=10)
    ap.add_argument("--grpo-warmup", type=int, default=2, help="GRPO steps left out of the median")
    ap.add_argument("--n", type=int, default=8, help="G: completions per problem")
    ap.add_argument("--batch", type=int, default=32, help="GRPO completions per optimizer step")
    ap.add_argument("--micro", type=int, default=16, help="GRPO completions per forward/backward")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--grpo-lr", type=float, default=1e-5)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--epsilon", type=float, default=0.2)
    ap.add_argument("--loss-type", choices=LOSS_TYPES, default="grpo")
    ap.add_argument("--skip-vllm", action="store_true", help="no vLLM rollout backend (e.g. vLLM not installed)")
    args = ap.parse_args()
    if args.grpo_steps <= args.grpo_warmup or args.sft_steps < args.sft_warmup + 2:
        ap.error("need more steps than warmup steps (SFT: at least warmup + 2)")
    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))  # the runs' models and checkpoints, removed at the end

    print(f"SFT: {args.sft_data}, {args.sft_steps} steps of {args.batch_size}, max_len {args.max_len}, "
          f"lr {args.lr}, fp32, {torch.get_num_threads()} threads")
    ours = sft_ours(args, tmp)
    trl_sft = sft_trl(args, tmp, ours.pop("batch"))
    for name, r in (("ours", ours), ("TRL", trl_sft)):
        print(f"  {name:5} {r['rate']:8.0f} tok/s ({r['tokens']} tokens in {r['seconds']:.2f} s, steps "
              f"{args.sft_warmup + 1}..{args.sft_steps - 1}); loss step 1 {r['step1']:.6f}, final {r['final']:.6f}")
    step1_diff = abs(ours["step1"] - trl_sft["step1_same_batch"])
    print(f"  step 1 on our first batch: ours {ours['step1']:.6f}, TRL compute_loss {trl_sft['step1_same_batch']:.6f}"
          f"; TRL's tokenization equals ours on {trl_sft['same_tokens']} examples")

    print("GRPO loss: identical inputs through micro_batch_losses and GRPOTrainer._compute_loss")
    diffs = grpo_loss_diffs(beta=args.beta, epsilon=args.epsilon, seed=args.seed)
    corrected = grpo_loss_diffs(beta=args.beta, epsilon=args.epsilon, seed=args.seed, kl_correction=True)
    for loss_type, (dl, dg) in diffs.items():
        cl, cg = corrected[loss_type]
        print(f"  {loss_type:8} |loss diff| {dl:.2e}   max |grad diff| {dg:.2e}   "
              f"(TRL's default use_bias_correction_kl=True: {cl:.2e}, {cg:.2e})")

    print(f"GRPO steps: {args.grpo_steps} of {args.batch} completions (G={args.n}, micro {args.micro}), "
          f"max_new_tokens {args.max_tokens}, beta {args.beta}, epsilon {args.epsilon}, loss {args.loss_type}")
    steps = {"ours (transformers)": grpo_ours(args, tmp, "transformers"), "TRL (transformers)": grpo_trl(args, tmp)}
    if not args.skip_vllm:
        try:  # the other results stand if the CPU engine fails to start
            steps["ours (vllm)"] = grpo_ours(args, tmp, "vllm")
        except Exception as e:  # noqa: BLE001
            print(f"  ours (vllm): failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    median = {k: statistics.median(v[args.grpo_warmup:]) for k, v in steps.items()}
    for name, secs in steps.items():
        print(f"  {name:20} {' '.join(f'{s:.2f}' for s in secs)} s/step; median after warmup {median[name]:.2f}")

    trl_step = median["TRL (transformers)"]
    print("\n| measure | ours | TRL | ours/TRL | target |\n|---|---|---|---|---|")
    print(f"| SFT tok/s | {ours['rate']:.0f} | {trl_sft['rate']:.0f} | {ours['rate'] / trl_sft['rate']:.2f} | >= 1 |")
    print(f"| SFT loss, step 1, same batch | {ours['step1']:.6f} | {trl_sft['step1_same_batch']:.6f} | "
          f"diff {step1_diff:.1e} | <= 1e-5 |")
    print(f"| SFT final loss | {ours['final']:.4f} | {trl_sft['final']:.4f} | | |")
    for loss_type, (dl, dg) in diffs.items():
        print(f"| GRPO loss {loss_type}: max diff (loss, grad) | | | {max(dl, dg):.1e} | <= 1e-5 |")
    worst = max(max(d) for d in corrected.values())
    print(f"| GRPO loss vs TRL's default KL bias correction, worst type | | | {worst:.1e} | (ours has none) |")
    for name in ("ours (transformers)", "ours (vllm)"):
        if name in median:
            print(f"| GRPO s/step, {name} vs TRL (transformers) | {median[name]:.2f} | {trl_step:.2f} | "
                  f"{median[name] / trl_step:.2f} | <= 1 |")
    ok = {"GRPO losses equal": max(max(d) for d in diffs.values()) <= 1e-5, "SFT step-1 loss": step1_diff <= 1e-5,
          "SFT tok/s": ours["rate"] >= trl_sft["rate"], "GRPO step": all(m <= trl_step for m in median.values())}
    print("\ntargets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in ok.items()))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
