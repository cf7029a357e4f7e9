"""The one way a template and a problem become a model's prompt.

Generation, the judge, GRPO rollouts and their held-out evaluation all prompt a model with a
template; each used to assemble the prompt itself. They go through here so that the text a
model is trained on is byte for byte the text it was sampled with:

  chat mode   the template's messages, rendered by the tokenizer's chat template with the
              generation prompt, then the template's prefill (once: see formats.with_prefill)
  base mode   the template's plain text, which already ends with the prefill

A `Request` carries the unrendered form (messages + prefill, or text): a server renders chat
messages itself, and only a local tokenizer gives the exact text (`render`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factory.core.problem import Problem
from factory.generate.base import Request
from factory.prompting.formats import with_prefill
from factory.prompting.parsers import Parsed
from factory.prompting.templates import Template

PROMPT_MODES = ("auto", "chat", "base")


def resolve_mode(mode: str, has_chat_template: Callable[[], bool]) -> str:
    """`auto` -> chat when the model has a chat template, else base. A callable, so that asking
    (which may load a tokenizer) happens only for `auto`."""
    if mode != "auto":
        return mode
    return "chat" if has_chat_template() else "base"


def render(request: Request, tokenizer: Any) -> str:
    """The exact prompt text a local engine is given for a request."""
    if request.messages is None:
        return request.text or ""
    text = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
    return with_prefill(text, request.prefill)


@dataclass(frozen=True)
class Prompter:
    """A template in a resolved prompt mode ("chat" or "base")."""

    template: Template
    mode: str

    @classmethod
    def for_model(cls, template: Template, mode: str, has_chat_template: Callable[[], bool]) -> Prompter:
        return cls(template, resolve_mode(mode, has_chat_template))

    @property
    def chat(self) -> bool:
        return self.mode == "chat"

    def request(self, p: Problem, key: str | None = None, seed: int | None = None) -> Request:
        key = p.problem_id if key is None else key
        if self.chat:
            return Request(key=key, messages=self.template.render_messages(p), prefill=self.template.prefill, seed=seed)
        return Request(key=key, text=self.template.render_base(p), seed=seed)

    def text(self, p: Problem, tokenizer: Any) -> str:
        return render(self.request(p), tokenizer)

    def parse(self, completion: str, chat_prefill: bool) -> Parsed:
        """A completion through the template's format. `chat_prefill`: whether the backend put the
        prefill in chat prompts (a chat API cannot); a base prompt always ends with it."""
        return self.template.parse(completion, prefilled=chat_prefill or not self.chat)
