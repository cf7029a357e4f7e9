"""Run an untrusted Python program inside bubblewrap, with rlimits and a wall clock.

Layout inside the sandbox: read-only /usr (plus the /bin, /lib, /lib64 links), the
interpreter's own prefix read-only, a fresh size-capped tmpfs at /sandbox (the cwd,
holding main.py) and at /tmp, a private /proc and a minimal /dev. No network (a fresh
net namespace whose loopback is down), no host /tmp, /work or /root.

Why two modes:
- As root (how the factory runs), a user namespace would map the sandbox uid to host
  uid 0, and the kernel never applies RLIMIT_NPROC to host root, while file checks
  would still see the owner "root". So bwrap runs without a user namespace and
  `setpriv` drops to a dedicated, otherwise unused host uid (random per run, from
  SANDBOX_UID_BASE) with no capabilities: the fork limit then really holds, and any
  straggler can be found and killed by its uid.
- As another user, bwrap makes a user namespace (uid 65534 inside); the host uid is
  already unprivileged and RLIMIT_NPROC is counted per user namespace.

Memory: RLIMIT_AS is per process and counts only address space, so alone it lets a program
spread memory over children, memfds, SysV shared memory and socket buffers. Where this
process may make a memory cgroup (root, or a delegated cgroup v2 subtree; see
factory/verify/cgroup.py), each run gets one capped at memory_mb, which charges every page
of every process in it; a kernel OOM kill there is the reason "memory_limit". Elsewhere, or
with FACTORY_SANDBOX_CGROUP=0, rlimits bound the program to about 1.25 x memory_mb plus the
two tmpfs and a few MB of pipe and socket buffers: one task (no threads, no child
processes) with memory_mb of address space, files (memfds too) of at most memory_mb / 512,
whose cap then counts as the memory limit, and on x86_64 and aarch64 a seccomp filter that
refuses SysV IPC. `memory_limit_by` says which applied. Both ways at most 64 files are open.
"""

from __future__ import annotations

import errno
import math
import os
import platform
import re
import secrets
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache

from factory.core.errors import FactoryError
from factory.verify import cgroup

# A range no real account uses, so "every process with this uid" is only ever ours.
SANDBOX_UID_BASE = 1_500_000_000
SANDBOX_UID_SPAN = 1 << 20
MAX_OUTPUT_BYTES = 1 << 20
# Few files: each open fd can pin a socket buffer or a memfd that no rlimit counts.
MAX_OPEN_FILES = 64

_TOOLS = {"bwrap": "bubblewrap", "setpriv": "util-linux", "prlimit": "util-linux"}


@dataclass(frozen=True)
class SandboxResult:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    # None when the program exited 0; else "timeout", "memory_limit", "output_limit",
    # "file_size_limit" or "runtime_error".
    reason: str | None = None
    memory_limit_by: str = "rlimit"  # "cgroup": a memory cgroup held the whole program


def _missing_tools() -> list[str]:
    return [t for t in _TOOLS if shutil.which(t) is None]


