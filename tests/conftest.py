"""Shared pytest fixtures: one real vLLM CPU server per test session for integration tests,
and a check at the session's end that every summary.json the tests wrote fits its schema."""

from __future__ import annotations

import os
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
"""The second test server's configuration: the tiny model with fewer running requests."""


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


def _session_server(
    url_env: str, name: str, extra_args: tuple[str, ...] = ()
) -> Iterator[ServerInfo]:
    """A real vLLM server for the whole session: attach to $`url_env` or start the embedded one
    with `extra_args`. Fails (does not skip) when the embedded server is not set up: CI sets it
    up first."""
    url = os.environ.get(url_env)
    server: Server
    if url:
        server = AttachedServer(url)
    else:
        log = REPO_ROOT / ".vllm" / "logs" / f"pytest-{name}-{os.getpid()}.log"
        server = EmbeddedServer(REPO_ROOT, extra_args=extra_args, log_path=log)
    error: ServerError | None = None
    try:
        info = server.start()
    except ServerError as exc:
        error = exc
    if error is not None:
        pytest.fail(f"the vLLM test {name} could not be started or reached: {error}", pytrace=False)
    try:
        yield info
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[ServerInfo]:
    """A real vLLM server for the whole session: attach to $HARNESS_TEST_SERVER_URL or start one."""
    yield from _session_server(TEST_SERVER_URL_ENV, "server")


@pytest.fixture(scope="session")
def vllm_server_b() -> Iterator[ServerInfo]:
    """A second real vLLM server, another configuration of the tiny model (at most 16 running
    requests), standing in for a second replica or hardware generation: attach to
    $HARNESS_TEST_SERVER_B_URL or start one."""
    yield from _session_server(TEST_SERVER_B_URL_ENV, "server-b", SERVER_B_ARGS)


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
