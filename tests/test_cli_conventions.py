"""The command line behaves as users of vllm, hf and datasets-cli expect: --version, -h, shell
completion, --json where a script reads the output, one flag name per setting, choices in the help,
one line for a bad flag, and distinct exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory import __version__


@pytest.fixture
def filtered(cli, runs_dir: Path, tmp_path: Path) -> str:
    src = tmp_path / "g.jsonl"
    src.write_text("".join(json.dumps({"problem": f"What is {i}+{i}?", "answer": str(2 * i),
                                       "completion": f"<think>{i}+{i}={2 * i + (i % 2)}</think> "
                                                     f"\\boxed{{{2 * i + (i % 2)}}}"}) + "\n"
                           for i in range(4)))
    assert cli("import", src, "r").exit_code == 0
    assert cli("filter", "r", "--chain", "distill").exit_code == 0
    return "r"


def test_version_help_and_completion(cli):
    assert cli("--version").output.strip() == f"reasoning-factory {__version__}"
    for args in (["-h"], ["generate", "-h"], ["train", "grpo", "-h"]):
        result = cli(*args)
        assert result.exit_code == 0 and "Usage" in result.output
    assert "--install-completion" in cli("--help").output
    flat = " ".join(cli("train", "grpo", "--help").output.replace("│", " ").split())
    assert "[default: 20]" in flat and "[default: 1e-05]" in flat  # train's help shows each default


def test_json_on_show_funnel_and_sql(cli, filtered: str):
    shown = json.loads(cli("show", filtered, "--json", "-n", "1").output)
    assert shown["samples"] == 4 and len(shown["examples"]) == 1 and shown["examples"][0]["problem"]
    funnel = json.loads(cli("funnel", filtered, "--json").output)
    assert funnel["generated"] == funnel["kept"] + funnel["rejected"] == 4 and funnel["kept"] == 2
    rows = json.loads(cli("sql", filtered, "SELECT rejected_by, count(*) AS n FROM rejected GROUP BY 1",
                          "--json").output)
    assert rows == [{"rejected_by": "correct", "n": 2}]


def test_one_name_per_setting_and_choices_in_help(cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "300")  # help tables wrap to the terminal's width
    grpo = cli("train", "grpo", "-h").output
    for flag in ("--n", "--max-tokens", "-m", "-p", "-t", "-o", "<grpo|dapo|dr_grpo"):
        assert flag in grpo, flag
    generate = cli("generate", "-h").output
    assert "<vllm|openai>" in generate and "<auto|chat|base>" in generate
    evaluation = cli("eval", "-h").output
    for flag in ("--backend", "--base-url", "--map", "--top-p", "--prompt-mode", "--json", "--concurrency"):
        assert flag in evaluation, flag
    assert "--out" in cli("export", "-h").output and "--rejected" in cli("export", "-h").output


@pytest.mark.parametrize("args, needle", [
    (["generate", "x", "--backend", "tgi"], "'tgi' is not one of"),
    (["show"], "Missing argument"),
    (["train", "grpo", "--loss-type", "sgd"], "'sgd' is not one of"),
    (["funnel", "r", "--colour"], "No such option"),
    (["eval", "--model", "m", "--temperature", "0", "--n", "2"], "--temperature 0 is greedy"),
    (["generate", "r", "--model", "m", "--temperature", "0", "--n", "2"], "use --n 1"),
])
def test_a_bad_flag_is_one_line(cli, runs_dir: Path, args, needle):
    result = cli(*args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output


@pytest.mark.parametrize("flag", ["--n", "--group-size"])
def test_the_old_flag_names_still_work(cli, runs_dir: Path, tmp_path: Path, flag):
    # Both spellings reach the same setting: its validation answers for the value given.
    result = cli("train", "grpo", "-m", tmp_path, "-o", tmp_path / "o", flag, "1", "--max-new-tokens", "8")
    assert result.exit_code == 2 and "group_size must be >= 2" in result.output, result.output
