"""Every vLLM engine is built by build_llm: generation's with its defaults, GRPO's rollout engine
with its weight-sync worker, dtype, GPU share and smaller CPU KV cache. A stand-in for vllm.LLM
records what each is given; the real engines run in the slow tests."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

import factory.generate.vllm_backend as vb
from tests.conftest import REPO

TINY = str(REPO / "data" / "tiny-model")


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list:
    made: list = []

    class FakeLLM:
        def __init__(self, model: str, **args):
            made.append((model, args))

        def get_tokenizer(self) -> None:
            return None

    monkeypatch.setattr(vb, "_import_vllm", lambda: SimpleNamespace(LLM=FakeLLM))
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE")  # set by the engine, restored after the test
    return made


def grpo_sampler(tmp_path):
    from factory.train.config import GRPOConfig
    from factory.train.grpo import VLLMSampler

    return VLLMSampler(TINY, GRPOConfig(model=TINY, out=str(tmp_path), seed=3))


def test_on_the_cpu_build(made, monkeypatch, tmp_path):
    monkeypatch.setattr(vb, "on_cpu", lambda: True)
    vb.VLLMBackend(TINY, seed=5, engine_args={"max_model_len": 512})
    assert made[-1] == (TINY, {"seed": 5, "max_model_len": 512, "enable_chunked_prefill": False})
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == vb.DEFAULT_CPU_KVCACHE_GIB
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE")
    grpo_sampler(tmp_path)
    assert made[-1] == (TINY, {"seed": 3, "worker_extension_cls": "factory.train.vllm_sync.WeightSync",
                               "dtype": "float32", "enable_chunked_prefill": False})
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "2"


def test_on_a_gpu(made, monkeypatch, tmp_path):
    monkeypatch.setattr(vb, "on_cpu", lambda: False)
    vb.VLLMBackend(TINY)
    assert made[-1] == (TINY, {"seed": 0})
    grpo_sampler(tmp_path)
    assert made[-1] == (TINY, {"seed": 3, "worker_extension_cls": "factory.train.vllm_sync.WeightSync",
                               "dtype": "bfloat16", "gpu_memory_utilization": 0.3})
    assert "VLLM_CPU_KVCACHE_SPACE" not in os.environ


def test_a_missing_model_folder_is_refused_before_vllm_starts(made, tmp_path):
    with pytest.raises(vb.FactoryError, match="does not exist"):
        vb.build_llm(str(tmp_path / "nope"))
    assert not made
