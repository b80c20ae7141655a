"""Shared pytest fixtures: one real vLLM CPU server per test session for integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import ServerError
from harness.server import AttachedServer, Server, ServerInfo
from harness.server_process import EmbeddedServer

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_SERVER_URL_ENV = "HARNESS_TEST_SERVER_URL"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project's root folder (holds harness/, scripts/, .vllm/)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[ServerInfo]:
    """A real vLLM server for the whole session: attach to $HARNESS_TEST_SERVER_URL or start one.

    Fails (does not skip) when the embedded server is not set up: CI sets it up first.
    """
    url = os.environ.get(TEST_SERVER_URL_ENV)
    server: Server
    if url:
        server = AttachedServer(url)
    else:
        server = EmbeddedServer(
            REPO_ROOT, log_path=REPO_ROOT / ".vllm" / "logs" / f"pytest-server-{os.getpid()}.log"
        )
    error: ServerError | None = None
    try:
        info = server.start()
    except ServerError as exc:
        error = exc
    if error is not None:
        pytest.fail(f"the vLLM test server could not be started or reached: {error}", pytrace=False)
    try:
        yield info
    finally:
        server.stop()
