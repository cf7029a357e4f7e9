"""Attacks on the code verifier: memory past the limit, forged verdicts, slow samples.

Each probe here is a program that a reward-hacking policy could write. Memory probes run
twice, through the memory cgroup where this machine allows one and through the rlimit
fallback (forced with FACTORY_SANDBOX_CGROUP=0), and check what is observable either way:
the program is not ok and never got to hold the memory it asked for.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from factory.verify import sandbox
from factory.verify.code import verify_code
from factory.verify.sandbox import run_sandboxed
from tests.helpers import record_sandbox_uids

if not sandbox.sandbox_available():
    pytest.skip("the code sandbox cannot run here (apt-get install -y bubblewrap util-linux)", allow_module_level=True)

pytestmark = pytest.mark.timeout(60)

_UIDS: set[int] = set()


@pytest.fixture(autouse=True)
def _no_leftovers(monkeypatch):
    """After every probe: no process of its sandboxes runs on, no cgroup of ours remains."""
    record_sandbox_uids(monkeypatch, _UIDS)
    before = _our_cgroups()
    yield
    deadline = time.monotonic() + 2
    while (alive := [p for p in os.listdir("/proc") if p.isdigit() and _uid(p) in _UIDS]) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, f"sandbox processes still running: {alive}"
    assert _our_cgroups() <= before, "a sandbox cgroup was left behind"


def _uid(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return None


def _our_cgroups() -> set[str]:
    """The sandbox cgroups next to this process, in every hierarchy it is in."""
    found = set()
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrl, path = line.split(":", 2)
        v2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        for root in [f"/sys/fs/cgroup/{c}" for c in ctrl.split(",")] if ctrl else v2:
            found |= {str(p) for p in Path(root + path).glob("factory-sandbox-*")}
    return found


def _cgroup_possible() -> bool:
    """Can this process make a memory cgroup (v1) next to itself? Checked by hand, not by the module."""
    if os.geteuid() != 0:
        return False
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrl, path = line.split(":", 2)
        if "memory" in ctrl.split(","):
            d = Path("/sys/fs/cgroup/memory" + path) / f"probe-{os.getpid()}"
            try:
                d.mkdir()
            except OSError:
                return False
            d.rmdir()
            return True
    return False


@pytest.fixture(params=["default", "rlimit"])
def mode(request, monkeypatch) -> str:
    """The memory mechanism the sandbox should use: the machine's best, or the forced fallback."""
    if request.param == "rlimit":
        monkeypatch.setenv("FACTORY_SANDBOX_CGROUP", "0")
        return "rlimit"
    return "cgroup" if _cgroup_possible() else "rlimit"


ADD_CASE = [{"input": "1 2\n", "output": "3\n"}]

# --- 1. memory: the limit holds for the whole program -------------------------------------

# 64 memfds of 12 MB (each under the 16 MB file cap): 768 MB, three times the limit.
MEMFD_HOARD = """
import os
chunk, fds = b"x" * (1 << 20), []
for i in range(64):
    fd = os.memfd_create(f"m{i}")
    for _ in range(12):
        os.write(fd, chunk)
    fds.append(fd)
print("HELD", len(fds) * 12, "MB", flush=True)
print(sum(map(int, input().split())))
"""

# Four children of 200 MB each: every one under the per-process limit, 800 MB together.
CHILDREN = """
import os, sys, time
r, w = os.pipe()
for i in range(4):
    if os.fork() == 0:
        block = b"x" * (200 << 20)
        os.write(w, b"1")
        time.sleep(1)
        os._exit(0)
os.close(w)
got = 0
while got < 4 and os.read(r, 1):
    got += 1
if got < 4:
    sys.exit(f"only {got} children could hold their memory")
print("HELD", got * 200, "MB", flush=True)
print(sum(map(int, input().split())))
"""

# Socket buffers are neither address space nor files: thousands of full socketpairs.
MANY_FDS = """
import socket
held, socks, chunk = 0, [], b"x" * 65536
while held < (512 << 20):
    a, b = socket.socketpair()
    a.setblocking(False)
    socks.append((a, b))
    while True:
        try:
            held += a.send(chunk)
        except BlockingIOError:
            break
print("HELD", held >> 20, "MB in", 2 * len(socks), "fds", flush=True)
print(sum(map(int, input().split())))
"""

# SysV shared memory outlives its mappings: attach, fill, detach, repeat (600 MB).
SYSV_SHM = """
import ctypes, ctypes.util, os
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.shmat.restype, libc.shmat.argtypes = ctypes.c_void_p, [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
for i in range(6):
    sid = libc.shmget(0, 100 << 20, 0o1600)
    if sid < 0:
        raise OSError(ctypes.get_errno(), "shmget: " + os.strerror(ctypes.get_errno()))
    addr = libc.shmat(sid, None, 0)
    ctypes.memset(addr, 1, 100 << 20)
    libc.shmdt(ctypes.c_void_p(addr))
print("HELD", 600, "MB", flush=True)
print(sum(map(int, input().split())))
"""


