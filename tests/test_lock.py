"""The run lock: a second writer is refused, a crashed writer's lock is taken over, a forked child holds nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from factory.core.errors import FactoryError
from factory.core.lock import LOCK, run_lock
from factory.filter.chain import load_chain, run_chain
from tests.test_chain import make_run


def test_second_writer_is_refused_while_the_first_holds_it(tmp_path: Path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from factory.core.lock import run_lock\n"
         f"with run_lock(Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FactoryError, match=f"in use by pid {holder.pid} on {socket.gethostname()}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):  # the holder died: its lock is stale and taken over
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()


def test_lock_of_a_reused_pid_is_stale(tmp_path: Path):
    # Our own parent's pid is alive, but it started before the recorded time: a reused pid.
    parent = psutil.Process(os.getppid())
    (tmp_path / LOCK).write_text(json.dumps({"pid": parent.pid, "host": socket.gethostname(),
                                             "started": parent.create_time() + 1000, "since": "then"}))
    with run_lock(tmp_path):
        pass


def test_filter_refuses_a_run_another_process_holds(tmp_path: Path):
    run = tmp_path / "r"
    make_run(run)
    parent = psutil.Process(os.getppid())  # alive, and its start time matches: a live owner
    (run / LOCK).write_text(json.dumps({"pid": parent.pid, "host": socket.gethostname(),
                                        "started": parent.create_time(), "since": "now", "command": "factory filter"}))
    with pytest.raises(FactoryError, match="is in use by pid"):
        run_chain(run, load_chain("distill"), workers=1)
    (run / LOCK).unlink()
    assert run_chain(run, load_chain("distill"), workers=1)["generated"] == 96


def test_a_forked_child_does_not_keep_a_dead_holders_lock(tmp_path: Path):
    script = ("import os, sys, time; from pathlib import Path; from factory.core.lock import run_lock, holds\n"
              "with run_lock(Path(sys.argv[1])):\n"
              "    if os.fork() == 0:\n"
              "        print('child holds' if holds(Path(sys.argv[1])) else 'child free', flush=True); "
              "time.sleep(60); os._exit(0)\n"
              "    time.sleep(0.5); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "child free"
        assert holder.stdout.readline().strip() == "held"
        holder.kill()  # the holder only; its forked child lives on with a copy of its descriptors
        holder.wait()
        with run_lock(tmp_path):
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
