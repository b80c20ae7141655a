"""Servers the harness starts itself, as a child process group it stops again.

`EmbeddedServer` runs the project's vLLM CPU server (scripts/serve_vllm_cpu.sh) and
`LaunchedServer` runs `vllm serve MODEL` from PATH (GPU nodes). Both implement
`harness.server.Server`: start the process, wait until it is healthy, take its inventory, and
on stop signal the whole process group until none of it is left.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp

from harness.errors import ServerError
from harness.server import PROBE_TIMEOUT_S, Server, ServerInfo, is_ready, run_sync, take_inventory
from harness.server_log import StartupLog, failure_causes, last_lines, read_lines
from harness.vllm_cpu import available_memory_bytes, cpu_defaults, detect_build

DEFAULT_STARTUP_TIMEOUT_S = 300.0
"""How long a started server has to serve before the start counts as failed
(`--server-start-timeout-s`)."""
DEFAULT_STOP_TIMEOUT_S = 30.0
EMBEDDED_SERVED_NAME = "tiny-llama"
EMBEDDED_MAX_MODEL_LEN = 8192
_POLL_INTERVAL_S = 0.5
PROGRESS_INTERVAL_S = 5.0
"""How often start-up progress is said while the phase does not change."""
_SECRET_FLAGS = ("--api-key",)
_REDACTED = "<redacted>"
_SETUP_HINT = (
    "run `make setup-server` (or scripts/setup_vllm_cpu.sh, then "
    "`.vllm/venv/bin/python scripts/build_tiny_model.py`)"
)


def redact_args(args: Sequence[str]) -> list[str]:
    """Copy a command line with the values of secret flags (`--api-key`) replaced."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(_REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in _SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={_REDACTED}")
            else:
                out.append(arg)
                hide_next = True
        else:
            out.append(arg)
    return out


