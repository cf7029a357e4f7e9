"""Reasoning from servers: `reasoning_content` / `reasoning` fields (vLLM or SGLang with a reasoning
parser, DeepSeek's API) and a server without a parser, whose content lacks the opening <think>.

A stand-in server on loopback answers chat completions the way those servers do; the run then
goes through `factory generate --backend openai`, `filter --chain distill` and `export`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from factory.core import shards
from tests.helpers import run_factory, send_json

# problem -> (message fields, finish_reason); the gold answer of every problem is 4.
ANSWERS = {
    "vllm parser: what is 2+2?": ({"content": "The answer is $\\boxed{4}$.",
                                   "reasoning_content": "Two plus two.\nSo 4."}, "stop"),
    "newer field: what is 2+2?": ({"content": "So $\\boxed{4}$.", "reasoning": "Adding 2 and 2 gives 4."}, "stop"),
    "no parser: what is 2+2?": ({"content": "2 and 2 make 4.\n</think>\n\nTherefore $\\boxed{4}$."}, "stop"),
    "wrong: what is 2+2?": ({"content": "So $\\boxed{5}$.", "reasoning_content": "2+2 is 5, surely."}, "stop"),
    "cut off: what is 2+2?": ({"content": None, "reasoning_content": "Let me think about 2 and 2 and"}, "length"),
}


class ReasoningServer(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, body: dict) -> None:
        send_json(self, 200, body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "r1-distill", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        assert len(body["messages"]) == 1, "r1_distill sends no system prompt"
        message, finish = ANSWERS[user.splitlines()[0]]
        self._send({
            "id": "c", "object": "chat.completion", "created": 0, "model": "r1-distill",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
        })


@pytest.fixture(scope="module")
def base_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ReasoningServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_reasoning_fields_make_whole_turns_that_filter_and_export(base_url: str, tmp_path: Path):
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"problem": p, "answer": "4"}) + "\n" for p in ANSWERS))
    runs = tmp_path / "runs"
    gen = run_factory(["generate", "r", "--backend", "openai", "--base-url", base_url, "--template", "r1_distill",
                       "--problems", str(problems), "--n", "1"], runs)
    assert gen.returncode == 0, gen.stderr
    rows = {r["problem"]: r for r in shards.read_table(runs / "r", "generated").to_pylist()}

    parsed = rows["vllm parser: what is 2+2?"]
    assert parsed["completion"] == "<think>\nTwo plus two.\nSo 4.\n</think>\n\nThe answer is $\\boxed{4}$."
    assert (parsed["reasoning"], parsed["final"], parsed["parse_error"]) == ("Two plus two.\nSo 4.", "4", None)
    assert rows["newer field: what is 2+2?"]["reasoning"] == "Adding 2 and 2 gives 4."
    # No reasoning parser on the server: the chat template opened <think>, the completion only closes it.
    bare = rows["no parser: what is 2+2?"]
    assert json.loads(bare["metadata"])["prefill"] == "<think>\n"
    assert (bare["reasoning"], bare["final"]) == ("2 and 2 make 4.", "4")
    assert rows["cut off: what is 2+2?"]["completion"] == "<think>\nLet me think about 2 and 2 and"

    filt = run_factory(["filter", "r", "--chain", "distill"], runs)
    assert filt.returncode == 0, filt.stderr
    kept = {r["problem"] for r in shards.read_table(runs / "r", "curated").to_pylist()}
    rejected = {r["problem"]: r["reason"] for r in shards.read_table(runs / "r", "rejected").to_pylist()}
    assert kept == {"vllm parser: what is 2+2?", "newer field: what is 2+2?", "no parser: what is 2+2?"}
    assert rejected["wrong: what is 2+2?"].startswith("wrong_answer")
    assert rejected["cut off: what is 2+2?"].startswith("truncated")

    out = tmp_path / "export"
    exp = run_factory(["export", "r", "--to", str(out)], runs)
    assert exp.returncode == 0, exp.stderr
    import pyarrow.parquet as pq

    messages = [m for t in out.glob("data/*.parquet") for m in pq.read_table(t).column("messages").to_pylist()]
    answers = sorted(m[-1]["content"] for m in messages)
    assert len(answers) == 3 and all(a.startswith("<think>\n") and "</think>" in a for a in answers)