@lru_cache(maxsize=8)
def _python_layout(python: str) -> tuple[str, str]:
    """(real interpreter binary, real base prefix): a venv python is only a symlink plus
    pyvenv.cfg, and binding the venv would expose the project tree, so we run the
    underlying install in isolated mode instead."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        prefix = sys.base_prefix
    else:
        out = subprocess.run(
            [python, "-I", "-c", "import sys; print(sys.base_prefix)"],
            capture_output=True, text=True, timeout=30, check=True,
        )
        prefix = out.stdout.strip()
    return os.path.realpath(python), os.path.realpath(prefix)


def _root_fs_args(prefix: str) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(d):  # merged-/usr systems: keep them links, bind nothing new
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    if not any(prefix == p or prefix.startswith(p + "/") for p in ("/usr", "/bin", "/lib", "/lib64")):
        # bwrap makes missing parents 0700, which the unprivileged uid could not cross.
        parts = prefix.strip("/").split("/")
        for i in range(1, len(parts)):
            args += ["--perms", "0755", "--dir", "/" + "/".join(parts[:i])]
        args += ["--ro-bind", prefix, prefix]
    return args


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid  # a /proc/PID dir is owned by its process's uid
    except FileNotFoundError:
        return None


def _pids_of_uid(uid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == uid]


def _kill_uid(uid: int, wait_s: float = 3.0) -> None:
    """SIGKILL everything still running as the sandbox uid and wait until it is gone."""
    deadline = time.monotonic() + wait_s
    while pids := _pids_of_uid(uid):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)


def _pick_uid() -> int:
    while True:
        uid = SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UID_SPAN)
        if not _pids_of_uid(uid):
            return uid


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    os.write(fd, data)  # memfd writes are never short for sizes we accept
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _classify(rc: int, stderr: str, timed_out: bool, over_output: bool) -> str | None:
    # bwrap reports a child killed by signal N as exit status 128 + N.
    sig = rc - 128 if rc > 128 else -rc if rc < 0 else 0
    if timed_out or sig == signal.SIGXCPU:
        return "timeout"
    if over_output:
        return "output_limit"
    if rc == 0:
        return None
    tail = (stderr.strip().splitlines() or [""])[-1]
    # Python ignores SIGXFSZ, so an over-size write shows up as EFBIG in the traceback.
    if sig == signal.SIGXFSZ or "[Errno 27]" in tail:
        return "file_size_limit"
    if "MemoryError" in tail or "Cannot allocate memory" in stderr[-2000:]:
        return "memory_limit"
    return "runtime_error"


def _rlimits(memory_mb: int, cpu: int, max_procs: int, fs_bytes: int, by_cgroup: bool) -> tuple[list[str], int]:
    """prlimit's options, and the file-size cap they set."""
    mem = memory_mb << 20
    if by_cgroup:
        procs, fsize = max_procs, fs_bytes
    else:
        # Nothing adds up memory across processes or outside the address space, so: one
        # task, and open files (held or in flight over a socket: 2 x 64) within mem / 4.
        procs, fsize = 1, min(fs_bytes, max(1 << 16, mem // (8 * MAX_OPEN_FILES)))
    # Soft < hard CPU so the program first gets SIGXCPU.
    return [
        f"--cpu={cpu}:{cpu + 1}", f"--as={mem}", f"--nproc={procs}", f"--nofile={MAX_OPEN_FILES}",
        f"--fsize={fsize}", "--core=0",
    ], fsize


# seccomp audit arch and the numbers of shmget, msgget, semget: SysV IPC objects outlive
# every mapping and fd, so no rlimit counts them; the fallback refuses to make any.
_SYSV_IPC = {"x86_64": (0xC000003E, (29, 68, 64)), "aarch64": (0xC00000B7, (194, 186, 190))}


@lru_cache(maxsize=1)
def _no_sysv_ipc_filter() -> bytes | None:
    """A classic-BPF seccomp program for bwrap --seccomp; None on other architectures."""
    if (arch := _SYSV_IPC.get(platform.machine())) is None:
        return None
    audit, nrs = arch
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    deny = 5 + len(nrs) + 1  # the last instruction; the one before it allows
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit), (ret, 0, 0, 0x00050000 | errno.ENOSYS),  # other ABIs (int 0x80)
            (ld, 0, 0, 0), (jge, deny - 5, 0, 0x40000000)]  # x32 numbers on x86_64
    prog += [(jeq, deny - (5 + i) - 1, 0, nr) for i, nr in enumerate(nrs)]
    prog += [(ret, 0, 0, 0x7FFF0000), (ret, 0, 0, 0x00050000 | errno.ENOSYS)]
    assert len(prog) == deny + 1
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


def _read_status(fd: int, buf: bytearray) -> bytearray:
    try:
        while chunk := os.read(fd, 65536):
            buf.extend(chunk)
    except BlockingIOError:
        pass
    return buf


