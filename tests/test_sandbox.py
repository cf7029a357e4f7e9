"""The code verifier and its bubblewrap sandbox: verdicts, limits and escape attempts.

Every attack test also checks that nothing of the sandbox is still running afterwards,
since a verifier that leaks processes would slowly take the host down during a long run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from factory.core.errors import FactoryError
from factory.verify import sandbox
from factory.verify.code import extract_program, verify_code
from factory.verify.sandbox import run_sandboxed
from tests.helpers import record_sandbox_uids

if shutil.which("bwrap") is None:
    pytest.skip("bubblewrap is not installed (apt-get install -y bubblewrap)", allow_module_level=True)

pytestmark = pytest.mark.timeout(60)


_ISSUED_UIDS: set[int] = set()


@pytest.fixture(autouse=True)
def _record_sandbox_uids(monkeypatch):
    """Remember the host uids this test's sandboxes ran as, so that the survivor check
    sees only our own processes even while another test run uses the sandbox."""
    record_sandbox_uids(monkeypatch, _ISSUED_UIDS)


def _sandbox_processes() -> list[str]:
    """Live (non-zombie) processes left by this test: one running as a uid its sandboxes
    got, a bwrap it started, or (not root: no per-run uid) a sandboxed interpreter."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{name}").st_uid
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, ppid = fields[0], int(fields[1])
        if state == "Z":
            continue
        ours = uid in _ISSUED_UIDS
        ours |= os.path.basename(argv[0]) == b"bwrap" and ppid == os.getpid()
        ours |= os.geteuid() != 0 and uid == os.geteuid() and argv[1:3] == [b"-I", b"main.py"]
        if ours:
            found.append(f"{name} uid={uid} {b' '.join(argv).decode(errors='replace')[:80]}")
    return found


def assert_no_survivors() -> None:
    assert _ISSUED_UIDS or os.geteuid() != 0, "no sandbox ran"
    deadline = time.monotonic() + 1.0  # slack for the kernel to reap a dying namespace
    while (left := _sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"sandbox processes still running: {left}"


# --- verdicts -------------------------------------------------------------------------

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
CASES = [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4", "output": "6  \n\n"}]


def test_correct_program_passes_stdin_cases():
    completion = f"<think>draft:\n```python\nprint(0)\n```</think>\nFinal:\n```python\n{ADD}```\n"
    assert extract_program(completion) == ADD
    assert verify_code(completion, CASES).ok
    assert verify_code(ADD, json.dumps({"cases": CASES})).ok


def test_correct_program_passes_asserts_and_failing_assert_is_named():
    prog = "def add(a, b):\n    return a + b\n"
    assert verify_code(prog, ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]).ok
    assert verify_code(prog, {"asserts": ["assert add(2, 2) == 4"]}).ok
    bad = verify_code(prog, ["assert add(1, 2) == 3", "assert add(2, 2) == 5"])
    assert (bad.ok, bad.reason) == (False, "wrong_output")
    assert "assert 2/2" in bad.detail and "add(2, 2) == 5" in bad.detail


def test_wrong_output():
    v = verify_code("print(int(input()) * 2)", [{"input": "2", "output": "4"}, {"input": "3", "output": "7"}])
    assert (v.ok, v.reason) == (False, "wrong_output")
    assert "case 2/2" in v.detail and "'7'" in v.detail and "'6'" in v.detail


def test_syntax_error_is_runtime_error():
    v = verify_code("def f(:\n    pass\n", [{"input": "", "output": ""}])
    assert (v.ok, v.reason) == (False, "runtime_error")
    assert "SyntaxError" in v.detail


def test_exiting_before_the_asserts_does_not_pass():
    v = verify_code("import os\nos._exit(0)\ndef f():\n    return 1\n", ["assert f() == 2"])
    assert (v.ok, v.reason) == (False, "runtime_error")


def test_no_code_no_tests_bad_tests():
    assert verify_code("I cannot solve this.\n```cpp\nint main() {}\n```", ["assert 1"]).reason == "no_code"
    assert verify_code(ADD, []).reason == "no_tests"
    assert verify_code(ADD, "{not json").reason == "bad_tests"
    assert verify_code(ADD, [{"input": 1, "output": "1"}]).reason == "bad_tests"


def test_missing_bwrap_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(FactoryError, match="apt-get install bubblewrap"):
        run_sandboxed("print(1)")


# --- attacks --------------------------------------------------------------------------


def test_runs_unprivileged_without_capabilities():
    res = run_sandboxed(
        "import os\nprint(os.getuid(), os.geteuid(), os.getgid())\n"
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])\n"
        "print(sorted(os.listdir('/')), os.listdir('/root'))"
    )
    assert res.returncode == 0, res.stderr
    ids, caps, listing = res.stdout.splitlines()
    assert all(int(i) != 0 for i in ids.split())
    assert int(caps, 16) == 0
    assert "'work'" not in listing and "'home'" not in listing and "'etc'" not in listing
    assert_no_survivors()


