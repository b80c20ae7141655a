"""Fixtures of the tool tests: whether the bubblewrap sandbox works here."""

from __future__ import annotations

import os

import pytest

from harness.tools.sandbox import sandbox_problem


@pytest.fixture
def needs_bwrap() -> None:
    """Skip where the sandbox's own probe says bubblewrap cannot run here (the reason is its
    diagnosis) and $CI is unset; in CI that fails."""
    problem = sandbox_problem()
    if problem is None:
        return
    message = f"the bubblewrap sandbox does not work here: {problem}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (required when CI is set)", pytrace=False)
    pytest.skip(message)
