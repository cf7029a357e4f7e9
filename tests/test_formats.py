"""The output-format registry: the formats real reasoning models write, `auto`, exactness checks,
prefill helpers, and formats a user adds by module path or entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from factory.core.errors import FactoryError
from factory.prompting.formats import (
    detect_format,
    get_format,
    implied_prefill,
    parse_output,
    prompt_prefill,
    with_prefill,
)
from factory.prompting.parsers import Parsed, answer_in_text, parse_boxed, parse_think_boxed, parse_thought_solution


def test_think_boxed_reads_the_summary_after_the_last_close():
    p = parse_think_boxed("<think>\nWait, 2+2.\n</think>\n\n**Final Answer**\n\\[\n\\boxed{\\frac{1}{2}}\n\\]")
    assert (p.reasoning, p.final, p.error) == ("Wait, 2+2.", "\\frac{1}{2}", None)
    assert parse_think_boxed("so 4</think>\n\nThe answer is 4.").final == "4"  # prefilled <think>
    assert parse_think_boxed("<think>still thinking").error == "unclosed_think"
    assert parse_think_boxed("<think>done</think>   ").error == "no_summary"
    assert parse_think_boxed("<think>done</think> I am not sure.").error == "no_answer"


def test_thought_solution_markers():
    text = "<|begin_of_thought|>\nx\n<|end_of_thought|>\n\n<|begin_of_solution|>\nSo $\\boxed{7}$.\n<|end_of_solution|>"
    assert parse_thought_solution(text) == Parsed("x", "7", None)
    assert parse_thought_solution(text.replace("<|end_of_solution|>", "")).error == "unclosed_solution"
    assert parse_thought_solution("<|begin_of_thought|> and then").error == "unclosed_thought"
    assert parse_thought_solution("<|begin_of_thought|>x<|end_of_thought|> bye").error == "no_solution"


def test_boxed_and_several_boxes():
    assert parse_boxed("2+5 is 7, so \\boxed{7}.") == Parsed("2+5 is 7, so", "7", None)
    assert parse_boxed("no box here").error == "no_boxed"
    assert answer_in_text("roots: \\boxed{-2} \\text{ and } \\boxed{1}") == "\\boxed{-2} \\text{ and } \\boxed{1}"
    assert answer_in_text("try \\boxed{3}\n\nactually \\boxed{4}") == "4"  # boxes on different lines: the last
    assert answer_in_text("$\\boxed{255}$ in all. The final answer is $10,455$. I hope it is correct.") == "$10,455$"


@pytest.mark.parametrize("text, name", [
    ("<|begin_of_thought|>x<|end_of_thought|><|begin_of_solution|>\\boxed{1}<|end_of_solution|>", "thought_solution"),
    ("| special_token | r | special_token | The answer is 1.", "special_token"),
    ("<think>r</think><answer>1</answer>", "think_answer"),
    ("r</think> \\boxed{1}", "think_boxed"),
    ("so \\boxed{1}", "boxed"),
])
def test_auto_detects_and_records(text, name):
    assert detect_format(text).name == name
    assert parse_output(text, "auto").format == name
    assert parse_output(text, "auto").final == "1"


def test_exactness_per_format():
    fmt = get_format("think_boxed")
    assert fmt.check_shape("<think>r</think>\n\n\\boxed{1}") is None
    assert fmt.check_shape("<think>a</think><think>b</think> \\boxed{1}") == "bad_format"
    assert fmt.check_shape("preamble <think>a</think> \\boxed{1}") == "bad_format"
    ts = get_format("thought_solution")
    assert ts.check_shape("<|begin_of_thought|>r<|end_of_thought|>\n"
                          "<|begin_of_solution|>s \\boxed{1}<|end_of_solution|>") is None
    assert ts.check_shape("<|begin_of_thought|>r<|end_of_thought|> junk "
                          "<|begin_of_solution|>s<|end_of_solution|>") == "bad_format"
    assert get_format("boxed").check_shape("<think>r</think> \\boxed{1}") == "bad_format"


def test_prefill_helpers():
    assert prompt_prefill("<|im_start|>assistant\n<think>\n") == "<think>\n"
    assert (prompt_prefill("x<think>\n| special_token | Reasoning:", "| special_token | Reasoning:")
            == "<think>\n| special_token | Reasoning:")
    assert prompt_prefill("User: 1+1? Assistant:") == ""
    assert with_prefill("<|Assistant|><think>\n", "<think>\n") == "<|Assistant|><think>\n"  # not twice
    assert with_prefill("<|im_start|>assistant\n", "<think>\n") == "<|im_start|>assistant\n<think>\n"
    assert implied_prefill("reasoning</think> \\boxed{1}") == "<think>\n"
    assert implied_prefill("<think>r</think> \\boxed{1}") == ""


def test_unknown_format_is_one_clear_error():
    with pytest.raises(FactoryError, match="unknown format 'nope'.*think_boxed.*module:function"):
        get_format("nope")
    with pytest.raises(FactoryError, match="cannot import"):
        get_format("no_such_module_xyz:parse")


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module with a parser, and an installed distribution that publishes it as an entry point."""
    (tmp_path / "my_formats.py").write_text(
        "def final_line(text):\n"
        "    '''Reasoning, then a last line 'ANSWER: X'.'''\n"
        "    body, _, last = text.rpartition('\\n')\n"
        "    return (body, last.removeprefix('ANSWER: ')) if last.startswith('ANSWER: ') else (body, None)\n"
    )
    dist = tmp_path / "my_formats-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-formats\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[reasoning_factory.formats]\nanswer_line = my_formats:final_line\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_formats", None)


def test_user_format_by_module_path_in_a_template(user_package: Path, tmp_path: Path):
    from factory.prompting.templates import load_template

    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndescription: d\nformat: my_formats:final_line\nbase: '{{ problem }}'\n"
                    "chat: [{role: user, content: '{{ problem }}'}]\n")
    t = load_template(str(path))
    assert t.parse("2 and 2\nANSWER: 4") == Parsed("2 and 2", "4", None, "my_formats:final_line")
    assert t.parse("no answer line").error == "no_answer"


def test_user_format_by_entry_point(user_package: Path):
    assert parse_output("think\nANSWER: 9", "answer_line").final == "9"
    assert "answer_line" in get_format("answer_line").name
