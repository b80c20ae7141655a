"""scripts/null_server.py in a subprocess on a free port, for tests that need a real HTTP
server they may stop at will (the null server's figures are the harness's own, never a
model's)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "null_server.py"
LISTENING = re.compile(r"listening on (http://\S+)")


class NullServer:
    """The null server in a subprocess on a free port."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log = tmp / f"null-{time.monotonic_ns()}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), "--port", "0", *args], stderr=log
            )
        self.url = self._wait_url()

    def _wait_url(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log.read_text())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"null server exited: {self.log.read_text()}")
            time.sleep(0.05)
        raise AssertionError("null server did not start")

    def stop(self) -> None:
        """Stop it (safe to call twice)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
