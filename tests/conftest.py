"""Shared pytest fixtures: one real vLLM CPU server per test session for integration tests,
and a check at the session's end that every summary.json the tests wrote fits its schema."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_ray import CLUSTER_ENV, loopback_cluster
from summary_builders import misfit_summaries

from harness.errors import ServerError
from harness.server import AttachedServer, Server, ServerInfo
from harness.server_process import EmbeddedServer

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_SERVER_URL_ENV = "HARNESS_TEST_SERVER_URL"
TEST_SERVER_B_URL_ENV = "HARNESS_TEST_SERVER_B_URL"
SERVER_B_ARGS = ("--max-num-seqs", "16")
SERVER_B_KV_GIB = 1.0
"""The second test server's configuration: the tiny model with fewer running requests and
half the KV cache (which also keeps the session's memory down)."""


@pytest.fixture(scope="session", autouse=True)
def _summaries_fit_their_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the last test: every summary.json written under the session's temporary folder
    (the engine's, the builders', a test's by hand) validates against the summary schema."""
    yield
    errors = misfit_summaries(tmp_path_factory.getbasetemp())
    if errors:
        pytest.fail(
            f"{len(errors)} summary.json written by the tests do not fit the schema:\n"
            + "\n".join(errors),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project's root folder (holds harness/, scripts/, .vllm/)."""
    return REPO_ROOT


class _SessionServer:
    """A session's vLLM server, started in a background thread as soon as the session knows a
    test needs it, so its start (a minute or more) overlaps the tests that need no server."""

    def __init__(
        self, url_env: str, name: str, extra_args: tuple[str, ...], kv_cache_gib: float
    ) -> None:
        self.name = name
        url = os.environ.get(url_env)
        if url:
            self.server: Server = AttachedServer(url)
        else:
            log = REPO_ROOT / ".vllm" / "logs" / f"pytest-{name}-{os.getpid()}.log"
            self.server = EmbeddedServer(
                REPO_ROOT, extra_args=extra_args, log_path=log, kv_cache_gib=kv_cache_gib
            )
        self._info: ServerInfo | None = None
        self._error: ServerError | None = None
        self._thread = threading.Thread(target=self._start, name=f"start-{name}", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self._info = self.server.start()
        except ServerError as exc:
            self._error = exc

    def info(self) -> ServerInfo:
        """The server once it serves; the test fails (does not skip) when it could not be
        started or reached: CI sets the embedded server up first."""
        self._thread.join()
        if self._info is None:
            why = self._error or "its start ended without an answer"
            pytest.fail(
                f"the vLLM test {self.name} could not be started or reached: {why}", pytrace=False
            )
        return self._info

    def stop(self) -> None:
        """Stop it (once its start has ended)."""
        self._thread.join()
        self.server.stop()


SESSION_SERVERS: dict[str, tuple[str, str, tuple[str, ...], float]] = {
    "vllm_server": (TEST_SERVER_URL_ENV, "server", (), 2.0),
    "vllm_server_b": (TEST_SERVER_B_URL_ENV, "server-b", SERVER_B_ARGS, SERVER_B_KV_GIB),
}
"""Fixture name → (the environment variable naming a running one, its name, its extra
`vllm serve` arguments, its KV cache in GiB)."""

_started: dict[str, _SessionServer] = {}


def _session_server(fixture: str) -> _SessionServer:
    """The fixture's server, started now where the session did not start it already."""
    if fixture not in _started:
        _started[fixture] = _SessionServer(*SESSION_SERVERS[fixture])
    return _started[fixture]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the servers the collected tests use, in the background, before the first test."""
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    for fixture in SESSION_SERVERS:
        if fixture in used:
            _session_server(fixture)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop every server the session started."""
    for server in _started.values():
        server.stop()


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[ServerInfo]:
    """A real vLLM server for the whole session: attach to $HARNESS_TEST_SERVER_URL or start one."""
    server = _session_server("vllm_server")
    yield server.info()


@pytest.fixture(scope="session")
def vllm_server_b() -> Iterator[ServerInfo]:
    """A second real vLLM server, another configuration of the tiny model (at most 16 running
    requests, a 1 GiB KV cache), standing in for a second replica or hardware generation: attach to
    $HARNESS_TEST_SERVER_B_URL or start one."""
    server = _session_server("vllm_server_b")
    yield server.info()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A real Ray cluster of two one-CPU nodes on loopback for the whole session: its address
    (HOST:PORT). Fails (does not skip) where Ray is not installed: CI installs it."""
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.fail("Ray is not installed: pip install -e '.[dev,ray]'", pytrace=False)
    saved = {k: os.environ.get(k) for k in CLUSTER_ENV}
    os.environ.update(CLUSTER_ENV)
    try:
        with loopback_cluster(nodes=2) as address:
            yield address
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