def _stop(proc: subprocess.Popen, status_r: int, status: bytearray) -> None:
    """Kill the sandbox and wait for bwrap.

    The namespace's init goes first, so bwrap reaps it and exits by itself: killing bwrap
    first would orphan that init (a zombie wherever pid 1 does not reap). Killing bwrap's
    process group stays as the fallback; --die-with-parent then ends the namespace.
    """
    m = re.search(rb'"child-pid"\s*:\s*(\d+)', _read_status(status_r, status))
    if m:
        try:
            os.kill(int(m.group(1)), signal.SIGKILL)
            proc.wait(timeout=2)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _pump(proc: subprocess.Popen, out: bytearray, err: bytearray, deadline: float, cap: int) -> tuple[bool, bool]:
    """Read both pipes until EOF; returns (timed_out, over_output)."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return True, False
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if len(key.data) > cap:
                    return False, True  # stop it now: it may print forever
    return False, False


def run_sandboxed(
    program: str,
    stdin: str = "",
    *,
    timeout_s: float = 10,
    memory_mb: int = 512,
    cpu_s: int | None = None,
    max_procs: int = 64,
    max_file_mb: int = 16,
    python: str = sys.executable,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    memory_cgroup: bool = True,
) -> SandboxResult:
    """Run `program` with `python -I` in a fresh sandbox and return what it printed.

    memory_cgroup=False (or FACTORY_SANDBOX_CGROUP=0) skips the memory cgroup and uses the
    rlimit fallback even where a cgroup could be made.
    """
    if missing := _missing_tools():
        pkgs = " ".join(sorted({_TOOLS[t] for t in missing}))
        raise FactoryError(f"the code sandbox needs {', '.join(missing)}: run `apt-get install {pkgs}`")
    interpreter, prefix = _python_layout(python)
    cpu = cpu_s if cpu_s is not None else math.ceil(timeout_s) + 1
    fs_bytes = max_file_mb << 20
    as_root = os.geteuid() == 0
    uid = _pick_uid() if as_root else None
    cg = cgroup.create(memory_mb << 20) if memory_cgroup and cgroup.enabled() else None
    limits, fsize = _rlimits(memory_mb, cpu, max_procs, fs_bytes, cg is not None)

    prog_fd = _memfd("program", program.encode())
    stdin_fd = _memfd("stdin", stdin.encode())
    bpf = None if cg else _no_sysv_ipc_filter()
    bpf_fd = _memfd("seccomp", bpf) if bpf else None
    status_r, status_w = os.pipe()
    os.set_blocking(status_r, False)
    # bwrap joins the cgroup before it starts anything, so every descendant is in it too.
    cmd = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', cg.procs] if cg else []
    cmd += ["bwrap"]
    if as_root:
        # No user namespace on purpose (see module docstring); everything else unshared.
        cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        cmd += ["--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"]
    cmd += [
        "--die-with-parent", "--new-session", "--hostname", "sandbox",
        *_root_fs_args(prefix),
        # tmpfs rather than a host dir: a program cannot fill the host disk, and the
        # size cap bounds the RAM that file writes can take.
        "--perms", "1777", "--size", str(fs_bytes), "--tmpfs", "/sandbox",
        "--perms", "0444", "--ro-bind-data", str(prog_fd), "/sandbox/main.py",
        "--perms", "1777", "--size", str(fs_bytes), "--tmpfs", "/tmp",
        "--proc", "/proc", "--dev", "/dev", "--chdir", "/sandbox",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/sandbox",
        "--setenv", "LC_ALL", "C.UTF-8",
        "--json-status-fd", str(status_w),
        *(["--seccomp", str(bpf_fd)] if bpf_fd is not None else []),
        "--",
    ]
    if as_root:
        cmd += [
            "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        ]
    # Limits are set inside, after the uid switch, so they bind only the program (and
    # bwrap itself is never starved).
    cmd += ["prlimit", *limits, "--", interpreter, "-I", "main.py"]

    try:
        proc = subprocess.Popen(
            cmd, stdin=stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(prog_fd, status_w, *([bpf_fd] if bpf_fd is not None else [])),
            start_new_session=True, bufsize=0,
        )
    except BaseException:
        os.close(status_r)
        if cg:
            cg.remove()
        raise
    finally:
        for fd in (prog_fd, stdin_fd, status_w, bpf_fd):
            if fd is not None:
                os.close(fd)
    out, err, status = bytearray(), bytearray(), bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        timed_out, over_output = _pump(proc, out, err, deadline, max_output_bytes)
        if timed_out or over_output:
            _stop(proc, status_r, status)
        try:
            rc = proc.wait(timeout=max(0.5, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # closed its pipes but ran on
            _stop(proc, status_r, status)
            rc = proc.returncode
            timed_out = True
    finally:
        if proc.poll() is None:  # we are unwinding from an error: leave nothing behind
            _stop(proc, status_r, status)
        if uid is not None:
            _kill_uid(uid)
        oom_kills = cg.oom_kills() if cg else 0
        if cg:
            cg.remove()
        proc.stdout.close()
        proc.stderr.close()
        _read_status(status_r, status)
        os.close(status_r)

    if b"child-pid" not in status:
        # bwrap failed before starting the program: a host set-up problem, not a verdict.
        first = bytes(err).decode(errors="replace").strip().splitlines()[:1] or [f"exit status {rc}"]
        raise FactoryError(f"the code sandbox could not start: {first[0]}")
    stdout = bytes(out[:max_output_bytes]).decode(errors="replace")
    stderr = bytes(err[:max_output_bytes]).decode(errors="replace")
    reason = _classify(rc, stderr, timed_out, over_output)
    if oom_kills:  # whichever process the kernel killed, and whatever the rest did next
        reason = "memory_limit"
    elif reason == "file_size_limit" and fsize < fs_bytes:
        reason = "memory_limit"  # the fallback's file cap is a share of the memory budget
    return SandboxResult(rc, stdout, stderr, timed_out, reason, "cgroup" if cg else "rlimit")


@lru_cache(maxsize=1)
def sandbox_available() -> bool:
    """True when bwrap and friends are installed and a trivial program runs inside."""
    if _missing_tools():
        return False
    try:
        res = run_sandboxed("print('ok')", timeout_s=10)
    except (FactoryError, OSError, subprocess.SubprocessError):
        return False
    return res.returncode == 0 and res.stdout.strip() == "ok"
