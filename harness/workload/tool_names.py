"""Recorded tool names to the kinds the harness runs them as: shell commands to the sandboxed
`code_exec` kernel, searches of the tree to `file_search`, file reads to `parse`, writes and
edits to `file_write` (real disk work), web tools to remote waits. A name with no mapping is
`unmapped`: a wait of its recorded duration, counted, never dropped. A workload overrides or
extends the table with `source.tool_map`."""

from __future__ import annotations

from collections.abc import Mapping

from harness.errors import ConfigError
from harness.suggest import suggest
from harness.workload.model import KNOWN_TOOL_KINDS
from harness.workload.model import UNMAPPED as UNMAPPED  # re-exported: a loader names it

DEFAULT_TOOL_MAP: Mapping[str, str] = {
    # Claude Code
    "Bash": "code_exec",
    "BashOutput": "code_exec",
    "Grep": "file_search",
    "Glob": "file_search",
    "LS": "file_search",
    "Read": "parse",
    "NotebookRead": "parse",
    "Write": "file_write",
    "Edit": "file_write",
    "MultiEdit": "file_write",
    "NotebookEdit": "file_write",
    "WebSearch": "web_search",
    "WebFetch": "api_call",
    # Codex
    "exec_command": "code_exec",
    "write_stdin": "code_exec",
    "shell": "code_exec",
    "local_shell": "code_exec",
    "apply_patch": "file_write",
    "web_search": "web_search",
    "view_image": "parse",
}
"""The default mapping (Claude Code's and Codex's tool names); names are matched exactly."""


def tool_kind(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """The kind a recorded tool `name` runs as: the override, else the default table, else
    `unmapped`."""
    if overrides is not None:
        kind = overrides.get(name)
        if kind is not None:
            return kind
    return DEFAULT_TOOL_MAP.get(name, UNMAPPED)


def check_tool_map(overrides: Mapping[str, object], where: str) -> dict[str, str]:
    """A workload's `source.tool_map` checked: every value a kind of KNOWN_TOOL_KINDS; a
    ConfigError names `where` (the file) and the key otherwise."""
    checked: dict[str, str] = {}
    for name, kind in overrides.items():
        key = f"source.tool_map.{name}"
        if not name:
            raise ConfigError(f"{where}: {key}: a tool name must not be empty")
        if not isinstance(kind, str) or kind not in KNOWN_TOOL_KINDS:
            hint = suggest(kind, KNOWN_TOOL_KINDS) if isinstance(kind, str) else ""
            raise ConfigError(
                f"{where}: {key}: unknown tool kind {kind!r}{hint}; "
                f"known kinds: {', '.join(KNOWN_TOOL_KINDS)}"
            )
        checked[name] = kind
    return checked
