"""Hostile programs in the real bubblewrap sandbox, as the harness runs them (as root here):
each one is contained, and nothing is left behind — no process of the sandbox's host uid, no
cgroup, no temporary folder, no file outside.

Skipped only where the sandbox's own probe says bubblewrap cannot run here (missing, too old,
user namespaces blocked) and $CI is unset; in CI that fails. The tests of whole-tree limits
need root (cgroups); they are skipped for a non-root user."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import harness
from harness.tools import sandbox
from harness.tools.cgroups import hierarchies
from harness.tools.sandbox import (
    FSIZE_LIMIT_BYTES,
    INNER_UID,
    NOFILE_LIMIT,
    NPROC_LIMIT,
    OUTPUT_LIMIT_BYTES,
    TMPFS_BYTES,
    SandboxResult,
    bwrap_features,
    find_bwrap,
    run_sandboxed,
)

MiB = 1024 * 1024
ROOT = os.geteuid() == 0

pytestmark = pytest.mark.usefixtures("needs_bwrap")
needs_root = pytest.mark.skipif(not ROOT, reason="whole-tree limits use cgroups, made by root")

Run = Callable[..., SandboxResult]
FORK_BOMB = """
import os, time
made = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    made += 1
print(made, flush=True)
"""
"""Forks 200 sleeping children, or as many as it may; prints how many it made."""


def _uid_of(pid: str) -> list[int] | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        return None
    return None


def _host_processes(uid: int | None = None, marker: str | None = None) -> list[int]:
    """Host pids running as `uid`, or with `marker` in their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        if uid is not None and (_uid_of(entry.name) or [None])[0] == uid:
            found.append(int(entry.name))
        elif marker is not None:
            with contextlib.suppress(OSError):
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def _describe(pid: int) -> str:
    """A process's state, parent and command line, for a failure message."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()[:80]
    except OSError:
        return f"{pid} (gone)"
    keep = [line for line in status if line.startswith(("State", "PPid", "NSpid"))]
    return f"{pid} {keep} {cmdline!r}"


def _own_leftovers() -> list[str]:
    """Cgroups and temporary folders of this process's sandboxes that still exist."""
    mine = f"-{os.getpid()}-"
    left = [
        str(h.base / e.name)
        for h in hierarchies()
        for e in h.base.iterdir()
        if e.name.startswith("harness-sandbox" + mine)
    ]
    tmp = Path(tempfile.gettempdir())
    left += [str(e) for e in tmp.iterdir() if e.name.startswith("harness-") and mine in e.name]
    return left


@pytest.fixture
def run() -> Iterator[Run]:
    """Run programs in the sandbox; afterwards assert each was bwrap-sandboxed and left
    nothing behind."""
    results: list[SandboxResult] = []

    def go(
        code: str, *, cpu_s: float = 5, memory_bytes: int = 256 * MiB, wall_s: float = 15
    ) -> SandboxResult:
        r = run_sandboxed(
            textwrap.dedent(code), cpu_s=cpu_s, memory_bytes=memory_bytes, wall_s=wall_s
        )
        results.append(r)
        return r

    yield go
    for r in results:
        assert r.backend == "bwrap", r
        assert r.host_uid is not None and r.host_uid != 0
        left = _host_processes(uid=r.host_uid)
        assert left == [], f"outlived its call: {[_describe(pid) for pid in left]}"
    assert _own_leftovers() == []


def _lines(r: SandboxResult) -> list[str]:
    return r.stdout.strip().splitlines()


@needs_root
def test_1_fork_bomb_is_capped_for_the_whole_tree(run: Run) -> None:
    r = run(FORK_BOMB)
    made = int(_lines(r)[-1])
    assert 0 < made < NPROC_LIMIT, r
    assert "pids.max" in r.enforced["processes"]
    assert r.tree_processes_peak is None or r.tree_processes_peak <= NPROC_LIMIT
    assert r.wall_s < 10  # the sleeping children died with the namespace, unwaited for