def test_memfd_hoarding_past_the_limit(mode):
    t0 = time.monotonic()
    res = run_sandboxed(MEMFD_HOARD, "1 2\n", memory_mb=256, timeout_s=20)
    assert "HELD" not in res.stdout, f"the program held {res.stdout.split()[1:2]} MB with a 256 MB limit"
    assert res.reason == "memory_limit", res
    assert res.memory_limit_by == mode
    assert time.monotonic() - t0 < 10
    v = verify_code(MEMFD_HOARD, ADD_CASE, memory_mb=256, timeout_s=20)
    assert (v.ok, v.reason) == (False, "memory_limit") and f"({mode})" in v.detail, v


def test_children_together_past_the_limit(mode):
    res = run_sandboxed(CHILDREN, "1 2\n", memory_mb=256, timeout_s=20)
    assert "HELD" not in res.stdout, "four children held 800 MB with a 256 MB limit"
    assert res.reason is not None and res.memory_limit_by == mode
    if mode == "cgroup":
        assert res.reason == "memory_limit", res
    else:  # the fallback runs the program as a single task: the first fork is refused
        assert res.reason == "runtime_error" and "Resource temporarily unavailable" in res.stderr, res
    assert not verify_code(CHILDREN, ADD_CASE, memory_mb=256, timeout_s=20).ok


def test_many_fds_cannot_hold_kernel_memory(mode):
    res = run_sandboxed(MANY_FDS, "1 2\n", memory_mb=128, timeout_s=20)
    assert "HELD" not in res.stdout, f"socket buffers held memory past the limit: {res.stdout!r}"
    assert res.reason in ("runtime_error", "memory_limit") and "Too many open files" in res.stderr, res
    assert not verify_code(MANY_FDS, ADD_CASE, memory_mb=128, timeout_s=20).ok


def test_sysv_shared_memory_past_the_limit(mode):
    res = run_sandboxed(SYSV_SHM, "1 2\n", memory_mb=256, timeout_s=20)
    assert "HELD" not in res.stdout, "SysV segments held 600 MB with a 256 MB limit"
    assert res.memory_limit_by == mode
    if mode == "cgroup":
        assert res.reason == "memory_limit", res
    else:  # the fallback's seccomp filter refuses shmget
        assert res.reason == "runtime_error" and "shmget" in res.stderr, res
    assert not verify_code(SYSV_SHM, ADD_CASE, memory_mb=256, timeout_s=20).ok


def test_fallback_is_chosen_by_parameter_and_still_runs_honest_programs():
    big = "x = b'x' * (150 << 20)\nprint(len(x) >> 20)\n"  # 150 MB in one process: within 256
    res = run_sandboxed(big, memory_mb=256, memory_cgroup=False)
    assert (res.returncode, res.stdout, res.memory_limit_by) == (0, "150\n", "rlimit"), res
    over = run_sandboxed("x = b'x' * (300 << 20)\n", memory_mb=256, memory_cgroup=False)
    assert over.reason == "memory_limit" and over.memory_limit_by == "rlimit"


@pytest.mark.skipif(not _cgroup_possible(), reason="no memory cgroup can be made here (not root, or none mounted)")
def test_the_cgroup_is_used_where_the_machine_allows_one():
    res = run_sandboxed("print('hello')", memory_mb=256)
    assert res.returncode == 0 and res.memory_limit_by == "cgroup", res
    ok = run_sandboxed("x = b'x' * (150 << 20)\nprint(len(x) >> 20)\n", memory_mb=256)
    assert (ok.stdout, ok.reason) == ("150\n", None), ok


# --- 2. verdicts cannot be forged from inside the sandbox --------------------------------

ADD_ASSERTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(-1, 1) == 0"]

