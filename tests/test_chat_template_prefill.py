"""A chat template that opens the reasoning itself (R1-Distill, QwQ, Qwen3 end the generation prompt
with "<think>\\n"): the sample records that prefill, so parsers, `complete`, `format` and the SFT
data see the whole turn. The real vLLM engine, with the shipped tiny model's tokenizer so changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from factory.core import shards
from factory.train.data import sample_to_messages
from tests.helpers import REPO, run_factory

pytestmark = pytest.mark.slow

THINKING_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("thinking") / "tiny-think"
    shutil.copytree(REPO / "data" / "tiny-model", model)
    (model / "chat_template.jinja").write_text(THINKING_TEMPLATE)
    return model


def test_chat_template_think_is_the_prefill(thinking_model: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    gen = run_factory([
        "generate", "t", "--model", str(thinking_model), "--problems", "builtin:arithmetic?n=12&seed=5",
        "--template", "arithmetic_r1,r1_distill", "--n", "1", "--temperature", "0", "--max-tokens", "96",
        "--engine-arg", "max_model_len=1024",
    ], runs, timeout=600)
    assert gen.returncode == 0, gen.stderr[-3000:]
    rows = shards.read_table(runs / "t", "generated").to_pylist()
    assert len(rows) == 12 * 2
    for r in rows:
        assert r["prompt"].endswith("<|im_start|>assistant\n<think>\n")
        assert r["prompt"].count("<think>") == 1  # r1_distill's own "<think>\n" prefill is not added twice
        assert json.loads(r["metadata"])["prefill"] == "<think>\n"
        assert "<think>" not in r["completion"]  # the model wrote only from inside the block on

    ours = [r for r in rows if r["template"] == "arithmetic_r1" and r["finish_reason"] == "stop"]
    assert len(ours) >= 8  # the tiny model answers most of its own arithmetic
    assert sum(r["parse_error"] is None for r in ours) >= 0.9 * len(ours)
    assert all(r["reasoning"] and "<think>" not in r["reasoning"] for r in ours if r["parse_error"] is None)

    filt = run_factory(["filter", "t", "--chain", "r1_zero"], runs)
    assert filt.returncode == 0, filt.stderr[-2000:]
    rejected = shards.read_table(runs / "t", "rejected").to_pylist()
    ok_ids = {r["id"] for r in ours if r["parse_error"] is None}
    # A well-formed answer is never taken for an unclosed tag or a bad format because of the prefill.
    assert not [r for r in rejected if r["id"] in ok_ids and r["rejected_by"] in ("complete", "format")]
    curated = shards.read_table(runs / "t", "curated").to_pylist()
    assert curated and all(sample_to_messages(r)[-1]["content"].startswith("<think>\n") for r in curated)