@needs_root
def test_2_forks_share_one_memory_limit(run: Run) -> None:
    limit = 512 * MiB
    r = run(
        """
        import os, time
        kids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                block = b"x" * (400 << 20)  # every page touched
                time.sleep(1)
                os._exit(0)
            kids.append(pid)
        print([os.waitpid(pid, 0)[1] for pid in kids], flush=True)
        """,
        memory_bytes=limit,
    )
    assert r.status == "memory_limit", r
    assert "whole tree" in r.enforced["memory"]
    assert r.tree_memory_peak_bytes is not None and r.tree_memory_peak_bytes <= limit


def test_3_setsid_double_fork_child_dies_with_the_call(run: Run) -> None:
    marker = f"harness-orphan-{secrets.token_hex(6)}"
    r = run(
        f"""
        import os, sys
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)",
                                          {marker!r}])
            os._exit(0)
        os.wait()
        print("left a daemon", flush=True)
        """
    )
    assert _lines(r) == ["left a daemon"], r
    assert _host_processes(marker=marker) == []


def test_4_host_unix_sockets_are_out_of_reach(run: Run) -> None:
    token = secrets.token_hex(6)
    paths = [Path(tempfile.gettempdir()) / f"harness-test-{token}.sock"]
    if Path("/run").is_dir():
        paths.append(Path("/run") / f"harness-test-{token}.sock")
    abstract = f"\0harness-test-{token}"
    servers = []
    try:
        for address in [*map(str, paths), abstract]:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(address)
            s.listen()
            s.setblocking(False)
            servers.append(s)
        r = run(
            f"""
            import socket
            for address in {[*map(str, paths), abstract]!r}:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(address)
                    print("connected", repr(address))
                except OSError as exc:
                    print("refused", type(exc).__name__)
            """
        )
        assert [line.split()[0] for line in _lines(r)] == ["refused"] * len(servers), r
        for s in servers:
            with pytest.raises(BlockingIOError):
                s.accept()
    finally:
        for s in servers:
            s.close()
        for p in paths:
            p.unlink(missing_ok=True)


def test_5_etc_shadow_cannot_be_read(run: Run) -> None:
    r = run(
        """
        for path in ("/etc/shadow", "/etc/passwd", "/etc/hostname"):
            try:
                print("read", path, open(path).read()[:20])
            except OSError as exc:
                print("denied", path, type(exc).__name__)
        """
    )
    assert all(line.startswith("denied") for line in _lines(r)), r
    assert "root:" not in r.stdout


