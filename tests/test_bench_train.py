"""bench/train.py's GRPO-loss comparison: our micro-batched loss and TRL's own
GRPOTrainer._compute_loss agree on identical inputs for every shared loss type."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO

pytest.importorskip("trl", reason="TRL is in the bench and dev extras: pip install -e .[bench]")


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grpo_loss_and_gradient_equal_trls_code():
    bench = load_bench()
    diffs = bench.grpo_loss_diffs()  # 4 micro-batches of 4, beta 0.04, clip-higher 0.28, one empty completion
    assert set(diffs) == set(bench.LOSS_TYPES)
    for loss_type, (loss_diff, grad_diff) in diffs.items():
        assert loss_diff <= 1e-5 and grad_diff <= 1e-5, (loss_type, loss_diff, grad_diff)
