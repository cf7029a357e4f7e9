"""Throughput of `factory generate` against a bare `vllm.LLM.generate`, side by side.

One process, one engine: the same prompts, model and sampling (the same per-request
seeds, so both sample the same tokens) go through a bare `llm.generate(prompts, params)`
and through the factory's generation run (render templates, generate, parse, write zstd
Parquet shards with markers). Rounds alternate which side goes first, so warm-up and drift hit both sides; the best
round of each is compared.
The factory's time includes everything it does; the baseline's only the generate call.

    python bench/generate.py                       # tiny random model, made on the fly
    python bench/generate.py --model PATH --problems 512 --n 8 --max-tokens 512
    python bench/generate.py --backend openai      # against a raw AsyncOpenAI client, same server

With `--backend openai` the bench starts vLLM's OpenAI-compatible server on loopback (or uses
`--base-url`) and compares the factory's server path with a bare `AsyncOpenAI` client sending the
same requests (one per prompt with n, the same seeds and concurrency) to the same server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def timed_run(config, backend, run_dir: Path) -> tuple[int, float]:
    """(completion tokens, seconds) of one whole factory generation run, its folder removed after."""
    from factory.generate.runner import run_generation

    t0 = time.perf_counter()
    result = run_generation(config, run_dir, backend=backend)
    dt = time.perf_counter() - t0
    shutil.rmtree(run_dir)
    return result.completion_tokens, dt


def alternate(bare, ours, rounds: int, bare_name: str) -> tuple[list[float], list[float]]:
    """Warm both sides up, then time them in rounds whose order alternates (an engine or server drifts
    over a run, so neither side always goes first); tok/s per round for each."""
    bare()
    ours(-1)
    bare_rates, our_rates = [], []
    for r in range(rounds):
        first_bare = r % 2 == 0
        if first_bare:
            tokens_b, dt_b = bare()
        tokens_f, dt_f = ours(r)
        if not first_bare:
            tokens_b, dt_b = bare()
        if tokens_b != tokens_f:
            print(f"note: token counts differ ({bare_name} {tokens_b}, factory {tokens_f})")
        bare_rates.append(tokens_b / dt_b)
        our_rates.append(tokens_f / dt_f)
        print(f"round {r}: {bare_name} {tokens_b / dt_b:9.0f} tok/s ({dt_b:.2f} s)   "
              f"factory {tokens_f / dt_f:9.0f} tok/s ({dt_f:.2f} s)")
    ratios = sorted(o / b for o, b in zip(our_rates, bare_rates))
    print(f"\nper-round ratios {', '.join(f'{x:.2f}' for x in ratios)}; median {ratios[len(ratios) // 2]:.3f}")
    return bare_rates, our_rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: a tiny random Qwen2 made now)")
    ap.add_argument("--problems", type=int, default=128)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--template", default="r1_zero")
    ap.add_argument("--backend", choices=["vllm", "openai"], default="vllm")
    ap.add_argument("--base-url", help="openai: a running server (default: start one on loopback)")
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if args.backend == "openai":
        return bench_server(args)

    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform

    from factory.core.sample import Sampling
    from factory.generate.runner import GenerateConfig, make_request, plan_run
    from factory.generate.vllm_backend import VLLMBackend
    from factory.train.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    model = args.model or str(build_tiny_model(work / "model"))
    engine_args = {"enable_chunked_prefill": False} if current_platform.is_cpu() else {}
    llm = LLM(model, seed=0, max_model_len=2048, **engine_args)
    backend = VLLMBackend.from_llm(llm, model)

    sampling = Sampling(temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, n=args.n, seed=0)
    config = GenerateConfig(
        problems=f"builtin:arithmetic?n={args.problems}&seed=0", model=model, template=args.template,
        sampling=sampling, prompt_mode="chat", shard_size=args.problems * args.n,
    )
    plan = plan_run(config)
    template = plan.templates[0]
    requests = [make_request(template, p, "chat", config) for p in plan.problems]
    prompts = [backend.prompt_text(r) for r in requests]
    params = [
        SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=r.seed,
                       stop=template.stop or None)
        for r in requests
    ]

    def bare() -> tuple[int, float]:
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        dt = time.perf_counter() - t0
        return sum(len(c.token_ids) for o in outs for c in o.outputs), dt

    bare_rates, factory_rates = alternate(
        bare, lambda r: timed_run(config, backend, work / f"run-{r}"), args.rounds, "bare")
    b, f = max(bare_rates), max(factory_rates)
    print(f"{len(prompts)} prompts x n={args.n}, max_tokens={args.max_tokens}, model={model}")
    print(f"bare vllm.LLM.generate: {b:,.0f} tok/s   factory generate: {f:,.0f} tok/s   ratio {f / b:.3f}")
    shutil.rmtree(work, ignore_errors=True)


def bench_server(args: argparse.Namespace) -> None:
    import asyncio
    import socket
    import subprocess
    import sys

    import httpx
    import openai

    from factory.core.sample import Sampling
    from factory.generate.openai_backend import OpenAIBackend
    from factory.generate.runner import GenerateConfig, make_request, plan_run
    from factory.train.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    server = None
    base = args.base_url
    if base is None:
        model = args.model or str(build_tiny_model(work / "model"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = (work / "serve.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--port", str(port),
             "--host", "127.0.0.1", "--max-model-len", "2048", "--no-enable-chunked-prefill", "--seed", "0",
             "--served-model-name", "bench"], stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        for _ in range(600):
            if server.poll() is not None:
                raise SystemExit(f"the server exited; its log: {work / 'serve.log'}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
    try:
        backend = OpenAIBackend(None, base_url=base, concurrency=args.concurrency)
        sampling = Sampling(temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, n=args.n, seed=0)
        config = GenerateConfig(problems=f"builtin:arithmetic?n={args.problems}&seed=0", model=backend.model,
                                template=args.template, backend="openai", sampling=sampling, prompt_mode="chat",
                                shard_size=args.problems * args.n)
        plan = plan_run(config)
        requests = [make_request(plan.templates[0], p, "chat", config) for p in plan.problems]
        stop = plan.templates[0].stop or None

        async def raw() -> int:
            client = openai.AsyncOpenAI(base_url=base, api_key="EMPTY", max_retries=0)
            limit = asyncio.Semaphore(args.concurrency)

            async def one(r):
                async with limit:
                    # The same request the factory sends (it asks vLLM for each sample's token ids).
                    out = await client.chat.completions.create(
                        model=backend.model, messages=r.messages, n=args.n, temperature=1.0, top_p=1.0,
                        max_tokens=args.max_tokens, seed=r.seed, stop=stop,
                        extra_body={"return_token_ids": True} if backend.token_ids else None)
                return out.usage.completion_tokens

            try:
                return sum(await asyncio.gather(*(one(r) for r in requests)))
            finally:
                await client.close()

        def bare() -> tuple[int, float]:
            t0 = time.perf_counter()
            tokens = asyncio.run(raw())
            return tokens, time.perf_counter() - t0

        bare_rates, our_rates = alternate(bare, lambda r: timed_run(config, backend, work / f"run-{r}"), args.rounds,
                                          "raw client")
        b, f = max(bare_rates), max(our_rates)
        print(f"{len(requests)} prompts x n={args.n}, max_tokens={args.max_tokens}, server {base}")
        print(f"raw AsyncOpenAI client: {b:,.0f} tok/s   factory --backend openai: {f:,.0f} tok/s   ratio {f / b:.3f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
