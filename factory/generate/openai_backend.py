"""Any OpenAI-compatible server (`vllm serve`, SGLang, TGI, hosted APIs).

One request per prompt asks for all `n` samples at once, as a client of the server would: vLLM
seeds sample i of a request with `seed + i`, so the texts are the same as one request per sample
with those seeds (what earlier versions sent), and a resumed shard samples what a clean run did.
Per-sample token counts come from vLLM's `return_token_ids` (the usage block only has totals).
Reasoning a server returns apart from the answer (`reasoning_content`) is put back in front of
it. A semaphore bounds the requests in flight; the OpenAI SDK retries transient failures
(connection, timeout, 408/409/429, 5xx) with its exponential backoff, honouring `Retry-After`;
a request that still fails records its error on its samples and the shard goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx

from factory.core.errors import FactoryError, redact
from factory.core.sample import Sampling
from factory.generate.base import BACKEND_DEFAULTS, Completion, ProgressFn, Request


def _check_server(base_url: str, api_key: str, timeout: float) -> list[dict[str, Any]]:
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
        return [{"id": m["id"], "owned_by": m.get("owned_by")} for m in r.json().get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise FactoryError(f"{url} did not answer like an OpenAI-compatible server") from None


# Where servers put the reasoning they split off the answer: vLLM and SGLang with a reasoning
# parser, DeepSeek's API ("reasoning_content"); newer vLLM and OpenRouter ("reasoning").
REASONING_FIELDS = ("reasoning_content", "reasoning")


def with_reasoning(message: Any) -> str:
    """The whole turn, `<think>reasoning</think>content`, so filters and export see what the offline
    engine would have written; just the content when the server sent no reasoning."""
    content = message.content or ""
    extra = {**(message.model_extra or {}),
             **{f: getattr(message, f, None) for f in REASONING_FIELDS if hasattr(message, f)}}
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
        base_url: str = BACKEND_DEFAULTS.base_url,
        api_key_env: str = BACKEND_DEFAULTS.api_key_env,
        concurrency: int = BACKEND_DEFAULTS.concurrency,
        max_retries: int = BACKEND_DEFAULTS.max_retries,
        timeout: float = BACKEND_DEFAULTS.timeout,
        **_: Any,
    ):
        import openai

        self.api_key = os.environ.get(api_key_env) or "EMPTY"
        models = _check_server(base_url, self.api_key, timeout=min(timeout, 10.0))
        served = [m["id"] for m in models]
        if not model:
            if not served:
                raise FactoryError(f"the server at {base_url} lists no models; pass --model")
            model = served[0]
        elif served and model not in served:
            raise FactoryError(f"the server at {base_url} does not serve '{model}'; it serves: {', '.join(served)}")
        self.model = model
        # vLLM returns each sample's token ids on request; other servers would reject the field.
        self.token_ids = any(m["id"] == model and m["owned_by"] == "vllm" for m in models)
        self.base_url = base_url
        self.concurrency = concurrency
        self.max_retries = max_retries
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
        # The SDK's own retries: exponential backoff with jitter, and the server's Retry-After.
        client = self._openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key, max_retries=self.max_retries, timeout=self.timeout
        )
        limit = asyncio.Semaphore(self.concurrency)

        async def one(request: Request) -> list[Completion]:
            async with limit:
                completions = await self._with_errors(client, request, sampling, stop)
            progress(len(completions), sum(c.completion_tokens or 0 for c in completions))
            return completions

        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await client.close()

    async def _with_errors(self, client: Any, request: Request, sampling: Sampling,
                           stop: list[str]) -> list[Completion]:
        """The request's n samples, or n failed samples that say why (a secret the server echoed masked)."""
        o = self._openai
        try:
            return await self._request(client, request, sampling, stop)
        except (o.APIConnectionError, o.APITimeoutError, o.RateLimitError, o.InternalServerError) as e:
            error = f"{type(e).__name__} after {self.max_retries + 1} tries: {e}"
        except o.APIError as e:  # 4xx other than 408/409/429: retrying cannot help
            error = f"{type(e).__name__}: {e}"
        return [Completion("", "error", error=redact(error, self.api_key)) for _ in range(sampling.n)]

    async def _request(self, client: Any, request: Request, sampling: Sampling, stop: list[str]) -> list[Completion]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "n": sampling.n,
        }
        if stop:
            kwargs["stop"] = stop
        if request.seed is not None:
            kwargs["seed"] = request.seed  # sample i gets seed + i on vLLM
        extra: dict[str, Any] = {}
        if sampling.top_k > 0:
            extra["top_k"] = sampling.top_k
        if self.token_ids:
            extra["return_token_ids"] = True
        if extra:
            kwargs["extra_body"] = extra
        if request.messages is not None:
            r = await client.chat.completions.create(messages=request.messages, **kwargs)
            texts = [with_reasoning(choice.message) for choice in r.choices]
        else:
            r = await client.completions.create(prompt=request.text or "", **kwargs)
            texts = [choice.text or "" for choice in r.choices]
        usage = r.usage
        out = []
        for choice, text in sorted(zip(r.choices, texts), key=lambda ct: ct[0].index):
            extra_fields = choice.model_extra or {}
            ids = extra_fields.get("token_ids")
            tokens = (len(ids) if isinstance(ids, list)
                      else (usage.completion_tokens if usage and len(r.choices) == 1 else None))
            stop_reason = extra_fields.get("stop_reason")
            out.append(Completion(
                text=text,
                finish_reason=choice.finish_reason,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=tokens,
                stop_reason=stop_reason if isinstance(stop_reason, str) else None,
            ))
        if len(out) != sampling.n:
            raise self._openai.APIError(f"the server returned {len(out)} samples for n={sampling.n}", None, body=None)
        return out
