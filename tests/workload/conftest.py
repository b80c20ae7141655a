"""Fixtures for the workload tests: fixture files, a word-counting tokenizer, shared traces."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"


class WordCounter:
    """A stand-in tokenizer for ShareGPT tests: one token per whitespace-separated word."""

    def count(self, text: str) -> int:
        return len(text.split())


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture
def word_counter() -> WordCounter:
    return WordCounter()


def _shared_traces_dir() -> Path:
    """The shared traces folder: $HARNESS_SHARED_DIR/traces, else ../shared/traces of the repo."""
    env = os.environ.get("HARNESS_SHARED_DIR")
    if env:
        base = Path(env)
        return base / "traces" if (base / "traces").is_dir() else base
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "traces").resolve()


@pytest.fixture
def shared_trace() -> Callable[[str], Path]:
    """Return a function giving a shared trace's path, skipping the test if it is absent."""

    def find(name: str) -> Path:
        path = _shared_traces_dir() / name
        if not path.is_file():
            pytest.skip(f"shared trace {name} not found under {path.parent}")
        return path

    return find
