"""The protocol every generation backend implements, and the registry of backends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from factory.core.registry import Registry
from factory.core.sample import Sampling
from factory.core.settings import setting

# Called with (samples finished, completion tokens) as generation goes, for progress bars.
ProgressFn = Callable[[int, int], None]


@dataclass
class Request:
    """One prompt to sample `n` completions for."""

    key: str
    text: str | None = None  # base-model prompt (plain completion)
    messages: list[dict[str, str]] | None = None  # chat prompt, rendered by the model's template
    prefill: str = ""  # starts the model's turn in chat mode
    seed: int | None = None  # per-request seed, so a resumed shard samples the same text


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    stop_reason: str | None = None  # the stop string that ended it, when one did
    error: str | None = None


class Backend(Protocol):
    name: str
    model: str
    # Whether chat-mode prompts carry the template's prefill (a chat API cannot).
    chat_prefill: bool

    def has_chat_template(self) -> bool: ...

    def prompt_text(self, request: Request) -> str:
        """The exact prompt as sent, for the `prompt` column."""
        ...

    def generate(
        self, requests: list[Request], sampling: Sampling, stop: list[str], progress: ProgressFn
    ) -> list[list[Completion]]:
        """`sampling.n` completions per request, in request order. Never raises for one bad sample."""
        ...

    def close(self) -> None: ...


# By path: each backend imports this module for Request and Completion, and vLLM is heavy to import.
BACKENDS: Registry[Callable[..., Backend]] = Registry("backend")
BACKENDS.register("vllm", "factory.generate.vllm_backend:VLLMBackend", help="offline vLLM engine on local GPUs")
BACKENDS.register("openai", "factory.generate.openai_backend:OpenAIBackend", help="any OpenAI-compatible server")

# A backend setting's type, made from the registry so registering a backend is the only place to name it;
# a Literal, so YAML values are checked against it and a flag lists the choices.
BackendName = Literal[tuple(BACKENDS.names())]  # type: ignore[valid-type]
BACKEND_HELP = "; ".join(f"{name}: {text}" for name, text in BACKENDS.items()) + "."


@dataclass
class BackendOptions:
    """How to reach the model; handed to the backend as keyword options (each backend reads its own)."""

    engine_args: dict[str, Any] = setting({}, "vllm backend: engine argument KEY=VALUE, e.g. max_model_len=4096.",
                                          flags=("--engine-arg",))
    base_url: str = setting("http://127.0.0.1:8000/v1", "openai backend: API root.")
    api_key_env: str = setting("OPENAI_API_KEY", "openai backend: environment variable holding the API key.")
    concurrency: int = setting(32, "openai backend: requests in flight at most (each asks for all n samples).")
    max_retries: int = setting(4, "openai backend: retries of a failed request (exponential backoff, honouring "
                               "Retry-After).")
    timeout: float = setting(600.0, "openai backend: seconds one request may take before it fails (and is retried).")

    def validate(self) -> None:
        from factory.core.errors import FactoryError

        if self.concurrency < 1:
            raise FactoryError(f"concurrency={self.concurrency} must be >= 1")
        if self.max_retries < 0:
            raise FactoryError(f"max_retries={self.max_retries} must be >= 0")
        if self.timeout <= 0:
            raise FactoryError(f"timeout={self.timeout} must be > 0")


# The defaults a backend falls back on for options its caller leaves out (the judge passes only base_url).
BACKEND_DEFAULTS = BackendOptions()


def open_backend(name: str, model: str, options: dict[str, Any]) -> Backend:
    return BACKENDS.get(name)(model, **options)
