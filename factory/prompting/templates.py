"""Prompt templates: YAML files in prompts/ (or a user's folder), rendered with Jinja2.

A template file declares:
  name, description   one line shown by `factory templates`
  format              the output format, which picks the parser: a registered name, `auto`, or a
                      user's `module:function` (see factory.prompting.formats)
  base                the plain-text prompt for base models
  chat                the messages for chat models (rendered through the model's chat template)
  inputs              fields the template needs beyond `problem` (e.g. `completion` for refine)
  prefill             optional text that starts the model's turn (e.g. "<think>")
  stop                optional stop strings (e.g. "</answer>", or "\n\nProblem:" for few-shot)
  keep_stop           true when the stop string is part of the format (a closing tag): kept in the text
Fields available to Jinja: problem, answer, task, and every extra field of the source row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from factory.core.assets import shipped_dir
from factory.core.errors import FactoryError
from factory.core.files import read_yaml_file
from factory.core.problem import Problem
from factory.prompting.formats import get_format, parse_output
from factory.prompting.parsers import Parsed

# Templates are data that users share: they render in Jinja's sandbox, where attribute walks to
# Python internals (`cycler.__init__.__globals__.os`) raise SecurityError instead of running.
_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
REQUIRED_KEYS = ("name", "description", "format", "base", "chat")


@dataclass
class Template:
    name: str
    description: str
    format: str
    base: str
    chat: list[dict[str, str]]
    path: Path
    inputs: list[str] = field(default_factory=list)
    prefill: str = ""
    stop: list[str] = field(default_factory=list)
    keep_stop: bool = False
    digest: str = ""

    def context(self, p: Problem) -> dict[str, Any]:
        missing = [k for k in self.inputs if k not in p.context]
        if missing:
            raise FactoryError(
                f"template '{self.name}' needs {', '.join(missing)} for each problem, and source "
                f"'{p.source}' has no such field: "
                + ("use an earlier run folder as --problems" if "completion" in missing else "add the column")
            )
        return {**p.context, "problem": p.problem, "answer": p.answer, "task": p.task}

    def _render(self, text: str, p: Problem, where: str) -> str:
        try:
            return _ENV.from_string(text).render(**self.context(p))
        except jinja2.exceptions.SecurityError as e:
            raise FactoryError(f"{self.path}: the {where} reaches into Python internals ({e}); a template may use "
                               "its fields and Jinja filters only") from None
        except jinja2.TemplateError as e:
            raise FactoryError(f"{self.path}: cannot render {where}: {e}") from None

    def render_base(self, p: Problem) -> str:
        """Plain completion text for base models; ends with the prefill."""
        return self._render(self.base, p, "base") + self.prefill

    def render_messages(self, p: Problem) -> list[dict[str, str]]:
        return [
            {"role": m["role"], "content": self._render(m["content"], p, f"chat {m['role']} message")}
            for m in self.chat
        ]

    def parse(self, completion: str, prefilled: bool = True) -> Parsed:
        # The prefill is part of the model's turn, so the parser sees it too.
        return parse_output((self.prefill if prefilled else "") + completion, self.format)


def _load_file(path: Path) -> Template:
    data = read_yaml_file(path)
    if not isinstance(data, dict):
        raise FactoryError(f"{path}: a template must be a YAML mapping with keys {', '.join(REQUIRED_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise FactoryError(f"{path}: missing key(s) {', '.join(missing)}; a template needs {', '.join(REQUIRED_KEYS)}")
    try:
        get_format(str(data["format"]))
    except FactoryError as e:
        raise FactoryError(f"{path}: {e}") from None
    chat = data["chat"]
    if not isinstance(chat, list) or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in chat):
        raise FactoryError(f"{path}: 'chat' must be a list of {{role, content}} messages")
    stop = data.get("stop") or []
    return Template(
        name=str(data["name"]),
        description=" ".join(str(data["description"]).split()),
        format=str(data["format"]),
        base=str(data["base"]),
        chat=chat,
        path=path,
        inputs=list(data.get("inputs") or []),
        prefill=str(data.get("prefill") or ""),
        stop=[stop] if isinstance(stop, str) else list(stop),
        keep_stop=bool(data.get("keep_stop", False)),
        digest=hashlib.sha256(path.read_bytes()).hexdigest()[:16],
    )


def template_dirs(extra: list[Path] | None = None) -> list[Path]:
    """User folders first, so a user's template of the same name overrides a shipped one."""
    return [*(extra or []), shipped_dir("prompts")]


def list_templates(extra: list[Path] | None = None) -> dict[str, Template]:
    found: dict[str, Template] = {}
    for folder in reversed(template_dirs(extra)):
        if not folder.is_dir():
            raise FactoryError(f"{folder}: templates folder does not exist")
        for path in sorted(folder.glob("*.yaml")):
            t = _load_file(path)
            found[t.name] = t
    return dict(sorted(found.items()))


def load_template(name_or_path: str, extra: list[Path] | None = None) -> Template:
    """A template by name (searched in the folders) or by path to a .yaml file."""
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise FactoryError(f"{name_or_path}: no such template file")
        return _load_file(path)
    templates = list_templates(extra)
    if name_or_path not in templates:
        raise FactoryError(
            f"unknown template '{name_or_path}': the templates are {', '.join(templates)} "
            "(add one by dropping a .yaml file in prompts/ or pass --templates-dir)"
        )
    return templates[name_or_path]
