"""The harness's own error classes; vendor errors are mapped onto these at module borders."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base class: an error the CLI reports in one line and exits non-zero for."""


class ConfigError(HarnessError):
    """A workload, scenario or option is invalid; the message names the key."""


class TraceFormatError(HarnessError):
    """A trace record is malformed; carries the file, line and field for the user."""

    def __init__(self, path: Path | str, line: int, field: str | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        where = f"{self.path}:{line}"
        what = f" field {field!r}:" if field else ":"
        super().__init__(f"{where}:{what} {message}")


class ServerError(HarnessError):
    """The inference server can't be started, reached or used."""


class ResultsError(HarnessError):
    """A run directory is missing, incomplete or unreadable."""


class RunExistsError(ResultsError):
    """A run directory already holds a run (`existing`: its files) and replacing it was not
    asked for; the CLI names its own option for that."""

    def __init__(self, run_dir: Path | str, existing: list[str]) -> None:
        self.run_dir = Path(run_dir)
        self.existing = list(existing)
        super().__init__(f"{self.run_dir}: already holds a run ({', '.join(existing)})")


class ClusterError(HarnessError):
    """A Ray cluster can't be reached, or can't place or keep the run's load workers."""
