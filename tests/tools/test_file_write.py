"""The file-write kernel: real bytes written and fsync'd in the tools' scratch folder, more for
a larger size, nothing left behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from harness.tools.file_write import FILE_BYTES, run_file_write
from harness.tools.kernels import kernel


def test_writes_what_the_size_asks_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    small = run_file_write(4, 1)
    large = run_file_write(100, 1)
    assert small["bytes_written"] == 4 * 1024
    assert large["bytes_written"] == 100 * 1024
    assert large["files_written"] == -(-100 * 1024 // 2 // FILE_BYTES)
    assert list(tmp_path.iterdir()) == []  # its folder is removed when the call ends
    assert kernel("file_write") is run_file_write


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_rejects_a_bad_size(bad: float) -> None:
    with pytest.raises(ValueError, match="size"):
        run_file_write(bad, 0)