# Every probe defines a wrong add(); each fooled the old token-after-the-asserts check.
PROBES = {
    "token_read_at_import": """
import os, re, sys
def add(a, b):
    return a - b
for name in os.listdir("/sandbox"):
    for tok in re.findall(r"'([0-9a-f]{32})'", open("/sandbox/" + name, errors="replace").read()):
        print(tok)
sys.stdout.flush()
os._exit(0)
""",
    "exit_inside_the_call": """
import os, re
def add(a, b):
    for tok in re.findall(r"'([0-9a-f]{32})'", open("/sandbox/main.py").read()):
        print(tok, flush=True)
    os._exit(0)
""",
    "expected_values_read_from_files": """
import os, re
SEEN = ""
for root in ("/sandbox", "/tmp"):
    for name in os.listdir(root):
        SEEN += open(os.path.join(root, name), errors="replace").read()
def add(a, b):
    m = re.search(rf"add\\({a}, {b}\\) == (-?\\d+)", SEEN)
    return int(m.group(1)) if m else 0
""",
    "lying_eq": """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
    def __repr__(self): return "3"
class LyingInt(int):
    def __eq__(self, other): return True
    __hash__ = int.__hash__
def add(a, b):
    return Anything() if a == 1 else LyingInt(0)
""",
    "monkeypatched_builtins": """
import builtins, json, os, re, sys
TOKENS = re.findall(r"'([0-9a-f]{32})'", open("/sandbox/main.py").read())
def say(*args, **kw):
    os.write(1, "".join(t + "\\n" for t in TOKENS).encode())
builtins.print = say
builtins.repr = lambda obj: "3"
builtins.isinstance = lambda obj, cls: True
json.dumps = lambda *a, **k: "true"
json.JSONEncoder.encode = lambda self, obj: "true"
def hook(*exc):
    say()
    os._exit(0)
sys.excepthook = hook
def add(a, b):
    return a - b
""",
    "fake_results_before_the_real_ones": """
import atexit, os, re
TOKENS = re.findall(r"'([0-9a-f]{32})'", open("/sandbox/main.py").read())
fake = "".join(f'[{i}, "value", {v}]\\n' for i, v in enumerate([3, 4, 0])) + '"end"\\n'
fake += "".join(t + "\\n" for t in TOKENS)
for fd in range(1, 10):
    try:
        os.write(fd, fake.encode())
    except OSError:
        pass
atexit.register(os._exit, 0)
def add(a, b):
    return a - b
""",
}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_forged_verdicts_are_wrong(name):
    v = verify_code(PROBES[name], ADD_ASSERTS, timeout_s=10)
    assert not v.ok, f"{name} passed the asserts with a wrong add()"
    assert v.reason in ("wrong_output", "runtime_error"), v


def test_a_failing_assert_names_the_test_and_the_value():
    v = verify_code("def add(a, b):\n    return a - b\n", ADD_ASSERTS)
    assert (v.ok, v.reason) == (False, "wrong_output"), v
    assert "assert 1/3" in v.detail and "add(1, 2) == 3" in v.detail and "gave -1" in v.detail


def test_honest_programs_still_pass_asserts():
    chatty = "def add(a, b):\n    return a + b\nprint('debug:', add(1, 2))\nprint('[0, \"value\", 99]')\n"
    assert verify_code(chatty, ADD_ASSERTS).ok, verify_code(chatty, ADD_ASSERTS)
    prog = (
        "import math\n"
        "def pair(x):\n    return (x, x * 2)\n"
        "def uniq(xs):\n    return set(xs)\n"
        "def stats(xs):\n    return {'n': len(xs), 'mean': sum(xs) / len(xs)}\n"
        "def root(x):\n    return math.sqrt(x)\n"
        "def nothing():\n    return None\n"
        "def max(xs):  # shadows the builtin on purpose\n    return 0\n"
    )
    tests = [
        "assert pair(2) == (2, 4)",
        "assert uniq([1, 1, 2]) == {1, 2}",
        "assert stats([1, 2, 3]) == {'n': 3, 'mean': 2.0}",
        "import math\nassert math.isclose(root(2), 1.41421356, rel_tol=1e-6)",
        "assert abs(root(9) - 3) < 1e-9",
        "assert nothing() is None",
        "assert not uniq([])",
        "assert sorted(uniq([3, 1])) == [1, 3] and len(pair(1)) == 2",
        "assert max([1, 2]) == 0",  # the program's own max, not the builtin
    ]
    v = verify_code(prog, tests)
    assert v.ok, v
    bad = verify_code(prog, ["assert pair(2) == [2, 4]"])  # a tuple is not a list, as in Python
    assert (bad.ok, bad.reason) == (False, "wrong_output")


def test_asserts_that_compare_inside_the_sandbox_are_refused():
    v = verify_code("def f(x):\n    return x\n", ["assert all(f(i) == i for i in range(3))"])
    assert (v.ok, v.reason) == (False, "bad_tests") and "assert 1/1" in v.detail, v


# --- 3. the time limit is per sample ----------------------------------------------------


def test_time_limit_is_for_the_whole_sample():
    slow = "import time\ntime.sleep(1)\nprint(sum(map(int, input().split())))\n"
    cases = [{"input": f"{i} 1\n", "output": f"{i + 1}\n"} for i in range(8)]
    t0 = time.monotonic()
    v = verify_code(slow, cases, timeout_s=3)
    took = time.monotonic() - t0
    assert (v.ok, v.reason) == (False, "timeout"), v
    assert took < 5, f"8 cases of 1 s took {took:.1f}s under a 3 s limit per sample"
