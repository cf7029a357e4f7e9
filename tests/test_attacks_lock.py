"""The run lock as a lease: PID namespaces, other hosts' leases, simultaneous takers, a lost lease."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.core import shards
from factory.core.errors import FactoryError
from factory.core.lock import LOCK, live_owner, run_lock
from factory.filter.chain import load_chain, run_chain
from tests.test_chain import make_run

HOLD = ("import sys, time; from pathlib import Path; from factory.core.lock import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)")


def foreign_lease(run_dir: Path, age_s: float) -> dict:
    """The lock file a killed pod on another node leaves: its heartbeat stopped `age_s` ago."""
    owner = {"pid": 7, "host": "factory-cold-start-28461-xk2p9", "boot_id": "5c3e1d1e-0000-4000-8000-000000000000",
             "started": time.time() - 3600, "since": "2025-01-01 02:00:00",
             "command": "factory run recipes/cold_start.yaml",
             "token": "a1b2c3d4e5f60718", "heartbeat": time.time() - age_s}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK).write_text(json.dumps(owner))
    return owner


def test_a_holder_in_another_pid_namespace_keeps_the_lock(tmp_path: Path):
    if (shutil.which("unshare") is None
            or subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"]).returncode):
        pytest.skip("needs unshare --pid (root)")
    holder = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c", HOLD,
                               str(tmp_path)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == 1  # its pid there; pid 1 here is init
        with pytest.raises(FactoryError, match=f"in use by pid 1 on {socket.gethostname()}"):
            with run_lock(tmp_path):
                pass
        assert live_owner(tmp_path)["pid"] == 1
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.time() + 10
    while live_owner(tmp_path) is not None and time.time() < deadline:  # the namespace's pid 1 is reaped
        time.sleep(0.05)
    with run_lock(tmp_path):  # the kernel dropped its flock: taken over at once
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_another_hosts_lease_holds_while_its_heartbeat_runs_and_expires_after(tmp_path: Path, cli):
    run = tmp_path / "r"
    make_run(run)
    foreign_lease(run, age_s=5)
    with pytest.raises(FactoryError,
                       match=r"in use by pid 7 on factory-cold-start-28461-xk2p9 .*cold_start.yaml.*heartbeat"):
        with run_lock(run):
            pass
    assert live_owner(run)["host"] == "factory-cold-start-28461-xk2p9"
    refused = cli("filter", str(run), "--chain", "distill", "--workers", "1")
    assert refused.exit_code == 75 and "in use by pid 7" in refused.output  # busy: retry later
    foreign_lease(run, age_s=61)  # the pod was killed a minute ago: its lease expired (60 s by default)
    assert live_owner(run) is None
    retry = cli("filter", str(run), "--chain", "distill", "--workers", "1")  # the CronJob's retry, on a new pod
    assert retry.exit_code == 0, retry.output
    assert not (run / LOCK).exists()


def test_the_expiry_is_set_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    foreign_lease(tmp_path, age_s=3)
    monkeypatch.setenv("FACTORY_LOCK_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("FACTORY_LOCK_EXPIRY_S", "2")
    with run_lock(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_the_heartbeat_renews_a_live_lease(tmp_path: Path):
    env = {**os.environ, "FACTORY_LOCK_HEARTBEAT_S": "0.2", "FACTORY_LOCK_EXPIRY_S": "1"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        first = json.loads((tmp_path / LOCK).read_text())["heartbeat"]
        time.sleep(1.5)  # past the expiry: only the heartbeat keeps it live
        second = json.loads((tmp_path / LOCK).read_text())["heartbeat"]
        assert second > first and time.time() - second < 1
        with pytest.raises(FactoryError, match=f"in use by pid {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()


TAKER = """
import sys, time
from pathlib import Path
from factory.core.errors import FactoryError
from factory.core.lock import run_lock
print("ready", flush=True)
with open(sys.argv[2]):  # the start gun: opening a FIFO blocks until the test opens it for writing
    pass
try:
    with run_lock(Path(sys.argv[1])):
        print("won", flush=True)
        time.sleep(2)
except FactoryError:
    print("refused", flush=True)
"""


def _race(folder: Path) -> list[str]:
    """Twenty processes take the lock of `folder` at the same instant; what each got."""
    folder.mkdir()
    # A stale lock (a killed owner on this host) is there: every taker sees it stale at once.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": time.time() - 5,
                                           "since": "earlier", "command": "factory filter"}))
    gun = folder / "start"
    os.mkfifo(gun)
    takers = [subprocess.Popen([sys.executable, "-c", TAKER, str(folder), str(gun)], stdout=subprocess.PIPE, text=True)
              for _ in range(20)]
    assert all(t.stdout.readline().strip() == "ready" for t in takers)  # all twenty imported
    time.sleep(0.5)  # and blocked on the FIFO
    gun_fd = os.open(gun, os.O_WRONLY)  # wakes them all at the same instant
    time.sleep(0.5)
    os.close(gun_fd)
    return sorted(t.communicate(timeout=60)[0].strip() for t in takers)


def test_twenty_simultaneous_takers_exactly_one_wins(tmp_path: Path):
    for round_ in range(3):  # a race: several rounds, so one lucky round proves nothing
        assert _race(tmp_path / str(round_)) == ["refused"] * 19 + ["won"], f"round {round_}"


def test_a_writer_that_lost_its_lease_stops_before_writing(tmp_path: Path):
    run = tmp_path / "r"
    make_run(run)

    def taken_over(_n: int) -> None:  # after the first shard: another host took the lease (ours had stalled)
        foreign_lease(run, age_s=0)

    with pytest.raises(FactoryError, match="lost its run lock .*pid 7 on factory-cold-start-28461-xk2p9"):
        run_chain(run, load_chain("distill"), workers=1, on_shard=taken_over)
    assert len(shards.done_shards(run, "curated")) == 1  # nothing written after the takeover
    assert json.loads((run / LOCK).read_text())["pid"] == 7  # its lease is left alone
    foreign_lease(run, age_s=61)
    funnel = run_chain(run, load_chain("distill"), workers=1)
    assert funnel["generated"] == funnel["kept"] + funnel["rejected"] == 96
