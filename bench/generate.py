"""Throughput of `factory generate` against a bare `vllm.LLM.generate`, side by side.

One process, one engine: the same prompts, model and sampling (the same per-request
seeds, so both sample the same tokens) go through a bare `llm.generate(prompts, params)`
and through the factory's generation run (render templates, generate, parse, write zstd
Parquet shards with markers). Rounds alternate which side goes first, so warm-up and drift hit both sides; the best
round of each is compared.
The factory's time includes everything it does; the baseline's only the generate call.

    python bench/generate.py                       # tiny random model, made on the fly
    python bench/generate.py --model PATH --problems 512 --n 8 --max-tokens 512
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: a tiny random Qwen2 made now)")
    ap.add_argument("--problems", type=int, default=128)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--template", default="r1_zero")
    args = ap.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform

    from factory.generate.runner import GenerateConfig, make_request, plan_run, run_generation
    from factory.generate.vllm_backend import VLLMBackend
    from factory.sample import Sampling
    from factory.tiny_model import build_tiny_model

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

    def factory(round_: int) -> tuple[int, float]:
        run_dir = work / f"run-{round_}"
        t0 = time.perf_counter()
        result = run_generation(config, run_dir, backend=backend)
        dt = time.perf_counter() - t0
        shutil.rmtree(run_dir)
        return result.completion_tokens, dt

    bare()  # warm-up: compile and caches, for both sides
    factory(-1)
    bare_rates, factory_rates = [], []
    for r in range(args.rounds):
        # The engine drifts over a run (same work, later = slower), so the order alternates.
        first_bare = r % 2 == 0
        if first_bare:
            tokens_b, dt_b = bare()
        tokens_f, dt_f = factory(r)
        if not first_bare:
            tokens_b, dt_b = bare()
        if tokens_b != tokens_f:
            print(f"note: token counts differ (bare {tokens_b}, factory {tokens_f})")
        bare_rates.append(tokens_b / dt_b)
        factory_rates.append(tokens_f / dt_f)
        print(f"round {r}: bare {tokens_b / dt_b:9.0f} tok/s ({dt_b:.2f} s)   factory {tokens_f / dt_f:9.0f} tok/s ({dt_f:.2f} s)")
    b, f = max(bare_rates), max(factory_rates)
    print(f"\n{len(prompts)} prompts x n={args.n}, max_tokens={args.max_tokens}, model={model}")
    print(f"bare vllm.LLM.generate: {b:,.0f} tok/s   factory generate: {f:,.0f} tok/s   ratio {f / b:.3f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
