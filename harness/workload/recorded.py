"""The split a recording timed itself: per session, the LLM time, the tool time and the human
time as the trace says (`Step.recorded_llm_ms`, `recorded_tools_ms` or its calls' durations,
`think_ms`), summed in one streaming pass, beside the tool calls by recorded name and kind
(so unmapped tools are counted, never dropped). A parent's wait on the sub-agents a step of
it started (that step's waits, `harness.workload.subagents.recorded_wait_ms`) is moved out
of its tool time into `subagent_wait_s`: the sub-agents' own sessions count their work."""

from __future__ import annotations

import dataclasses
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.units import MS_PER_S
from harness.workload.model import UNMAPPED, Session, step_tools_ms
from harness.workload.subagents import Recent, recorded_wait_ms

MAX_SESSIONS_LISTED = 1000
"""Sessions listed one by one in the JSON; the totals always count every session."""


@dataclass(frozen=True, slots=True)
class SessionSplit:
    """One session's recorded split in seconds; `llm_s` None where the trace times no LLM call."""

    session_id: str
    requests: int
    llm_s: float | None
    tool_s: float
    human_s: float
    subagent_wait_s: float = 0.0
    """Its wait on the sub-agents it started (not in `tool_s`)."""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "requests": self.requests,
            "llm_s": self.llm_s,
            "tool_s": self.tool_s,
            "human_s": self.human_s,
            "subagent_wait_s": self.subagent_wait_s,
        }


@dataclass(slots=True)
class _Parent:
    """What a later sub-agent needs of a session: its place in the listing (None: not
    listed), whether it is timed, each step's waits (ms) and the steps already counted."""

    listed: int | None
    timed: bool
    waits_ms: array[float]
    moved: set[int] = field(default_factory=set)


@dataclass
class RecordedSplit:
    """Totals of the recorded split over the sessions seen, and the tool calls by name."""

    sessions: list[SessionSplit] = field(default_factory=list)
    session_count: int = 0
    timed_sessions: int = 0
    llm_s: float = 0.0
    tool_s: float = 0.0
    human_s: float = 0.0
    tool_names: Counter[str] = field(default_factory=Counter)
    name_kinds: dict[str, str] = field(default_factory=dict)
    """The kind each recorded name ran as (the first seen, should a trace map one two ways)."""
    tool_kinds: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    subagent_wait_s: float = 0.0
    """Timed parents' waits on their sub-agents, moved out of `tool_s`."""
    wait_s: float = 0.0
    """Of `tool_s`, the remote-call and unmapped waits (past any kernel call beside them):
    replayed as waits of their recorded duration, not as work."""
    _parents: Recent[str, _Parent] = field(default_factory=Recent, repr=False)

    def add(self, session: Session) -> None:
        """Count one session (a sub-agent after its parent moves the parent's wait on it)."""
        self._count_child(session)
        self.session_count += 1
        llm_ms = [s.recorded_llm_ms for s in session.steps if s.recorded_llm_ms is not None]
        tool_ms = sum(step_tools_ms(s) for s in session.steps)
        human_ms = sum(s.think_ms for s in session.steps)
        for step in session.steps:
            for call in step.tools:
                self.tool_kinds[call.kind] += 1
                if call.name is not None:
                    self.tool_names[call.name] += 1
                    self.name_kinds.setdefault(call.name, call.kind)
                if call.kind == UNMAPPED:
                    self.unmapped[call.name or "(no name)"] += 1
        llm_s = sum(llm_ms) / MS_PER_S if llm_ms else None
        if llm_s is not None:
            self.timed_sessions += 1
            self.llm_s += llm_s
            self.tool_s += tool_ms / MS_PER_S
            self.human_s += human_ms / MS_PER_S
        waits = array("d", (recorded_wait_ms(step) for step in session.steps))
        if llm_s is not None:
            self.wait_s += sum(waits) / MS_PER_S
        if any(waits):
            listed = len(self.sessions) if len(self.sessions) < MAX_SESSIONS_LISTED else None
            self._parents.add(session.session_id, _Parent(listed, llm_s is not None, waits))
        if len(self.sessions) < MAX_SESSIONS_LISTED:
            self.sessions.append(
                SessionSplit(
                    session.session_id,
                    session.requests,
                    llm_s,
                    tool_ms / MS_PER_S,
                    human_ms / MS_PER_S,
                )
            )

    def _count_child(self, session: Session) -> None:
        """A sub-agent started at a step of a parent seen before it: that step's waits are
        the parent's wait on its sub-agents (once per step, however many it started)."""
        step = session.parent_step
        parent = self._parents.get(session.parent_id)
        if parent is None or step is None or step >= len(parent.waits_ms) or step in parent.moved:
            return
        parent.moved.add(step)
        moved_s = parent.waits_ms[step] / MS_PER_S
        if parent.timed:
            self.tool_s -= moved_s
            self.wait_s -= moved_s
            self.subagent_wait_s += moved_s
        if parent.listed is not None:
            entry = self.sessions[parent.listed]
            self.sessions[parent.listed] = dataclasses.replace(
                entry,
                tool_s=entry.tool_s - moved_s,
                subagent_wait_s=entry.subagent_wait_s + moved_s,
            )

    def tap(self, sessions: Iterable[Session]) -> Iterator[Session]:
        """Pass the sessions on, counting each as it goes by."""
        for session in sessions:
            self.add(session)
            yield session

    @property
    def timed(self) -> bool:
        """Whether any session's recording timed its LLM calls (else there is no split)."""
        return self.timed_sessions > 0

    def totals(self) -> dict[str, Any] | None:
        """The timed sessions' totals and the LLM and tool shares of LLM + tool time (human
        time left out, as in the measured split); None where nothing was timed."""
        if not self.timed:
            return None
        work = self.llm_s + self.tool_s
        return {
            "sessions": self.timed_sessions,
            "llm_s": self.llm_s,
            "tool_s": self.tool_s,
            "human_s": self.human_s,
            "subagent_wait_s": self.subagent_wait_s,
            "wait_s": self.wait_s,
            "llm_share": self.llm_s / work if work > 0 else None,
            "tool_share": self.tool_s / work if work > 0 else None,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON: totals (null when the trace times nothing), the first sessions and the
        tool calls by recorded name, by kind, and the unmapped ones by name."""
        return {
            "totals": self.totals(),
            "why_not": None if self.timed else "the trace does not time its LLM calls",
            "sessions": [s.to_json_dict() for s in self.sessions],
            "sessions_listed": len(self.sessions),
            "tool_calls_by_name": {
                name: {"calls": calls, "kind": self.name_kinds[name]}
                for name, calls in sorted(self.tool_names.items())
            },
            "tool_calls_by_kind": dict(sorted(self.tool_kinds.items())),
            "unmapped_tool_calls": dict(sorted(self.unmapped.items())),
        }
