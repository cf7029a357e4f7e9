"""Retries (the SDK's, honouring Retry-After), one request per prompt with n, per-sample token
counts and the concurrency bound of the openai backend.

A real server cannot be made to fail on demand, so these use a small HTTP server on
loopback that speaks the OpenAI completions API (as vLLM does) and fails as told.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from factory.core.sample import Sampling
from factory.generate.base import Request
from factory.generate.openai_backend import OpenAIBackend
from tests.helpers import send_json


class FlakyServer:
    def __init__(self, fail_first: int, status: int = 503, delay: float = 0.0, retry_after: str | None = "0.01"):
        self.fail_first, self.status, self.delay = fail_first, status, delay
        # Failures carry Retry-After (seconds), which the client must wait; short by default for speed.
        self.retry_after = retry_after
        self.times: list[float] = []
        self.bodies: list[dict] = []
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.seeds: list[int] = []

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict):
                retry = code != 200 and server.retry_after is not None
                send_json(self, code, body, {"Retry-After": server.retry_after} if retry else None)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "stand-in", "object": "model", "owned_by": "vllm"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.calls += 1
                    call = server.calls
                    server.times.append(time.monotonic())
                    server.bodies.append(body)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    if "seed" in body:
                        server.seeds.append(body["seed"])
                time.sleep(server.delay)
                with server.lock:
                    server.in_flight -= 1
                if call <= server.fail_first:
                    return self._send(server.status, {"error": {"message": "try later", "type": "server_error"}})
                n = body.get("n", 1)
                # vLLM with return_token_ids: each sample's own tokens (sample i has 7 + i of them).
                choices = [{"index": i, "text": "<think>1 + 1 = 2</think> <answer>2", "finish_reason": "stop",
                            "stop_reason": "</answer>", "logprobs": None,
                            **({"token_ids": list(range(7 + i))} if body.get("return_token_ids") else {})}
                           for i in range(n)]
                self._send(200, {
                    "id": "c", "object": "text_completion", "created": 0, "model": "stand-in", "choices": choices,
                    "usage": {"prompt_tokens": 5, "completion_tokens": sum(7 + i for i in range(n)),
                              "total_tokens": 5 + sum(7 + i for i in range(n))},
                })

        return Handler

    def __enter__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.httpd.shutdown()


def _generate(base: str, n: int, requests: int = 1, **options):
    backend = OpenAIBackend(None, base_url=base, **options)
    progress: list[int] = []
    out = backend.generate(
        [Request(key=str(i), text="What is 1 + 1?", seed=7) for i in range(requests)],
        Sampling(n=n, max_tokens=8), [], lambda s, t: progress.append(s),
    )
    return backend, out, progress


def test_transient_failures_are_retried_with_backoff():
    with FlakyServer(fail_first=2) as base:
        backend, out, progress = _generate(base, n=1, max_retries=3)
    assert backend.model == "stand-in"  # the first served model when --model is not given
    (c,) = out[0]
    assert c.error is None and c.text.endswith("<answer>2") and c.stop_reason == "</answer>"
    assert (c.prompt_tokens, c.completion_tokens) == (5, 7) and progress == [1]


def test_persistent_failure_is_recorded_not_raised():
    server = FlakyServer(fail_first=10**6)
    with server as base:
        _, out, _ = _generate(base, n=2, max_retries=2)
    assert server.calls == 3  # one request for both samples: 1 try + 2 retries
    assert all(c.error and "after 3 tries" in c.error and c.finish_reason == "error" for c in out[0])


def test_client_errors_are_not_retried():
    server = FlakyServer(fail_first=10**6, status=400)
    with server as base:
        _, out, _ = _generate(base, n=1, max_retries=3)
    assert server.calls == 1 and "BadRequest" in out[0][0].error


def test_one_request_per_prompt_with_n_bounded_concurrency_and_per_sample_tokens():
    server = FlakyServer(fail_first=0, delay=0.05)
    with server as base:
        _, out, progress = _generate(base, n=4, requests=5, concurrency=3)
    assert len(out) == 5 and all(len(group) == 4 for group in out)
    assert server.calls == 5 and all(b["n"] == 4 for b in server.bodies)  # not one request per sample
    assert 1 < server.max_in_flight <= 3
    assert sum(progress) == 20
    assert server.seeds == [7] * 5  # vLLM seeds sample i with 7 + i: the texts per-sample requests got
    assert [c.completion_tokens for c in out[0]] == [7, 8, 9, 10]  # each sample's own count, not the total


def test_retry_after_is_honoured():
    server = FlakyServer(fail_first=1, status=429, retry_after="1")
    with server as base:
        _, out, _ = _generate(base, n=1, max_retries=2)
    assert out[0][0].error is None and server.calls == 2
    assert server.times[1] - server.times[0] >= 0.95  # the SDK's own backoff would wait about 0.5 s


def test_model_the_server_does_not_serve_is_a_clear_error():
    from factory.core.errors import FactoryError

    with FlakyServer(fail_first=0) as base:
        with pytest.raises(FactoryError, match="does not serve 'x'"):
            OpenAIBackend("x", base_url=base)
