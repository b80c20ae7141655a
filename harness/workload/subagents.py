"""Where a sub-agent session sits in its parent's recorded timeline: when the parent started
it (the spawn's delay into the tool phase of the parent's step `parent_step`) and how long the
parent waited on it (that step's waits), so a replay starts it at the same point and a split
counts its work once, in its own session.

A parent that starts a sub-agent in a tool call (Claude Code's Task tool, an agent called as
a tool) waits on it as a recorded tool wait (Weka: the gap to the next request, an unmapped
wait; OpenTelemetry: the tool span around the sub-agent's spans). That wait is the
sub-agent's time seen from the parent, not tool work of the parent: a split that counted it
as tool time would count the sub-agent's work twice. So the remote-call and unmapped waits of
the step that started a sub-agent are the parent's sub-agent wait, kept out of the split
like think time; a kernel call of that step stays tool work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from harness.workload.model import WAIT_KINDS, Session, Step, step_tools_ms

LOOKBACK_SESSIONS = 10_000
"""A sub-agent's parent is looked for among this many sessions before it in the source
(loaders put a parent's sub-agents right after it); one further back, or not in the source
(an export or a trace window that left it out), is a sub-agent without its parent:
replayed at its own arrival time, and counted."""

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """A map that keeps only the `size` most recently added keys (bounded memory over a
    streamed trace of any length)."""

    def __init__(self, size: int = LOOKBACK_SESSIONS) -> None:
        self._size = size
        self._items: dict[K, V] = {}

    def add(self, key: K, value: V) -> None:
        """Keep `value` under `key`, forgetting the oldest key beyond the size."""
        self._items.pop(key, None)
        self._items[key] = value
        if len(self._items) > self._size:
            del self._items[next(iter(self._items))]

    def get(self, key: K | None) -> V | None:
        """The value kept under `key`, or None."""
        return None if key is None else self._items.get(key)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)


def request_end_ms(session: Session, index: int) -> float | None:
    """When the request of step `index` ended, as the recording timed it, in ms after the
    session's start: the steps' think, LLM and tool times before it (or the step's own
    `offset_ms`) plus its LLM time; None where the recording does not time them."""
    at = 0.0
    for k, step in enumerate(session.steps[: index + 1]):
        if step.recorded_llm_ms is None:
            return None
        if step.offset_ms is not None:
            at = max(at, step.offset_ms)
        else:
            at += step.think_ms
        at += step.recorded_llm_ms
        if k < index:
            at += step_tools_ms(step)
    return at


def spawn_delay_ms(parent: Session, child: Session) -> float:
    """How long after the end of its parent's step `parent_step` request the recording
    started `child` (into that step's tool phase, at most its length); 0 where the recording
    does not time it."""
    step_index, offset = child.parent_step, child.parent_offset_ms
    if step_index is None or offset is None or step_index >= len(parent.steps):
        return 0.0
    end = request_end_ms(parent, step_index)
    if end is None:
        return 0.0
    return max(0.0, min(offset - end, step_tools_ms(parent.steps[step_index])))


def recorded_wait_ms(step: Step) -> float:
    """The recorded time a parent waited on the sub-agents its step started: the step's
    waits (WAIT_KINDS) beyond its kernel calls' work (a parallel group's calls start
    together: its waits count past its longest kernel call), at most the recorded tool
    phase."""
    waits = 0.0
    groups: dict[int, list[float]] = {}
    for call in step.tools:
        if call.parallel_group is not None:
            group = groups.setdefault(call.parallel_group, [0.0, 0.0])
            k = 0 if call.kind in WAIT_KINDS else 1
            group[k] = max(group[k], call.duration_ms)
        elif call.kind in WAIT_KINDS:
            waits += call.duration_ms
    waits += sum(max(0.0, wait - kernel) for wait, kernel in groups.values())
    return min(waits, step_tools_ms(step))
