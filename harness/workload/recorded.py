"""The split a recording timed itself: per session, the LLM time, the tool time and the human
time as the trace says (`Step.recorded_llm_ms`, `recorded_tools_ms` or its calls' durations,
`think_ms`), summed in one streaming pass, beside the tool calls by recorded name and kind
(so unmapped tools are counted, never dropped)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.units import MS_PER_S
from harness.workload.model import UNMAPPED, Session, Step, ToolCall

MAX_SESSIONS_LISTED = 1000
"""Sessions listed one by one in the JSON; the totals always count every session."""


def tool_phase_ms(tools: tuple[ToolCall, ...]) -> float:
    """How long a step's calls take one after another, a parallel group as its longest call."""
    groups: dict[int, float] = {}
    total = 0.0
    for call in tools:
        if call.parallel_group is None:
            total += call.duration_ms
        else:
            groups[call.parallel_group] = max(
                groups.get(call.parallel_group, 0.0), call.duration_ms
            )
    return total + sum(groups.values())


def step_tools_ms(step: Step) -> float:
    """A step's recorded tool phase: as timed where the trace says, else from its calls."""
    return (
        step.recorded_tools_ms if step.recorded_tools_ms is not None else tool_phase_ms(step.tools)
    )


@dataclass(frozen=True, slots=True)
class SessionSplit:
    """One session's recorded split in seconds; `llm_s` None where the trace times no LLM call."""

    session_id: str
    requests: int
    llm_s: float | None
    tool_s: float
    human_s: float

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "requests": self.requests,
            "llm_s": self.llm_s,
            "tool_s": self.tool_s,
            "human_s": self.human_s,
        }


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

    def add(self, session: Session) -> None:
        """Count one session."""
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
