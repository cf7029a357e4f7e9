"""Any OpenAI-compatible server (`vllm serve`, SGLang, TGI, hosted APIs).

One request per sample, so each sample has its own token counts, seed and error. Reasoning a
server returns apart from the answer (`reasoning_content`) is put back in front of it. A
semaphore bounds the requests in flight; transient failures (connection, timeout, 429,
5xx) are retried with exponential backoff and jitter; a sample that still fails records
its error and the shard goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any

import httpx

from factory.errors import FactoryError, redact
from factory.generate.base import Completion, ProgressFn, Request
from factory.sample import Sampling


def _check_server(base_url: str, api_key: str, timeout: float) -> list[str]:
    """Fail fast, before any work, when the server is down or the URL is wrong."""
    url = base_url.rstrip("/") + "/models"
    try:
        r = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
    except httpx.HTTPError as e:
        raise FactoryError(
            f"cannot reach the server at {base_url} ({type(e).__name__}); start it "
            "(e.g. `vllm serve MODEL --port 8000`) or fix --base-url"
        ) from None
    if r.status_code in (401, 403):
        raise FactoryError(f"the server at {base_url} refused the API key (HTTP {r.status_code}); set --api-key-env")
    if r.status_code != 200:
        raise FactoryError(f"{url} answered HTTP {r.status_code}; is --base-url the API root (ending in /v1)?")
    try:
        return [m["id"] for m in r.json().get("data", [])]
    except (ValueError, KeyError, TypeError):
        raise FactoryError(f"{url} did not answer like an OpenAI-compatible server") from None


# Where servers put the reasoning they split off the answer: vLLM and SGLang with a reasoning
# parser, DeepSeek's API ("reasoning_content"); newer vLLM and OpenRouter ("reasoning").
REASONING_FIELDS = ("reasoning_content", "reasoning")


def with_reasoning(message: Any) -> str:
    """The whole turn, `<think>reasoning</think>content`, so filters and export see what the offline
    engine would have written; just the content when the server sent no reasoning."""
    content = message.content or ""
    extra = {**(message.model_extra or {}), **{f: getattr(message, f, None) for f in REASONING_FIELDS if hasattr(message, f)}}
    reasoning = next((extra[f] for f in REASONING_FIELDS if isinstance(extra.get(f), str) and extra[f]), None)
    if reasoning is None:
        return content
    if not content:  # cut off while still reasoning: the block stays open, as the model left it
        return f"<think>\n{reasoning}"
    return f"<think>\n{reasoning}\n</think>\n\n{content}"


class OpenAIBackend:
    name = "openai"
    chat_prefill = False  # a chat API starts the assistant turn itself

    def __init__(
        self,
        model: str | None,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 32,
        max_retries: int = 4,
        timeout: float = 600.0,
        backoff: float = 1.0,
        **_: Any,
    ):
        import openai

        self.api_key = os.environ.get(api_key_env) or "EMPTY"
        served = _check_server(base_url, self.api_key, timeout=min(timeout, 10.0))
        if not model:
            if not served:
                raise FactoryError(f"the server at {base_url} lists no models; pass --model")
            model = served[0]
        elif served and model not in served:
            raise FactoryError(f"the server at {base_url} does not serve '{model}'; it serves: {', '.join(served)}")
        self.model = model
        self.base_url = base_url
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self._openai = openai

    def close(self) -> None:
        pass  # each shard's client is closed when its requests are done

    def has_chat_template(self) -> bool:
        return True  # servers apply the model's chat template themselves

    def prompt_text(self, request: Request) -> str:
        if request.messages is None:
            return request.text or ""
        return json.dumps(request.messages, ensure_ascii=False)

    def generate(
        self, requests: list[Request], sampling: Sampling, stop: list[str], progress: ProgressFn
    ) -> list[list[Completion]]:
        return asyncio.run(self._generate_all(requests, sampling, stop, progress))

    async def _generate_all(
        self, requests: list[Request], sampling: Sampling, stop: list[str], progress: ProgressFn
    ) -> list[list[Completion]]:
        client = self._openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout
        )
        limit = asyncio.Semaphore(self.concurrency)

        async def one(request: Request, index: int) -> Completion:
            async with limit:
                c = await self._with_retries(client, request, index, sampling, stop)
            progress(1, c.completion_tokens or 0)
            return c

        try:
            tasks = [[one(r, i) for i in range(sampling.n)] for r in requests]
            flat = await asyncio.gather(*(t for group in tasks for t in group))
        finally:
            await client.close()
        n = sampling.n
        return [list(flat[k * n : (k + 1) * n]) for k in range(len(requests))]

    async def _with_retries(
        self, client: Any, request: Request, index: int, sampling: Sampling, stop: list[str]
    ) -> Completion:
        o = self._openai
        retryable = (o.APIConnectionError, o.APITimeoutError, o.RateLimitError, o.InternalServerError)
        for attempt in range(self.max_retries + 1):
            try:
                return await self._request(client, request, index, sampling, stop)
            except retryable as e:
                if attempt == self.max_retries:
                    return Completion("", "error", error=redact(f"{type(e).__name__} after {attempt + 1} tries: {e}", self.api_key))
                await asyncio.sleep(self.backoff * 2**attempt * (0.5 + random.random()))
            except o.APIError as e:  # 4xx other than 429: retrying cannot help
                return Completion("", "error", error=redact(f"{type(e).__name__}: {e}", self.api_key))
        raise AssertionError("unreachable")

    async def _request(
        self, client: Any, request: Request, index: int, sampling: Sampling, stop: list[str]
    ) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "n": 1,
        }
        if stop:
            kwargs["stop"] = stop
        if request.seed is not None:
            # One request per sample: sample i of a request gets its own stable seed.
            kwargs["seed"] = (request.seed + index) % (2**31 - 1)
        if sampling.top_k > 0:
            kwargs["extra_body"] = {"top_k": sampling.top_k}
        if request.messages is not None:
            r = await client.chat.completions.create(messages=request.messages, **kwargs)
            choice = r.choices[0]
            text = with_reasoning(choice.message)
        else:
            r = await client.completions.create(prompt=request.text or "", **kwargs)
            choice, text = r.choices[0], r.choices[0].text or ""
        stop_reason = (choice.model_extra or {}).get("stop_reason")
        usage = r.usage
        return Completion(
            text=text,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            stop_reason=stop_reason if isinstance(stop_reason, str) else None,
        )
