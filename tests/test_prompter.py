"""The prompter renders, byte for byte, what generate, the judge and GRPO each assembled by hand:
every shipped template, both modes, with the tiny model's tokenizer and with a chat template that
opens the reasoning itself (where the prefill must not be written twice)."""

from __future__ import annotations

import pytest

from factory.generate.base import Request
from factory.problems.sources import Problem
from factory.prompting.formats import with_prefill
from factory.prompting.prompter import Prompter, render, resolve_mode
from factory.prompting.templates import list_templates
from tests.conftest import REPO

CONTEXT = {"completion": "<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>", "final": "14"}
THINKING_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}"
)
PROBLEMS = [
    Problem(problem_id="p1", problem="What is 2 + 3 * 4?", answer="14", source="builtin:arithmetic",
            context=dict(CONTEXT)),
    Problem(problem_id="p2", problem="Ünïcode {{ x }} \\boxed{y}\n\n  spaced ", answer="", task="code",
            source="s.jsonl", context=dict(CONTEXT)),
]
TEMPLATES = sorted(list_templates())


@pytest.fixture(scope="module", params=["tiny", "thinking"])
def tokenizer(request):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(REPO / "data" / "tiny-model")
    if request.param == "thinking":
        tok.chat_template = THINKING_TEMPLATE
    return tok


# ---- each call site's rendering as it was written before the prompter


def old_generate_request(t, p, mode, seed):
    if mode == "chat":
        return Request(key=p.problem_id, messages=t.render_messages(p), prefill=t.prefill, seed=seed)
    return Request(key=p.problem_id, text=t.render_base(p), seed=seed)


def old_vllm_prompt_text(tokenizer, request):
    if request.messages is None:
        return request.text or ""
    text = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
    return with_prefill(text, request.prefill)


def old_judge_request(t, p, chat):
    return (Request(key=p.problem_id, messages=t.render_messages(p), prefill=t.prefill)
            if chat else Request(key=p.problem_id, text=t.render_base(p)))


def old_grpo_render(tokenizer, t, p, chat):
    if chat:
        text = tokenizer.apply_chat_template(t.render_messages(p), tokenize=False, add_generation_prompt=True)
        return with_prefill(text, t.prefill)
    return t.render_base(p)


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("mode", ["chat", "base"])
def test_requests_and_texts_are_what_each_call_site_built(tokenizer, name, mode):
    t = list_templates()[name]
    prompter = Prompter(t, mode)
    for p in PROBLEMS:
        request = prompter.request(p, seed=7)
        assert request == old_generate_request(t, p, mode, 7)
        assert prompter.request(p) == old_judge_request(t, p, mode == "chat")
        assert render(request, tokenizer) == old_vllm_prompt_text(tokenizer, request)
        assert prompter.text(p, tokenizer) == old_grpo_render(tokenizer, t, p, mode == "chat")


def test_a_thinking_chat_template_gets_the_prefill_once():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(REPO / "data" / "tiny-model")
    tok.chat_template = THINKING_TEMPLATE
    t = list_templates()["r1_distill"]
    assert t.prefill.strip() == "<think>"
    text = Prompter(t, "chat").text(PROBLEMS[0], tok)
    assert text.endswith("<|im_start|>assistant\n<think>\n") and text.count("<think>") == 1


def test_auto_asks_for_a_chat_template_only_when_it_must():
    asked = []

    def has_chat() -> bool:
        asked.append(1)
        return False

    assert resolve_mode("chat", has_chat) == "chat" and resolve_mode("base", has_chat) == "base" and not asked
    assert resolve_mode("auto", has_chat) == "base" and asked
    assert Prompter.for_model(list_templates()["judge"], "auto", lambda: True).chat


def test_parse_sees_the_prefill_only_where_the_prompt_held_it():
    t = list_templates()["r1_distill"]
    completion = "2 + 12 = 14</think> The answer is \\boxed{14}."
    assert Prompter(t, "chat").parse(completion, chat_prefill=True) == t.parse(completion, prefilled=True)
    assert Prompter(t, "chat").parse(completion, chat_prefill=False) == t.parse(completion, prefilled=False)
    assert Prompter(t, "base").parse(completion, chat_prefill=False) == t.parse(completion, prefilled=True)
