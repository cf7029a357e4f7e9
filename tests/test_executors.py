"""The executors' shared contract, on the local executor (the Ray one is in test_ray_executor.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from factory.core.errors import FactoryError
from factory.executors import ShardJobs, check_executor, get_executor
from factory.executors.base import call_shard
from tests.helpers import REPO


def square(x: int) -> int:
    if x == 3:
        raise FactoryError("shard 3 is bad")
    return x * x


def counted(state: list, x: int, progress) -> int:
    state.append(x)
    progress(1, x)
    progress(2, 0)
    return x


def test_names_and_options_are_checked_in_one_place():
    assert get_executor("local").where == "" and get_executor("ray", {"replicas": 2}).where == " on Ray"
    with pytest.raises(FactoryError, match="executor 'slurm' is not local or ray"):
        get_executor("slurm")
    with pytest.raises(FactoryError, match="replicas=0 must be a whole number >= 1"):
        check_executor("ray", {"replicas": 0})
    with pytest.raises(FactoryError, match="server already scales out"):
        check_executor("ray", {}, backend="openai")
    check_executor("local", {"replicas": 0}, backend="openai")  # the local executor has no Ray options


def test_stateful_jobs_share_one_setup_and_report_progress_live():
    states: list[list] = []
    seen: list[tuple] = []

    def setup() -> list:
        states.append([])
        return states[-1]

    jobs = ShardJobs(counted, [(1,), (2,), (5,)], setup=setup, teardown=lambda s: s.append("closed"),
                     reports_progress=True)
    with get_executor("local").run(jobs, progress=lambda *c: seen.append(c)) as results:
        assert len(states) == 1  # started on entering, before any shard
        assert list(results) == [1, 2, 5]
    assert states == [[1, 2, 5, "closed"]] and seen == [(1, 1), (2, 0), (1, 2), (2, 0), (1, 5), (2, 0)]


def test_worker_processes_keep_the_other_shards_and_raise_the_first_error():
    got = []
    with pytest.raises(FactoryError, match="shard 3 is bad"):
        with get_executor("local").run(ShardJobs(square, [(x,) for x in range(6)]), workers=2) as results:
            got.extend(results)
    assert sorted(got) == [0, 1, 4, 16, 25]


def test_a_remote_call_reports_its_progress_summed_with_its_result():
    state: list = []
    assert call_shard(counted, (state,), (4,), True) == (4, [3, 4]) and state == [4]
    assert call_shard(square, (), (2,), False) == (4, [])


def test_ray_is_imported_only_when_the_ray_executor_runs():
    code = ("import sys, factory.cli, factory.filter.chain, factory.generate.runner, factory.recipe, factory.executors;"
            "factory.executors.get_executor('ray', {});print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
