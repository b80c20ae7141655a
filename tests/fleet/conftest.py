"""Fixtures of the fleet tests."""

from __future__ import annotations

import pytest

from harness.fleet.catalog import Accelerator, load_catalog


@pytest.fixture(scope="session")
def catalog() -> dict[str, Accelerator]:
    """The built-in accelerator catalog."""
    return load_catalog()