def api_key_from_args(args: Sequence[str]) -> str | None:
    """The `--api-key` value given on a `vllm serve` command line, if any (last one wins)."""
    key: str | None = None
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag in _SECRET_FLAGS:
            if eq:
                key = value
            elif i + 1 < len(args):
                key = args[i + 1]
    return key


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a TCP port that is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (so a new server can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def scrub_log(path: Path, secret: str | None) -> None:
    """Replace the server's API key wherever its log shows it (vLLM prints its arguments):
    the log is kept with the run's results, which never hold a key."""
    if not secret:
        return
    try:
        data = path.read_bytes()
        if secret.encode() in data:
            path.write_bytes(data.replace(secret.encode(), _REDACTED.encode()))
    except OSError:
        pass


def startup_failure(
    what: str,
    log_path: Path | None,
    phase: str | None,
    advice: str | None = None,
    secret: str | None = None,
) -> str:
    """A failed start explained: `what` happened, the phase it reached, the log's cause lines
    (or, where it names no error, its last lines), the full log's path and, where there is
    one, what to do about it; `secret` (the API key) is replaced wherever the lines show it."""
    lines = read_lines(log_path)
    causes = failure_causes(lines)
    reached = f" (last phase: {phase})" if phase else ""
    # One cause per line; the CLI's one-line errors join them with "; ".
    if causes:
        body = "its log says: " + "\n  ".join(causes)
    else:
        tail = last_lines(lines)
        body = "no error in its log; its last lines: " + "\n  ".join(tail)
        if not tail:
            body = "its log is empty"
    text = f"{what}{reached}; {body}\nfull log: {log_path}"
    if advice is not None:
        text = f"{text}\n{advice}"
    return text.replace(secret, _REDACTED) if secret else text


Progress = Callable[[str], None]
"""Where a starting server says how far it got: one plain line per call."""


class _ProcessServer(Server):
    """Shared machinery for servers the harness runs as a child process group."""

    kind = "process"

    def __init__(
        self,
        extra_args: Sequence[str],
        log_path: Path | None,
        port: int | None,
        startup_timeout_s: float,
        stop_timeout_s: float,
        progress: Progress | None = None,
    ) -> None:
        """Keep the settings; nothing runs until start(). `progress` hears the start-up's
        phase and elapsed time every few seconds (and the launch defaults applied)."""
        self.extra_args = list(extra_args)
        self.port = port
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.progress = progress
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None

    @abstractmethod
    def _command(self, host: str, port: int) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """The argv, the extra environment, and launch facts to record (no secrets)."""

    def _api_key(self) -> str | None:
        """The key the child server will demand: `--api-key`, else VLLM_API_KEY."""
        return api_key_from_args(self.extra_args) or os.environ.get("VLLM_API_KEY") or None

    def _default_log_path(self, port: int) -> Path:
        """Where the server's output goes when no log_path was given."""
        fd, name = tempfile.mkstemp(prefix=f"vllm-serve-{port}-", suffix=".log")
        os.close(fd)
        return Path(name)

    def _say(self, text: str) -> None:
        """Tell the progress callback, if there is one."""
        if self.progress is not None:
            self.progress(text)

    @property
    def pid(self) -> int | None:
        """The child's process id (also its process-group id), while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> ServerInfo:
        """Launch the server in its own process group and wait until it serves."""
        if self._info is not None:
            return self._info
        host = "127.0.0.1"
        port = self.port or free_port(host)
        if not _port_free(host, port):
            # Otherwise the health check could find whatever else listens there.
            raise ServerError(f"port {port} on {host} is in use; pick another or leave it unset")
        argv, env_extra, launch = self._command(host, port)
        # Absolute, so the manifest's log_path holds wherever the run directory is read from.
        self.log_path = (self.log_path or self._default_log_path(port)).resolve()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = self.log_path.open("wb")
        base_url = f"http://{host}:{port}"
        api_key = self._api_key()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._say(f"server: starting {self.kind} vLLM on {host}:{port} (log {self.log_path})")
        t0 = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env_extra},
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise ServerError(f"could not run {argv[0]}: {exc}") from exc
        atexit.register(self.stop)
        try:
            run_sync(lambda: self._wait_ready(base_url, headers, t0))
            model, max_len, version, root = run_sync(
                lambda: take_inventory(base_url, headers, PROBE_TIMEOUT_S, "check --api-key")
            )
        except BaseException:
            self.stop()
            raise
        startup_s = time.monotonic() - t0
        self._say(f"server: ready after {startup_s:.0f} s ({model}, vLLM {version or 'unknown'})")
        launch = {
            "kind": self.kind,
            "command": redact_args(argv),
            "env": env_extra,
            "host": host,
            "port": port,
            "pid": self._proc.pid,
            "log_path": str(self.log_path),
            "startup_s": round(startup_s, 3),
            **launch,
        }
        self._info = ServerInfo(base_url, model, max_len, version, launch, api_key, root)
        return self._info

    async def _wait_ready(self, base_url: str, headers: Mapping[str, str], t0: float) -> None:
        """Poll until the server serves, saying its phase (from its log) and the elapsed time
        on a change and every PROGRESS_INTERVAL_S; fail fast if the process dies, or at the
        timeout, with the cause lines of its log."""
        assert self._proc is not None and self.log_path is not None
        log = StartupLog(self.log_path)
        said_phase: str | None = None
        said_at = t0
        async with aiohttp.ClientSession() as session:
            while True:
                code = self._proc.poll()
                if code is not None:
                    log.update()
                    raise ServerError(
                        startup_failure(
                            f"{self.kind} vLLM server exited with code {code} before it was "
                            f"ready, after {time.monotonic() - t0:.0f} s",
                            self.log_path,
                            log.phase,
                            secret=self._api_key(),
                        )
                    )
                if await is_ready(session, base_url, headers):
                    return
                now = time.monotonic()
                phase = log.update()
                if phase != said_phase or now - said_at >= PROGRESS_INTERVAL_S:
                    self._say(f"server: {phase or 'loading vLLM'} ({now - t0:.0f} s)")
                    said_phase, said_at = phase, now
                if now - t0 > self.startup_timeout_s:
                    raise ServerError(
                        startup_failure(
                            f"{self.kind} vLLM server at {base_url} not ready after "
                            f"{self.startup_timeout_s:g} s",
                            self.log_path,
                            log.phase,
                            advice="a start that downloads or compiles the model may need "
                            "longer: raise --server-start-timeout-s (now "
                            f"{self.startup_timeout_s:g} s)",
                            secret=self._api_key(),
                        )
                    )
                await asyncio.sleep(_POLL_INTERVAL_S)

    def stop(self) -> None:
        """SIGINT the process group, then SIGTERM, then SIGKILL, until none of it is left."""
        proc, self._proc = self._proc, None
        self._info = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc is not None:
            pgid = proc.pid  # start_new_session makes the child a group leader
            grace = max(self.stop_timeout_s, 0.0)
            for sig, wait_s in (
                (signal.SIGINT, grace * 2 / 3),
                (signal.SIGTERM, grace / 3),
                (signal.SIGKILL, 10.0),
            ):
                if not _group_alive(pgid):
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)
                _wait_group(proc, pgid, wait_s)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)
        self._close_log()
        if proc is not None and self.log_path is not None:
            scrub_log(self.log_path, self._api_key())

    def _close_log(self) -> None:
        """Close our handle on the log file (the file stays for reading)."""
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None


def _group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies of our own child excluded)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group(proc: subprocess.Popen[bytes], pgid: int, timeout_s: float) -> None:
    """Wait up to timeout_s for the leader to exit (reaping it) and the group to empty."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader so its zombie does not keep the group "alive"
        if not _group_alive(pgid):
            return
        time.sleep(0.1)


class EmbeddedServer(_ProcessServer):
    """The project's own vLLM CPU server with the tiny model (scripts/serve_vllm_cpu.sh)."""

    kind = "embedded"

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        *,
        model_dir: Path | None = None,
        venv: Path | None = None,
        kv_cache_gib: float = 2.0,
        max_model_len: int = EMBEDDED_MAX_MODEL_LEN,
        served_model_name: str = EMBEDDED_SERVED_NAME,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        progress: Progress | None = None,
    ) -> None:
        """Point at the project root (with .vllm/venv and .vllm/model); nothing runs yet."""
        super().__init__(extra_args, log_path, port, startup_timeout_s, stop_timeout_s, progress)
        self.root = Path(root).resolve()
        self.model_dir = (model_dir or self.root / ".vllm" / "model").resolve()
        env_venv = os.environ.get("HARNESS_VLLM_VENV")  # as in scripts/setup_vllm_cpu.sh
        self.venv = (
            venv or (Path(env_venv) if env_venv else self.root / ".vllm" / "venv")
        ).resolve()
        self.kv_cache_gib = kv_cache_gib
        self.max_model_len = max_model_len
        self.served_model_name = served_model_name

    @property
    def script(self) -> Path:
        """The serve script this server runs."""
        return self.root / "scripts" / "serve_vllm_cpu.sh"

    def check_setup(self) -> None:
        """Raise a ServerError that says how to fix it if the venv, model or script is missing."""
        if not (self.venv / "bin" / "vllm").exists():
            raise ServerError(
                f"the vLLM CPU server is not set up: no {self.venv}/bin/vllm; {_SETUP_HINT}"
            )
        if not (self.model_dir / "config.json").exists():
            raise ServerError(
                f"the tiny model is not built: no {self.model_dir}/config.json; {_SETUP_HINT}"
            )
        if not self.script.exists():
            raise ServerError(f"missing {self.script}; is {self.root} the project root?")

    def _default_log_path(self, port: int) -> Path:
        """Logs go to .vllm/logs/ in the project."""
        return self.root / ".vllm" / "logs" / f"vllm-serve-{port}.log"

    def start(self) -> ServerInfo:
        """Check the setup, then launch and wait (see _ProcessServer.start)."""
        self.check_setup()
        return super().start()

    def _command(self, host: str, port: int) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """bash scripts/serve_vllm_cpu.sh EXTRA..., configured through its environment."""
        env = {
            "HOST": host,
            "PORT": str(port),
            "KV": f"{self.kv_cache_gib:g}",
            "MODEL_DIR": str(self.model_dir),
            "MAX_MODEL_LEN": str(self.max_model_len),
            "SERVED_NAME": self.served_model_name,
            "HARNESS_VLLM_VENV": str(self.venv),
        }
        launch = {"model_dir": str(self.model_dir), "venv": str(self.venv)}
        return ["bash", str(self.script), *self.extra_args], env, launch