def test_6_no_process_environment_of_the_host_is_readable() -> None:
    """The caller was started with an API key in its environment (as a harness is); the
    program tries the caller's /proc/<pid>/environ, its parent's and every one it can see."""
    secret = f"sk-{secrets.token_hex(12)}"
    program = textwrap.dedent(
        """
        import glob, os, sys
        print(sorted(os.environ))
        for path in [f"/proc/{CALLER}/environ", f"/proc/{os.getppid()}/environ",
                     *glob.glob("/proc/*/environ")]:
            try:
                print(path, open(path, "rb").read())
            except OSError as exc:
                print(path, type(exc).__name__)
        """
    )
    caller = (
        "import json, os, sys\n"
        "from harness.tools.sandbox import run_sandboxed\n"
        "code = 'CALLER = %d\\n' % os.getpid() + sys.argv[1]\n"
        "r = run_sandboxed(code, cpu_s=5, memory_bytes=1 << 28, wall_s=15)\n"
        "print(json.dumps([r.status, r.backend, r.stdout, r.stderr]))\n"
    )
    env = {**os.environ, "HARNESS_API_KEY": secret}
    done = subprocess.run(
        [sys.executable, "-c", caller, program], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    status, backend, out, err = json.loads(done.stdout)
    assert (status, backend) == ("ok", "bwrap"), err
    assert "/environ" in out
    assert secret not in out + err
    assert "HARNESS_API_KEY" not in out


def test_7_writes_outside_its_folder_fail(run: Run) -> None:
    token = secrets.token_hex(6)
    host_paths = [
        Path(tempfile.gettempdir()) / f"harness-x-{token}",
        Path("/var/tmp") / f"harness-x-{token}",
        Path.home() / f"harness-x-{token}",
    ]
    targets = [*map(str, host_paths), f"/harness-x-{token}", "/python/bin/harness-x"]
    targets.append("/python/bin/python3")
    r = run(
        f"""
        for path in {targets!r}:
            try:
                with open(path, "wb") as f:
                    for _ in range(48):
                        f.write(b"x" * (1 << 20))
                print("wrote", path)
            except OSError as exc:
                print("failed", path, type(exc).__name__)
        """
    )
    assert len(_lines(r)) == len(targets), r
    # /tmp and HOME are the sandbox's own tmpfs: capped there, never the host's.
    for line in _lines(r):
        verb, path = line.split()[:2]
        assert verb == "failed" or path.startswith(tempfile.gettempdir()), r
    assert not any(p.exists() for p in host_paths)


def test_8_writing_48_mib_inside_is_capped(run: Run) -> None:
    r = run(
        """
        import os
        written = 0
        try:
            with open(os.path.join(os.environ["HOME"], "big"), "wb") as f:
                for _ in range(48):
                    written += f.write(b"x" * (1 << 20))
                    f.flush()
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
        print(written)
        """
    )
    assert int(_lines(r)[-1]) <= min(TMPFS_BYTES, FSIZE_LIMIT_BYTES), r
    assert len(_lines(r)) == 2  # an error was raised


def test_9_there_is_no_shell(run: Run) -> None:
    r = run(
        """
        import os, subprocess
        print("system", os.system("id > /tmp/id"))
        for argv in (["/bin/sh", "-c", "id"], ["sh", "-c", "id"], ["/usr/bin/env"]):
            try:
                print("ran", subprocess.run(argv, capture_output=True).stdout)
            except OSError as exc:
                print("no", type(exc).__name__)
        """
    )
    lines = _lines(r)
    assert lines[0] != "system 0" and all(line.startswith("no ") for line in lines[1:]), r
    assert "uid=" not in r.stdout


def test_10_the_program_is_unprivileged_inside_and_on_the_host(run: Run) -> None:
    marker = f"harness-uid-{secrets.token_hex(6)}"
    seen: list[list[int] | None] = []

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not seen:
            seen.extend(_uid_of(str(pid)) for pid in _host_processes(marker=marker))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    r = run(
        f"""
        import os, subprocess, sys
        print(os.getuid(), os.geteuid(), os.getgid())
        caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")]
        print(caps[0])
        try:
            os.chown("/python/bin/python3", 0, 0)
            print("chowned")
        except OSError as exc:
            print("chown", type(exc).__name__)
        subprocess.run([sys.executable, "-c", "import time; time.sleep(1.5)", {marker!r}])
        """
    )
    watcher.join()
    ids, caps, chown = _lines(r)
    assert ids == f"{INNER_UID} {INNER_UID} {INNER_UID}" and int(caps, 16) == 0, r
    assert chown.startswith("chown")
    assert seen and all(u is not None and 0 not in u for u in seen), seen


def test_11_no_network_even_to_the_hosts_loopback(run: Run) -> None:
    with socket.socket() as server, socket.socket(type=socket.SOCK_DGRAM) as udp:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        r = run(
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2)
                print("tcp connected")
            except OSError as exc:
                print("tcp", type(exc).__name__)
            try:
                socket.socket(type=socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1",
                                                               {udp.getsockname()[1]}))
                print("udp sent")
            except OSError as exc:
                print("udp", type(exc).__name__)
            print(socket.if_nameindex())
            """
        )
        with pytest.raises(BlockingIOError):
            server.accept()
        with pytest.raises(BlockingIOError):
            udp.recv(16)
    assert _lines(r)[0] != "tcp connected", r
    assert _lines(r)[-1] == "[(1, 'lo')]"  # its own loopback only


def test_12_an_infinite_loop_is_stopped_at_its_cpu_limit(run: Run) -> None:
    r = run("while True:\n    pass\n", cpu_s=1, wall_s=20)
    assert r.status == "cpu_limit", r
    assert 0.9 <= r.cpu_user_s + r.cpu_system_s < 3


def test_13_sleeping_forever_is_stopped_at_the_wall_limit(run: Run) -> None:
    r = run("import time\ntime.sleep(3600)\n", wall_s=1)
    assert r.status == "timeout", r
    assert 1 <= r.wall_s < 4


def test_14_huge_output_is_capped(run: Run) -> None:
    r = run(
        """
        import sys
        written = 0
        try:
            for _ in range(100):
                written += sys.stdout.buffer.write(b"y" * (1 << 20))
                sys.stdout.buffer.flush()
        except OSError as exc:
            sys.stderr.write(f"{type(exc).__name__}\\n")
        sys.stderr.write(f"{written}\\n")
        """
    )
    # stdout is a pipe, closed once OUTPUT_LIMIT_BYTES went through (plus what it holds)
    assert int(r.stderr.strip().splitlines()[-1]) <= OUTPUT_LIMIT_BYTES + (1 << 20), r
    assert len(r.stdout) <= sandbox.OUTPUT_TAIL_BYTES
    assert r.wall_s < 10


def test_15_open_files_are_capped(run: Run) -> None:
    r = run(
        """
        files = []
        try:
            while len(files) < 10_000:
                files.append(open("/dev/null"))
        except OSError as exc:
            print(type(exc).__name__)
        print(len(files))
        """
    )
    assert int(_lines(r)[-1]) < NOFILE_LIMIT, r


def test_16_the_harness_source_and_home_are_not_visible(run: Run) -> None:
    source = Path(harness.__file__).resolve().parent
    places = [str(source), str(Path.cwd()), str(Path.home()), "/etc", "/home", "/root", "/sys"]
    r = run(
        f"""
        import os
        for path in {places!r}:
            print(path, os.path.exists(path) and os.listdir(path))
        """
    )
    assert [line.rsplit(" ", 1)[1] for line in _lines(r)] == ["False"] * len(places), r
    assert "sandbox.py" not in r.stdout


def test_17_host_processes_cannot_be_signalled_or_traced(run: Run) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        r = run(
            f"""
            import ctypes, os, signal
            libc = ctypes.CDLL(None, use_errno=True)
            for pid in ({os.getpid()}, {sleeper.pid}):
                try:
                    os.kill(pid, signal.SIGKILL)
                    print("signalled", pid)
                except OSError as exc:
                    print("no", pid, type(exc).__name__)
                print("ptrace", pid, libc.ptrace(16, pid, None, None))  # PTRACE_ATTACH
            os.kill(os.getppid(), signal.SIGKILL)  # its parent: none it can see (0: itself)
            os.kill(-1, signal.SIGKILL)  # everything it may signal
            """
        )
        time.sleep(0.2)
        assert sleeper.poll() is None, "a host process was killed from the sandbox"
        lines = _lines(r)
        assert [line.split()[0] for line in lines] == ["no", "ptrace"] * 2, r
        assert all(line.endswith("-1") for line in lines if line.startswith("ptrace")), r
    finally:
        sleeper.kill()
        sleeper.wait()


def test_18_dev_shm_is_capped(run: Run) -> None:
    r = run(
        """
        written = 0
        try:
            with open("/dev/shm/fill", "wb") as f:
                for _ in range(48):
                    written += f.write(b"z" * (1 << 20))
                    f.flush()
        except OSError as exc:
            print(type(exc).__name__)
        print(written)
        """
    )
    assert int(_lines(r)[-1]) <= TMPFS_BYTES, r


def test_19_no_new_user_namespace_inside(run: Run) -> None:
    bwrap = find_bwrap()
    if bwrap is None or not bwrap_features(bwrap).disable_userns:
        pytest.skip("this bubblewrap has no --disable-userns (0.8.0 and newer do)")
    r = run(
        """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print(libc.unshare(0x10000000), ctypes.get_errno())  # CLONE_NEWUSER
        """
    )
    rc, errno_ = _lines(r)[-1].split()
    assert rc == "-1" and int(errno_) != 0, r


def test_20_its_own_hostname_and_no_sys(run: Run) -> None:
    r = run("import os, socket\nprint(socket.gethostname(), os.path.exists('/sys/fs'))\n")
    assert _lines(r) == ["sandbox False"], r
    assert socket.gethostname() != "sandbox"


def test_21_its_report_cannot_be_forged_rewritten_or_grown(run: Run) -> None:
    """The program finds the prelude's report fd and writes a fake end (a VmHWM of 1 kB)
    into it, tries to seek back over the real start and floods it; then it holds 300 MiB.
    The forged figure is never believed, and nothing it wrote reached a host file."""
    r = run(
        """
        import os
        found = []
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            try:
                if fd <= 2:
                    continue
                found.append(fd)
                os.write(fd, b"S\\nE 1\\n")
            except OSError:
                continue
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                print("rewound", fd)
            except OSError:
                pass
            try:
                for _ in range(64):
                    os.write(fd, b"E 1\\n" * 16384)
            except OSError:
                pass
        block = b"x" * (300 << 20)
        print("forged", found, flush=True)
        """,
        memory_bytes=1 << 30,
    )
    assert r.status == "ok", r
    assert _lines(r)[-1].startswith("forged [") and _lines(r)[-1] != "forged []", r
    assert "rewound" not in r.stdout
    assert r.peak_rss_bytes is None or r.peak_rss_bytes > 300 * MiB, r


def test_limits_from_a_trace_are_clamped_to_the_fixed_maxima(run: Run) -> None:
    from harness.tools import limits

    r = run("print('ok')", cpu_s=20_005.0, wall_s=1e9, memory_bytes=1 << 50)
    assert r.status == "ok", r
    assert r.limits == {
        "cpu_s": limits.MAX_CPU_S,
        "wall_s": limits.MAX_WALL_S,
        "memory_bytes": limits.MAX_MEMORY_BYTES,
    }
    assert set(r.clamped) == {"cpu_s", "wall_s", "memory_bytes"}
    assert f"limit {limits.MAX_CPU_S:g} s" in r.enforced["cpu"]


def test_every_limit_says_how_it_is_enforced(run: Run) -> None:
    r = run("pass")
    keys = {"memory", "processes", "cpu", "wall", "files", "disk", "network", "identity"}
    assert keys <= set(r.enforced)
    if ROOT:
        assert r.cpu_source == "cgroup" and "cgroup" in r.enforced["memory"]
    else:
        assert "cgroup" not in r.enforced["memory"]  # never a limit that was not in force


def test_killing_the_caller_takes_the_sandbox_with_it() -> None:
    """A worker killed mid-call: --die-with-parent ends the sandboxed tree too."""
    marker = f"harness-orphan-{secrets.token_hex(6)}"
    code = (
        "import os, sys\n"
        f"os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', "
        f"{marker!r}])\n"
    )
    caller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from harness.tools.sandbox import run_sandboxed; "
            "run_sandboxed(sys.argv[1], cpu_s=5, memory_bytes=1 << 28, wall_s=60)",
            code,
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while not _host_processes(marker=marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _host_processes(marker=marker), "the sandboxed program never started"
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    deadline = time.monotonic() + 5
    while _host_processes(marker=marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _host_processes(marker=marker) == []


@needs_root
def test_without_cgroups_the_unprivileged_uid_still_binds(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no cgroup can be made, a root harness's sandbox still runs as an unprivileged
    host uid, so RLIMIT_NPROC binds the fork bomb; nothing claims a whole-tree limit."""
    from harness.tools import cgroups

    monkeypatch.setattr(cgroups, "hierarchies", lambda: ())
    r = run(FORK_BOMB)
    assert 0 < int(_lines(r)[-1]) < NPROC_LIMIT, r
    assert r.enforced["processes"].startswith("RLIMIT_NPROC") and r.cpu_source == "wait4"
    assert "whole tree" not in r.enforced["memory"] + r.enforced["processes"]
    loop = run("while True:\n    pass\n", cpu_s=1, wall_s=20)
    assert loop.status == "cpu_limit", loop
