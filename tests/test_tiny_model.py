"""The shipped tiny reasoning model: loads in transformers and in vLLM, and actually reasons."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO, run_factory

TINY = REPO / "data" / "tiny-model"


def test_loads_in_transformers_and_answers_in_format():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TINY)
    model = AutoModelForCausalLM.from_pretrained(TINY)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3 * 4?"}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=80, do_sample=False, pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert re.fullmatch(r"<think>.*</think>\s*<answer>-?\d+</answer>", text, re.S), text
    assert out[0, -1].item() == tok.eos_token_id  # it learned to stop
    assert sum(p.numel() for p in model.parameters()) < 1_200_000


@pytest.mark.slow
def test_eval_in_vllm_reports_real_accuracy(tmp_path: Path):
    result = run_factory(["eval", "--model", str(TINY), "--problems", "builtin:arithmetic?n=40&seed=7",
                          "--template", "arithmetic_r1", "--n", "4", "--max-tokens", "128"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    values = dict(re.findall(r"(pass@\d+) ([\d.]+)", result.stdout))
    assert float(values["pass@1"]) >= 0.3 and float(values["pass@4"]) >= float(values["pass@1"])