class LaunchedServer(_ProcessServer):
    """`vllm serve MODEL` from PATH (GPU nodes), started and stopped by the harness."""

    kind = "launched"

    def __init__(
        self,
        model: str,
        vllm_command: str = "vllm",
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        *,
        port: int | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        progress: Progress | None = None,
    ) -> None:
        """Name the model (HF id or folder) and the vllm command; nothing runs yet."""
        super().__init__(extra_args, log_path, port, startup_timeout_s, stop_timeout_s, progress)
        self.model = model
        self.vllm_command = vllm_command

    def start(self) -> ServerInfo:
        """Check that the vllm command exists and that a model given as a path is there,
        then launch and wait."""
        if shutil.which(self.vllm_command) is None:
            raise ServerError(
                f"`{self.vllm_command}` is not on PATH; install the server "
                "(`pip install 'harness[vllm]'`) or attach to a running one with a URL"
            )
        if self.model.startswith(("/", ".", "~")) and not Path(self.model).expanduser().exists():
            raise ServerError(
                f"--model {self.model}: no such folder; give a model folder or a hub id (ORG/NAME)"
            )
        return super().start()

    def _command(self, host: str, port: int) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """vllm serve MODEL --host H --port P [CPU defaults] EXTRA...; a CPU build of vLLM gets
        `--enforce-eager` and a KV cache that fits the free memory unless EXTRA or the
        environment set their own (recorded under `defaults`, and said)."""
        exe = shutil.which(self.vllm_command) or self.vllm_command
        build = detect_build(self.vllm_command, os.environ)
        launch: dict[str, Any] = {"model_arg": self.model, "vllm_build": build.to_dict()}
        default_args: tuple[str, ...] = ()
        env: dict[str, str] = {}
        if build.cpu:
            defaults = cpu_defaults(self.extra_args, os.environ, available_memory_bytes())
            default_args, env = defaults.args, dict(defaults.env)
            launch["defaults"] = [dict(d) for d in defaults.applied]
            if defaults.applied:
                self._say(
                    f"server: CPU build of vLLM ({build.evidence}), so {defaults.describe()}; "
                    "your own --vllm-arg or environment setting replaces these"
                )
        argv = [exe, "serve", self.model, "--host", host, "--port", str(port)]
        return [*argv, *default_args, *self.extra_args], env, launch