def test_infinite_loop_times_out():
    t0 = time.monotonic()
    v = verify_code("while True:\n    pass\n", [{"input": "", "output": ""}], timeout_s=1.5)
    assert (v.ok, v.reason) == (False, "timeout")
    assert time.monotonic() - t0 < 1.5 + 2
    assert_no_survivors()


def test_printing_forever_is_cut_off():
    res = run_sandboxed("while True:\n    print('x' * 1000)\n", timeout_s=5, max_output_bytes=1 << 16)
    assert res.reason == "output_limit" and not res.timed_out
    assert len(res.stdout) <= 1 << 16
    assert_no_survivors()


def test_huge_allocation_hits_memory_limit():
    t0 = time.monotonic()
    res = run_sandboxed("x = bytearray(10 * 1024**3)\nprint('allocated')", memory_mb=256, timeout_s=10)
    assert res.reason == "memory_limit", res
    assert "allocated" not in res.stdout and "MemoryError" in res.stderr
    assert time.monotonic() - t0 < 5
    assert_no_survivors()
    assert run_sandboxed("print(sum(range(10)))").stdout == "45\n"  # and the host carries on


def test_fork_bomb_is_stopped():
    # Linear and capped at 300, so even with the limit broken it cannot hurt the host.
    bomb = (
        "import os, time\nmade = 0\n"
        "for _ in range(300):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        made += 1\n"
        "    except OSError as e:\n"
        "        print('blocked', made, e.errno, flush=True)\n"
        "        break\n"
        "time.sleep(30)\n"
    )
    t0 = time.monotonic()
    res = run_sandboxed(bomb, timeout_s=2, max_procs=16)
    assert res.reason == "timeout" and time.monotonic() - t0 < 2 + 2
    assert res.stdout.startswith("blocked"), f"the fork limit did not hold: {res.stdout!r}"
    _, made, errno = res.stdout.split()
    assert int(made) < 16 and int(errno) == 11  # EAGAIN from RLIMIT_NPROC
    assert_no_survivors()


def test_writes_outside_the_sandbox_fail(tmp_path):
    tag = uuid.uuid4().hex
    targets = [f"/work/pwned-{tag}", f"/root/pwned-{tag}", f"/tmp/pwned-{tag}",
               str(tmp_path / "pwned"), f"{sys.base_prefix}/pwned-{tag}", "/usr/pwned", "/sandbox/main.py"]
    prog = (
        f"for p in {targets!r}:\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "        print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print('denied', p, type(e).__name__)\n"
    )
    res = run_sandboxed(prog)
    assert res.returncode == 0, res.stderr
    wrote = [line.split()[1] for line in res.stdout.splitlines() if line.startswith("WROTE")]
    assert wrote == [f"/tmp/pwned-{tag}"]  # the sandbox's own tmpfs, not the host's /tmp
    for p in targets[:-1]:
        assert not os.path.exists(p), p
    assert_no_survivors()


def test_reads_outside_the_sandbox_fail(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(f"SECRET-{uuid.uuid4().hex}")
    targets = [str(secret), "/etc/shadow", "/etc/passwd", str(Path(__file__).resolve()), "/root/.bashrc"]
    prog = (
        f"for p in {targets!r}:\n"
        "    try:\n"
        "        print('READ', p, open(p).read()[:100])\n"
        "    except OSError as e:\n"
        "        print('denied', p, type(e).__name__)\n"
    )
    res = run_sandboxed(prog)
    assert res.returncode == 0, res.stderr
    assert "READ" not in res.stdout and secret.read_text() not in res.stdout
    assert res.stdout.count("denied") == len(targets)
    assert_no_survivors()


def test_network_is_unreachable():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    prog = (
        "import socket\n"
        f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        socket.create_connection(addr, timeout=1).close()\n"
        "        print('CONNECTED', addr)\n"
        "    except OSError as e:\n"
        "        print('refused', addr, type(e).__name__)\n"
    )
    try:
        res = run_sandboxed(prog, timeout_s=5)
        assert res.returncode == 0, res.stderr
        assert "CONNECTED" not in res.stdout and res.stdout.count("refused") == 2
        with pytest.raises(BlockingIOError):
            listener.accept()  # the host listener never saw a connection
    finally:
        listener.close()
    assert_no_survivors()
