"""Tool temporary folders carry their owner's pid; those of dead processes are removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.tools import scratch


def test_only_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"harness-files-{dead.pid}-abc"
    gone.mkdir()
    (gone / "f").write_text("x")
    mine = scratch.make_dir("files", tmp_path)
    other = tmp_path / f"unrelated-{dead.pid}-x"
    other.mkdir()
    assert mine.name.startswith(f"harness-files-{os.getpid()}-")
    assert scratch.remove_dead(tmp_path) == [gone]
    assert not gone.exists() and mine.exists() and other.exists()
