"""The command line on bad input: one `error:` line, exit code 2, no traceback, no engine started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHIPPED = ("r1_zero", "few_shot_long_cot", "reflect_verify", "refine", "judge")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def problems(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text('{"problem": "What is 2 + 3 * 4?", "answer": "14"}\n')
    return path


def error_line(result) -> str:
    """Assert the one-line error contract and return the line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {lines}"
    assert lines[0].startswith("error:"), lines[0]
    assert len(lines[0]) > len("error: ")
    return lines[0]


def test_templates_lists_all(cli):
    result = cli("templates")
    assert result.exit_code == 0, result.output
    for name in SHIPPED:
        assert name in result.output
    for fmt in ("think_answer", "special_token", "score"):
        assert fmt in result.output


def test_templates_with_user_folder(cli, tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "name: mine\ndescription: Mine.\nformat: score\nbase: '{{ problem }}'\nchat: []\n"
    )
    result = cli("templates", "--templates-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "mine" in result.output and "r1_zero" in result.output


def test_templates_with_bad_user_file(cli, tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [oops\n")
    line = error_line(cli("templates", "--templates-dir", tmp_path))
    assert "bad.yaml" in line


def test_missing_problems_file(cli, runs_dir, tmp_path):
    line = error_line(cli("generate", "r", "--problems", tmp_path / "nope.jsonl", "--model", "m"))
    assert "nope.jsonl" in line and "no such file" in line
    assert not (runs_dir / "r").exists()


def test_empty_problems_file(cli, runs_dir, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    line = error_line(cli("generate", "r", "--problems", path, "--model", "m"))
    assert "empty.jsonl" in line and "empty" in line


def test_malformed_jsonl_line(cli, runs_dir, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a"}\n{"problem": "b"\n')
    line = error_line(cli("generate", "r", "--problems", path, "--model", "m"))
    assert f"{path}:2" in line


def test_misnamed_column(cli, runs_dir, tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a", "solution": "1"}\n')
    line = error_line(cli("generate", "r", "--problems", path, "--model", "m"))
    assert "question, solution" in line and "--map" in line


def test_map_fixes_the_column_but_bad_map_is_an_error(cli, runs_dir, tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a", "solution": "1"}\n')
    line = error_line(cli("generate", "r", "--problems", path, "--model", "m", "--map", "problem"))
    assert "--map" in line


def test_unknown_template(cli, runs_dir, problems):
    line = error_line(cli("generate", "r", "--problems", problems, "--model", "m", "--template", "r2_zero"))
    assert "r2_zero" in line
    for name in SHIPPED:
        assert name in line


def test_template_needing_completion_on_plain_problems(cli, runs_dir, problems):
    line = error_line(cli("generate", "r", "--problems", problems, "--model", "m", "--template", "refine"))
    assert "completion" in line and "run folder" in line


def test_unknown_backend(cli, runs_dir, problems):
    line = error_line(cli("generate", "r", "--problems", problems, "--model", "m", "--backend", "tgi"))
    assert "tgi" in line and "vllm" in line and "openai" in line


def test_bad_prompt_mode(cli, runs_dir, problems):
    line = error_line(cli("generate", "r", "--problems", problems, "--model", "m", "--prompt-mode", "xml"))
    assert "xml" in line


def test_model_path_does_not_exist(cli, runs_dir, problems):
    line = error_line(cli("generate", "r", "--problems", problems, "--model", "/nonexistent/model"))
    assert "/nonexistent/model" in line and "does not exist" in line


def test_vllm_backend_without_model(cli, runs_dir, problems):
    line = error_line(cli("generate", "r", "--problems", problems))
    assert "--model" in line


def test_openai_backend_server_unreachable(cli, runs_dir, problems):
    result = cli(
        "generate", "r", "--problems", problems, "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"
    )
    line = error_line(result)
    assert "cannot reach" in line and "http://127.0.0.1:9/v1" in line


def test_failed_start_does_not_lock_the_run_to_the_bad_model(cli, runs_dir, problems):
    # A run that never started must not refuse the corrected command as "a different config".
    cli("generate", "r", "--problems", problems, "--model", "/nonexistent/model")
    line = error_line(cli("generate", "r", "--problems", problems, "--model", "/another/missing/model"))
    assert "different config" not in line
    assert "/another/missing/model" in line


def test_show_of_a_folder_that_is_not_a_run(cli, tmp_path):
    line = error_line(cli("show", tmp_path))
    assert str(tmp_path) in line and "not a run folder" in line


def test_show_of_a_missing_run_name(cli, runs_dir):
    line = error_line(cli("show", "never_made"))
    assert "never_made" in line


def test_show_unknown_stage(cli, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"fingerprint": "x", "config": {}}))
    line = error_line(cli("show", tmp_path, "--stage", "final"))
    assert "final" in line


def test_show_of_an_empty_run(cli, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"fingerprint": "x", "config": {"template": "r1_zero"}}))
    result = cli("show", tmp_path)
    assert result.exit_code == 0, result.output
    assert "0 finished generated shards" in result.output
