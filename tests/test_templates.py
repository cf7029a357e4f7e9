"""Prompt templates: the shipped set, rendering in both modes, user folders and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.core.errors import FactoryError
from factory.problems.sources import Problem
from factory.prompting.formats import FORMATS
from factory.prompting.templates import list_templates, load_template

SHIPPED = {"r1_zero", "few_shot_long_cot", "reflect_verify", "refine", "judge", "arithmetic_r1", "r1_distill"}
QUESTION = "What is 2 + 3 * 4?"
CONTEXT = {"completion": "<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>", "final": "14"}


def problem(text: str = QUESTION, context: dict | None = None, source: str = "builtin:arithmetic") -> Problem:
    return Problem(problem_id="p1", problem=text, answer="14", source=source, context=dict(context or {}))


def problem_for(t) -> Problem:
    return problem(context=CONTEXT if t.inputs else None)


VALID = """\
name: {name}
description: {description}
format: think_answer
base: "Q: {{{{ problem }}}} A:"
chat:
  - role: user
    content: "{{{{ problem }}}}"
"""


def write_template(folder: Path, name: str, description: str = "A user template.", file: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{file or name}.yaml"
    path.write_text(VALID.format(name=name, description=description))
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_shipped_templates():
    templates = list_templates()
    assert set(templates) == SHIPPED
    for name, t in templates.items():
        assert t.name == name
        assert t.description.strip() and "\n" not in t.description
        assert t.format in FORMATS
        assert t.digest and len(t.digest) == 16
        assert t.path.name == f"{name}.yaml"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_template_renders_base_and_chat(name):
    t = load_template(name)
    p = problem_for(t)
    base = t.render_base(p)
    assert QUESTION in base
    assert base.endswith(t.prefill)
    assert "{{" not in base and "{%" not in base
    messages = t.render_messages(p)
    assert messages and all(set(m) == {"role", "content"} for m in messages)
    assert all(m["role"] in {"system", "user", "assistant"} for m in messages)
    assert messages[-1]["role"] == "user"
    assert QUESTION in messages[-1]["content"]
    assert not any("{{" in m["content"] for m in messages)
    if "completion" in t.inputs:
        assert CONTEXT["completion"] in base
        assert CONTEXT["completion"] in messages[-1]["content"]


def test_r1_zero_base_is_the_paper_text():
    base = load_template("r1_zero").render_base(problem())
    assert base.startswith("A conversation between User and Assistant.")
    assert (
        "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags"
        in base
    )
    assert base.endswith("User: What is 2 + 3 * 4?. Assistant:")
    assert "\n" not in base


def test_r1_zero_format_and_stop():
    t = load_template("r1_zero")
    assert t.format == "think_answer"
    assert t.stop == ["</answer>"] and t.keep_stop is True
    assert t.prefill == ""


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_chat_messages_render_through_the_tokenizer(tokenizer, name):
    t = load_template(name)
    messages = t.render_messages(problem_for(t))
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert QUESTION in text
    assert text.rstrip().endswith("assistant")


@pytest.mark.parametrize("text", [r"Compute \boxed{x} for {x} = 2", "Is { a valid set?", "{{ problem }} {% raw %}"])
def test_problem_text_renders_verbatim(text):
    for name in SHIPPED:
        t = load_template(name)
        p = problem(text, context=CONTEXT if t.inputs else None)
        assert text in t.render_base(p)
        assert text in t.render_messages(p)[-1]["content"]


def test_missing_completion_mentions_run_folder():
    for name in ("refine", "judge"):
        with pytest.raises(FactoryError, match="completion") as e:
            load_template(name).render_base(problem(source="problems.jsonl"))
        assert "run folder" in str(e.value)
        assert "problems.jsonl" in str(e.value)


def test_user_folder_template_is_listed_and_loadable(tmp_path):
    write_template(tmp_path, "my_template", "Mine.")
    templates = list_templates([tmp_path])
    assert set(templates) == SHIPPED | {"my_template"}
    t = load_template("my_template", [tmp_path])
    assert t.description == "Mine."
    assert t.render_base(problem()) == f"Q: {QUESTION} A:"
    with pytest.raises(FactoryError):
        load_template("my_template")  # not without the folder


def test_user_template_overrides_shipped(tmp_path):
    path = write_template(tmp_path, "r1_zero", "Overridden.", file="my_r1")
    t = load_template("r1_zero", [tmp_path])
    assert t.path == path
    assert t.description == "Overridden."
    assert list_templates([tmp_path])["r1_zero"].path == path
    assert load_template("r1_zero").path != path


def test_load_by_path(tmp_path):
    path = write_template(tmp_path / "sub", "by_path")
    t = load_template(str(path))
    assert t.name == "by_path" and t.path == path
    shipped = load_template(str(load_template("judge").path))
    assert shipped.name == "judge"


def test_load_missing_path(tmp_path):
    with pytest.raises(FactoryError, match="no such template file"):
        load_template(str(tmp_path / "nope.yaml"))


def test_unknown_name_lists_names():
    with pytest.raises(FactoryError, match="unknown template 'r2_zero'") as e:
        load_template("r2_zero")
    for name in SHIPPED:
        assert name in str(e.value)


def test_missing_templates_folder(tmp_path):
    with pytest.raises(FactoryError, match="does not exist"):
        list_templates([tmp_path / "missing"])


@pytest.mark.parametrize(
    "body, message",
    [
        ("name: x\ndescription: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "YAML mapping"),
        ("name: x\ndescription: d\nformat: think_answer\nbase: b\n", "missing key"),
        ("name: x\ndescription: d\nformat: xml\nbase: b\nchat: []\n", "unknown format 'xml'"),
        ("name: x\ndescription: d\nformat: score\nbase: b\nchat: hello\n", "'chat' must be a list"),
        ("name: x\ndescription: d\nformat: score\nbase: b\nchat: [{role: user}]\n", "'chat' must be a list"),
    ],
)
def test_bad_template_files(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(FactoryError, match=message) as e:
        load_template(str(path))
    assert str(path) in str(e.value)
    with pytest.raises(FactoryError) as e:
        list_templates([tmp_path])
    assert str(path) in str(e.value)


def test_missing_key_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndescription: d\nformat: think_answer\nbase: b\n")
    with pytest.raises(FactoryError, match="missing key.*chat"):
        load_template(str(path))


def test_undefined_variable_is_an_error(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(VALID.format(name="t", description="d").replace("Q: {{ problem }}", "Q: {{ nope }}"))
    with pytest.raises(FactoryError, match="cannot render base") as e:
        load_template(str(path)).render_base(problem())
    assert str(path) in str(e.value)


def test_parse_with_prefill():
    t = load_template("reflect_verify")
    assert t.prefill == "| special_token | Reasoning:"
    completion = " 1. 3 * 4 = 12\n2. 2 + 12 = 14 | special_token | Summary: The answer is 14."
    ok = t.parse(completion, prefilled=True)
    assert ok.ok and ok.final == "14"
    assert ok.reasoning.startswith("Reasoning:")
    bad = t.parse(completion, prefilled=False)
    assert not bad.ok
    assert bad.final is None
    # Without a prefill the model writes the whole format itself.
    assert t.parse("| special_token | r | special_token | The answer is 3.", prefilled=False).final == "3"


@pytest.mark.parametrize("name", ["reflect_verify", "refine"])
def test_base_prefill_is_not_glued_to_the_instructions(name):
    t = load_template(name)
    base = t.render_base(problem(context=CONTEXT))
    assert base.endswith(t.prefill)
    before = base[: -len(t.prefill)]
    assert before[-1].isspace(), f"prefill glued to {before[-40:]!r}"
